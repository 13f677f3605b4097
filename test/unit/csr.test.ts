import { describe, expect, it } from 'vitest';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { buildCsr, subjectDn } from '../../src/pki/csr.js';
import { generateKey, keySpec } from '../../src/pki/keys.js';
import { x509 } from '../../src/pki/x509.js';

describe('key generation and CSR', () => {
  it.each([
    ['ec', 256, 'ECDSA', 'P-256'],
    ['ec', 384, 'ECDSA', 'P-384'],
    ['rsa', 2048, 'RSASSA-PKCS1-v1_5', undefined],
  ] as const)('%s %s: CSR parses back with subject, SANs, CA request and a valid signature', async (type, size, algName, curve) => {
    const key = await generateKey(keySpec(type, size));
    expect(key.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const priv = createPrivateKey(key.privateKeyPem);
    expect(priv.asymmetricKeyType).toBe(type);
    if (type === 'rsa') expect(priv.asymmetricKeyDetails?.modulusLength).toBe(size);

    const pem = await buildCsr(key, { commonName: 'Intermediate CA', organization: 'Istio', locality: 'cluster-1', dnsSans: ['istiod.istio-system.svc'] });
    const csr = new x509.Pkcs10CertificateRequest(pem);
    expect(await csr.verify()).toBe(true);
    expect(csr.subject).toBe('CN=Intermediate CA, O=Istio, L=cluster-1');
    expect(csr.publicKey.algorithm.name).toBe(algName);
    if (curve) expect((csr.publicKey.algorithm as EcKeyAlgorithm).namedCurve).toBe(curve);
    // Pkcs10CertificateRequest.getExtension matches by OID string (2.5.29.17 SAN, 2.5.29.19 basicConstraints).
    const san = csr.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension | null;
    expect(san?.names.items.map((n) => n.value)).toEqual(['istiod.istio-system.svc']);
    expect((csr.getExtension('2.5.29.19') as x509.BasicConstraintsExtension | null)?.ca).toBe(true);
    // The CSR's public key is the generated key's public half.
    const fromKey = createPublicKey(priv).export({ type: 'spki', format: 'der' });
    expect(Buffer.from(csr.publicKey.rawData).equals(fromKey)).toBe(true);
  });

  it('omits L= without a cluster name and escapes special characters', () => {
    expect(subjectDn({ commonName: 'A, B', organization: 'O+1', locality: undefined, dnsSans: [] })).toBe('CN=A\\, B, O=O\\+1');
  });

  it('rejects unsupported key sizes', () => {
    expect(() => keySpec('ec', 521)).toThrow(/unsupported/);
    expect(() => keySpec('rsa', 1024)).toThrow(/unsupported/);
  });
});
