import { describe, expect, it } from 'vitest';
import { VerificationError } from '../../src/common/errors.js';
import { verifyBundle } from '../../src/pki/verify.js';
import { x509 } from '../../src/pki/x509.js';
import { bundleOf, makeCert, makeIntermediate, makeRoot } from '../helpers/test-pki.js';

const DAY = 86_400_000;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VerificationError);
    return (err as VerificationError).code;
  }
  return 'PASSED';
}

describe('verifyBundle', () => {
  it('accepts a correct bundle and reports its facts', async () => {
    const root = await makeRoot();
    const inter = await makeIntermediate(root);
    const v = verifyBundle(bundleOf(inter, root), { now: Date.now() });
    expect(v.intermediate.subject).toBe('CN=Intermediate CA, O=Istio');
    expect(v.anchor.subject).toBe('CN=Test Root');
    expect(v.chain).toHaveLength(2);
  });

  it('accepts a chain through a second-level intermediate', async () => {
    const root = await makeRoot();
    const mid = await makeCert({ subject: 'CN=Mid', ca: true, pathLen: 1 }, root);
    const inter = await makeIntermediate(mid);
    const v = verifyBundle(bundleOf(inter, root, [inter, mid, root]), { now: Date.now() });
    expect(v.chain.map((c) => c.subject)).toEqual(['CN=Intermediate CA, O=Istio', 'CN=Mid', 'CN=Test Root']);
  });

  it.each([
    ['KEY_MISMATCH', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root);
      const other = await makeIntermediate(root);
      return { ...bundleOf(inter, root), caKey: other.keyPem };
    }],
    ['NOT_CA', async () => {
      const root = await makeRoot();
      const leaf = await makeCert({ subject: 'CN=not a ca', ca: false }, root);
      return bundleOf(leaf, root);
    }],
    ['NOT_CA', async () => {
      const root = await makeRoot();
      const noBc = await makeCert({ subject: 'CN=no basic constraints' }, root);
      return bundleOf(noBc, root);
    }],
    ['MISSING_KEY_CERT_SIGN', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root, { keyUsage: x509.KeyUsageFlags.digitalSignature });
      return bundleOf(inter, root);
    }],
    ['MISSING_KEY_CERT_SIGN', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root, { keyUsage: null });
      return bundleOf(inter, root);
    }],
    ['WRONG_ROOT', async () => {
      const root = await makeRoot();
      const otherRoot = await makeRoot('CN=Other Root');
      const inter = await makeIntermediate(root);
      return { ...bundleOf(inter, root, [inter]), rootCert: otherRoot.pem };
    }],
    ['WRONG_ROOT', async () => {
      const root = await makeRoot();
      const otherRoot = await makeRoot('CN=Other Root');
      const inter = await makeIntermediate(root);
      return { ...bundleOf(inter, root, [inter, root]), rootCert: otherRoot.pem };
    }],
    ['EXPIRED', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root, { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
      return bundleOf(inter, root);
    }],
    ['NOT_YET_VALID', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root, { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 10 * DAY) });
      return bundleOf(inter, root);
    }],
    ['EKU_EXCLUDES_SERVER_AUTH', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root, { eku: ['1.3.6.1.5.5.7.3.2'] });
      return bundleOf(inter, root);
    }],
    ['CHAIN_MISMATCH', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root);
      const older = await makeIntermediate(root);
      return { ...bundleOf(inter, root), certChain: older.pem + root.pem };
    }],
    ['CHAIN_ORDER', async () => {
      const root = await makeRoot();
      const mid = await makeCert({ subject: 'CN=Mid', ca: true }, root);
      const inter = await makeIntermediate(mid);
      return bundleOf(inter, root, [inter, root, mid]);
    }],
    ['NOT_INTERMEDIATE', async () => {
      const root = await makeRoot();
      return bundleOf(root, root);
    }],
    ['PATH_LEN', async () => {
      const root = await makeRoot('CN=Strict Root', { pathLen: 0 });
      const inter = await makeIntermediate(root);
      return bundleOf(inter, root);
    }],
    ['WEAK_SIGNATURE', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root, { signingAlgorithm: { name: 'ECDSA', hash: 'SHA-1' } as EcdsaParams });
      return bundleOf(inter, root);
    }],
    ['PEM_INVALID', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root);
      return { ...bundleOf(inter, root), certChain: 'garbage' };
    }],
    ['EKU_EXCLUDES_SERVER_AUTH', async () => {
      // The restriction sits on the issuer above ca-cert.pem: Go checks the whole path.
      const root = await makeRoot();
      const mid = await makeCert({ subject: 'CN=Client-only Mid', ca: true, eku: ['1.3.6.1.5.5.7.3.2'] }, root);
      const inter = await makeIntermediate(mid);
      return bundleOf(inter, root, [inter, mid, root]);
    }],
    ['WEAK_SIGNATURE', async () => {
      const root = await makeRoot();
      const mid = await makeCert({ subject: 'CN=Legacy Mid', ca: true, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-1' } as EcdsaParams }, root);
      const inter = await makeIntermediate(mid);
      return bundleOf(inter, root, [inter, mid, root]);
    }],
    ['UNHANDLED_CRITICAL_EXTENSION', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root, { extraExtensions: [new x509.Extension('1.3.6.1.4.1.99999.1', true, new Uint8Array([5, 0]))] });
      return bundleOf(inter, root);
    }],
    ['PEM_INVALID', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root);
      return { ...bundleOf(inter, root), caCert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' };
    }],
    ['KEY_INVALID', async () => {
      const root = await makeRoot();
      const inter = await makeIntermediate(root);
      return { ...bundleOf(inter, root), caKey: inter.pem };
    }],
  ])('refuses with %s', async (code, make) => {
    const files = await make();
    expect(codeOf(() => verifyBundle(files, { now: Date.now() }))).toBe(code);
  });

  it('anchors at the valid one of two matching roots (a re-issued root beside its expired twin)', async () => {
    const fresh = await makeRoot('CN=Mesh Root');
    const expiredTwin = await makeCert({ subject: 'CN=Mesh Root', ca: true, keys: { keys: fresh.keys, keyPem: fresh.keyPem }, notBefore: new Date(Date.now() - 20 * DAY), notAfter: new Date(Date.now() - DAY) });
    const inter = await makeIntermediate(fresh);
    const v = verifyBundle({ ...bundleOf(inter, fresh, [inter]), rootCert: expiredTwin.pem + fresh.pem }, { now: Date.now() });
    expect(v.anchor.notAfter).toBe(v.roots[1]!.notAfter);
  });

  it('names the problem in a message a person can act on', async () => {
    const root = await makeRoot();
    const inter = await makeIntermediate(root);
    const other = await makeIntermediate(root);
    expect(() => verifyBundle({ ...bundleOf(inter, root), caKey: other.keyPem }, { now: Date.now() })).toThrow(/ca-key.pem does not match ca-cert.pem/);
  });
});
