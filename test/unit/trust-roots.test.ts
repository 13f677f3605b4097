import { describe, expect, it } from 'vitest';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { RootChangedError, chooseRootCert, parseExtraRoots } from '../../src/pki/trust-roots.js';
import { makeCert, makeRoot } from '../helpers/test-pki.js';

describe('chooseRootCert', async () => {
  const vault = await makeRoot('CN=Vault Root');
  const extra = await makeRoot('CN=Old Root');
  const other = await makeRoot('CN=Rotated Root');
  const [vaultRoot] = certsFromPem(vault.pem, 'x');
  const [extraRoot] = certsFromPem(extra.pem, 'x');
  const [otherRoot] = certsFromPem(other.pem, 'x');
  // Bytes as another tool may have written them: same certificates, different text.
  const oddBytes = `# trust bundle\n${vault.pem}\n\n${extra.pem}`;

  it('builds fresh bytes on a first issuance: Vault root first, then the extra roots', () => {
    expect(chooseRootCert(vaultRoot!, [extraRoot!])).toEqual({ rootCert: vaultRoot!.pem + extraRoot!.pem, extrasPending: false, replacedRoots: false });
  });

  it('keeps the published bytes verbatim when Vault\'s root is among them', () => {
    const published = { bytes: oddBytes, roots: certsFromPem(oddBytes, 'x'), enforce: true };
    expect(chooseRootCert(vaultRoot!, [extraRoot!], published)).toEqual({ rootCert: oddBytes, extrasPending: false, replacedRoots: false });
    // The extras changed: still the published bytes (istiod refuses a change), flagged as pending.
    expect(chooseRootCert(vaultRoot!, [], published)).toMatchObject({ rootCert: oddBytes, extrasPending: true });
  });

  it('refuses another Vault root while a valid bundle is published', () => {
    const published = { bytes: vault.pem, roots: [vaultRoot!], enforce: true };
    expect(() => chooseRootCert(otherRoot!, [], published)).toThrow(RootChangedError);
  });

  it('replaces the roots when the published bundle is unusable (nothing left to protect)', () => {
    const published = { bytes: vault.pem, roots: [vaultRoot!], enforce: false };
    expect(chooseRootCert(otherRoot!, [], published)).toEqual({ rootCert: otherRoot!.pem, extrasPending: false, replacedRoots: true });
    // ...but still keeps its bytes when the root did not change.
    expect(chooseRootCert(vaultRoot!, [], { bytes: oddBytes, roots: certsFromPem(oddBytes, 'x'), enforce: false }).rootCert).toBe(oddBytes);
  });
});

describe('parseExtraRoots', () => {
  it('accepts self-signed CAs and refuses anything else', async () => {
    const root = await makeRoot('CN=Extra');
    const leaf = await makeCert({ subject: 'CN=leaf', ca: false }, root);
    expect(parseExtraRoots(root.pem).map((c) => c.subject)).toEqual(['CN=Extra']);
    expect(parseExtraRoots('')).toEqual([]);
    expect(() => parseExtraRoots(leaf.pem)).toThrow(/"CN=leaf" is not a self-signed CA certificate/);
  });
});
