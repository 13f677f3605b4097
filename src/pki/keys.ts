/**
 * Intermediate key generation, in memory only. WebCrypto generates asynchronously (RSA 4096 takes
 * seconds; the sidecar must keep serving /metrics meanwhile) and hands @peculiar/x509 the CryptoKeyPair
 * it signs the CSR with. The private key leaves this module only as PKCS#8 PEM, which istiod reads.
 */
import { webcrypto } from 'node:crypto';
import { toPem } from './pem.js';

export type KeySpec = { type: 'rsa'; size: 2048 | 3072 | 4096 } | { type: 'ec'; size: 256 | 384 };

export interface GeneratedKey {
  keys: CryptoKeyPair;
  /** Signing algorithm for the CSR, matched to the key (SHA-384 for P-384, SHA-256 otherwise). */
  signingAlgorithm: RsaHashedImportParams | EcdsaParams;
  /** PKCS#8 "PRIVATE KEY" PEM, the bytes of ca-key.pem. */
  privateKeyPem: string;
}

/** Narrows unvalidated numbers from settings into a KeySpec. Throws on an unsupported combination. */
export function keySpec(type: 'rsa' | 'ec', size: number): KeySpec {
  if (type === 'rsa' && (size === 2048 || size === 3072 || size === 4096)) return { type, size };
  if (type === 'ec' && (size === 256 || size === 384)) return { type, size };
  throw new Error(`unsupported key: ${type} ${size}`);
}

export async function generateKey(spec: KeySpec): Promise<GeneratedKey> {
  const subtle = webcrypto.subtle;
  let algorithm: RsaHashedKeyGenParams | EcKeyGenParams;
  let signingAlgorithm: RsaHashedImportParams | EcdsaParams;
  if (spec.type === 'rsa') {
    algorithm = { name: 'RSASSA-PKCS1-v1_5', modulusLength: spec.size, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
    signingAlgorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  } else {
    const curve = spec.size === 256 ? 'P-256' : 'P-384';
    algorithm = { name: 'ECDSA', namedCurve: curve };
    signingAlgorithm = { name: 'ECDSA', hash: spec.size === 256 ? 'SHA-256' : 'SHA-384' };
  }
  // Extractable: the private key must be exported once, to ca-key.pem, which is the whole point.
  const keys = (await subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const pkcs8 = await subtle.exportKey('pkcs8', keys.privateKey);
  return { keys, signingAlgorithm, privateKeyPem: toPem('PRIVATE KEY', new Uint8Array(pkcs8)) };
}
