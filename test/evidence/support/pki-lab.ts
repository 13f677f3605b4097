/**
 * A root CA whose private key the test holds, imported into a real OpenBao PKI mount (`<mount>/config/ca`
 * with a pem_bundle), so OpenBao signs with it AND the test can mint any broken certificate under the
 * very same root: expired, not yet valid, not a CA, no keyCertSign, clientAuth-only, SHA-1... A
 * certificate made this way chains to the root the agent trusts, so the agent's own checks (not a
 * chain failure) are what must catch it.
 */
import { webcrypto } from 'node:crypto';
import type { AdminApi } from '../../../src/dev/admin-api.js';
import { toPem } from '../../../src/pki/pem.js';
import { x509 } from '../../../src/pki/x509.js';

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const DAY = 86_400_000;

export interface LabCa {
  cert: x509.X509Certificate;
  pem: string;
  keys: CryptoKeyPair;
  keyPem: string;
}

let serial = 0x5000;

async function ecKeys(): Promise<{ keys: CryptoKeyPair; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { keys, keyPem: toPem('PRIVATE KEY', new Uint8Array(pkcs8)) };
}

export interface MintOptions {
  subject?: string;
  ca?: boolean;
  /** undefined: no basicConstraints at all. */
  pathLen?: number;
  basicConstraintsCritical?: boolean;
  keyUsage?: number | null;
  eku?: string[];
  notBefore?: Date;
  notAfter?: Date;
  hash?: 'SHA-1' | 'SHA-256';
  /** Public key of the certificate (default: a fresh key). */
  publicKey?: CryptoKey;
}

/** A certificate signed by `issuer` (or self-signed when `issuer` is undefined). */
export async function mint(o: MintOptions, issuer?: LabCa): Promise<LabCa & { pem: string }> {
  const own = o.publicKey ? undefined : await ecKeys();
  const publicKey = o.publicKey ?? own!.keys.publicKey;
  const subject = o.subject ?? 'CN=Intermediate CA, O=Istio';
  const extensions: x509.Extension[] = [];
  if (o.ca !== undefined) extensions.push(new x509.BasicConstraintsExtension(o.ca, o.pathLen, o.basicConstraintsCritical ?? true));
  if (o.keyUsage !== null) extensions.push(new x509.KeyUsagesExtension(o.keyUsage ?? (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign), true));
  if (o.eku) extensions.push(new x509.ExtendedKeyUsageExtension(o.eku));
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(publicKey));
  if (issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey));
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(6, '0'),
    subject,
    issuer: issuer ? issuer.cert.subject : subject,
    notBefore: o.notBefore ?? new Date(now - 60_000),
    notAfter: o.notAfter ?? new Date(now + DAY),
    signingAlgorithm: { name: 'ECDSA', hash: o.hash ?? 'SHA-256' } as EcdsaParams,
    publicKey,
    signingKey: issuer ? issuer.keys.privateKey : own!.keys.privateKey,
    extensions,
  });
  return { cert, pem: cert.toString('pem') + '\n', keys: own?.keys ?? ({ publicKey } as CryptoKeyPair), keyPem: own?.keyPem ?? '' };
}

/** A self-signed root CA (10 years, SKI set, as OpenBao expects of an imported issuer). */
export async function makeLabRoot(subject: string): Promise<LabCa> {
  const { keys, keyPem } = await ecKeys();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(6, '0'),
    subject,
    issuer: subject,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 3650 * DAY),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions,
  });
  return { cert, pem: cert.toString('pem') + '\n', keys, keyPem };
}

/** The public key inside a PEM CSR, as a CryptoKey usable by `mint`. */
export async function csrPublicKey(csrPem: string): Promise<CryptoKey> {
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  return csr.publicKey.export(EC, ['verify']);
}

/** A fresh key and its CSR (for "a certificate for a different key"). */
export async function freshCsr(subject = 'CN=Intermediate CA, O=Istio'): Promise<string> {
  const { keys } = await ecKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: subject, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams });
  return csr.toString('pem') + '\n';
}

/**
 * Enables `mount` as a PKI secrets engine and imports `root` (certificate and key) as its default
 * issuer. Also adds a leaf role `leaf` (for `<mount>/sign/leaf`, which signs a CSR as a NON-CA cert).
 */
export async function importRoot(api: AdminApi, mount: string, root: LabCa): Promise<void> {
  const en = await api.request('POST', `sys/mounts/${mount}`, { type: 'pki', config: { max_lease_ttl: '87600h' } });
  if (en.status >= 300) throw new Error(`enabling ${mount}: HTTP ${en.status} ${JSON.stringify(en.body)}`);
  await api.call('POST', `${mount}/config/ca`, { pem_bundle: root.keyPem + root.pem });
  await api.call('POST', `${mount}/roles/leaf`, { allow_any_name: true, enforce_hostnames: false, max_ttl: '24h', key_type: 'any', server_flag: true, client_flag: true });
}
