import { describe, expect, it } from 'vitest';
import { VerificationError } from '../../src/common/errors.js';
import { assembleChain } from '../../src/pki/chain.js';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { makeCert, makeIntermediate, makeRoot } from '../helpers/test-pki.js';

describe('assembleChain', () => {
  it('orders by signature, not by array order, and drops the duplicate Vault puts in ca_chain', async () => {
    const root = await makeRoot();
    const mid = await makeCert({ subject: 'CN=Mid', ca: true }, root);
    const inter = await makeIntermediate(mid);
    const a = assembleChain({ certificate: inter.pem, issuingCa: mid.pem, caChain: [root.pem, inter.pem, mid.pem] });
    expect(a.chain.map((c) => c.subject)).toEqual(['CN=Intermediate CA, O=Istio', 'CN=Mid', 'CN=Test Root']);
    expect(a.root.subject).toBe('CN=Test Root');
  });

  it('works without the duplicate and with issuing_ca being the root', async () => {
    const root = await makeRoot();
    const inter = await makeIntermediate(root);
    const a = assembleChain({ certificate: inter.pem, issuingCa: root.pem, caChain: [] });
    expect(a.chain.map((c) => c.subject)).toEqual(['CN=Intermediate CA, O=Istio', 'CN=Test Root']);
  });

  it('accepts ca_chain entries holding several PEM blocks', async () => {
    const root = await makeRoot();
    const mid = await makeCert({ subject: 'CN=Mid', ca: true }, root);
    const inter = await makeIntermediate(mid);
    const a = assembleChain({ certificate: inter.pem, issuingCa: mid.pem, caChain: [mid.pem + root.pem] });
    expect(a.chain).toHaveLength(3);
  });

  it('ignores unrelated certificates in the pool', async () => {
    const root = await makeRoot();
    const stranger = await makeRoot('CN=Stranger');
    const inter = await makeIntermediate(root);
    const a = assembleChain({ certificate: inter.pem, issuingCa: root.pem, caChain: [stranger.pem, root.pem] });
    expect(a.chain.map((c) => c.subject)).toEqual(['CN=Intermediate CA, O=Istio', 'CN=Test Root']);
  });

  it('with a cross-signed root in the pool, takes the path to a trusted root, else to a self-signed one', async () => {
    const oldRoot = await makeRoot('CN=Old Root');
    const newRoot = await makeRoot('CN=New Root');
    // The new root's subject and key, signed by the old root (what a rotation with cross-signing adds).
    const cross = await makeCert({ subject: 'CN=New Root', ca: true, keys: { keys: newRoot.keys, keyPem: newRoot.keyPem } }, oldRoot);
    const inter = await makeIntermediate(newRoot);
    const material = { certificate: inter.pem, issuingCa: cross.pem, caChain: [cross.pem, oldRoot.pem, newRoot.pem] };
    // Array order would lead through the cross-signed copy to the old root; the self-signed root wins.
    expect(assembleChain(material).root.subject).toBe('CN=New Root');
    // While the published root-cert.pem still trusts only the old root, the path to it is the one to use.
    const [old] = certsFromPem(oldRoot.pem, 'x');
    const viaOld = assembleChain(material, [old!]);
    expect(viaOld.chain.map((c) => c.subject)).toEqual(['CN=Intermediate CA, O=Istio', 'CN=New Root', 'CN=Old Root']);
  });

  it('refuses a chain that does not reach a self-signed root', async () => {
    const root = await makeRoot();
    const mid = await makeCert({ subject: 'CN=Mid', ca: true }, root);
    const inter = await makeIntermediate(mid);
    expect(() => assembleChain({ certificate: inter.pem, issuingCa: mid.pem, caChain: [] })).toThrow(VerificationError);
    expect(() => assembleChain({ certificate: inter.pem, issuingCa: mid.pem, caChain: [] })).toThrow(/does not reach a self-signed root/);
  });

  it('reads PEM with trailing blanks, as Go does', async () => {
    const root = await makeRoot();
    const inter = await makeIntermediate(root);
    const sloppy = (pem: string) => pem.split('\n').map((l) => (l ? `${l}  ` : l)).join('\r\n');
    expect(assembleChain({ certificate: sloppy(inter.pem), issuingCa: sloppy(root.pem), caChain: [] }).chain).toHaveLength(2);
  });

  it('refuses a certificate field with two certificates or garbage', async () => {
    const root = await makeRoot();
    const inter = await makeIntermediate(root);
    expect(() => assembleChain({ certificate: inter.pem + inter.pem, issuingCa: root.pem, caChain: [] })).toThrow(/expected exactly 1/);
    expect(() => assembleChain({ certificate: 'not pem', issuingCa: root.pem, caChain: [] })).toThrow(/no PEM certificate/);
  });
});
