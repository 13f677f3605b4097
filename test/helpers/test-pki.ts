/**
 * Certificates made by code for unit tests: a root, intermediates signed by it, and deliberately broken
 * variants (non-CA, no keyCertSign, expired, clientAuth-only EKU, SHA-1...). Nothing opaque is checked in.
 */
import { webcrypto } from 'node:crypto';
import { x509 } from '../../src/pki/x509.js';
import { toPem } from '../../src/pki/pem.js';

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface TestCa {
  cert: x509.X509Certificate;
  pem: string;
  keys: CryptoKeyPair;
  keyPem: string;
}

let serial = 1;

export async function ecKeys(): Promise<{ keys: CryptoKeyPair; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { keys, keyPem: toPem('PRIVATE KEY', new Uint8Array(pkcs8)) };
}

export interface CertOptions {
  subject: string;
  ca?: boolean;
  pathLen?: number;
  keyUsage?: number | null;
  eku?: string[];
  notBefore?: Date;
  notAfter?: Date;
  dnsSans?: string[];
  signingAlgorithm?: Algorithm | EcdsaParams;
  criticalBasicConstraints?: boolean;
  /** Reuse a key pair (a cross-signed copy of a root shares the root's key). */
  keys?: { keys: CryptoKeyPair; keyPem: string };
  extraExtensions?: x509.Extension[];
}

const DAY = 86_400_000;

export async function makeCert(opts: CertOptions, issuer?: TestCa): Promise<TestCa> {
  const { keys, keyPem } = opts.keys ?? (await ecKeys());
  const extensions: x509.Extension[] = [...(opts.extraExtensions ?? [])];
  if (opts.ca !== undefined) extensions.push(new x509.BasicConstraintsExtension(opts.ca, opts.pathLen, opts.criticalBasicConstraints ?? true));
  if (opts.keyUsage !== null) {
    extensions.push(new x509.KeyUsagesExtension(opts.keyUsage ?? (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign), true));
  }
  if (opts.eku) extensions.push(new x509.ExtendedKeyUsageExtension(opts.eku));
  if (opts.dnsSans?.length) extensions.push(new x509.SubjectAlternativeNameExtension(opts.dnsSans.map((value) => ({ type: 'dns' as const, value }))));
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(4, '0'),
    subject: opts.subject,
    issuer: issuer ? issuer.cert.subject : opts.subject,
    notBefore: opts.notBefore ?? new Date(now - DAY),
    notAfter: opts.notAfter ?? new Date(now + 30 * DAY),
    signingAlgorithm: opts.signingAlgorithm ?? EC,
    publicKey: keys.publicKey,
    signingKey: issuer ? issuer.keys.privateKey : keys.privateKey,
    extensions,
  });
  return { cert, pem: cert.toString('pem') + '\n', keys, keyPem };
}

export async function makeRoot(subject = 'CN=Test Root', o: Partial<CertOptions> = {}): Promise<TestCa> {
  return makeCert({ subject, ca: true, notAfter: new Date(Date.now() + 3650 * DAY), ...o });
}

export async function makeIntermediate(root: TestCa, o: Partial<CertOptions> = {}): Promise<TestCa> {
  return makeCert({ subject: 'CN=Intermediate CA, O=Istio', ca: true, pathLen: 0, ...o }, root);
}

/** The four files for `inter` under `root`. */
export function bundleOf(inter: TestCa, root: TestCa, chain: TestCa[] = [inter, root]) {
  return { caKey: inter.keyPem, caCert: inter.pem, certChain: chain.map((c) => c.pem).join(''), rootCert: root.pem };
}
