/**
 * Signs RS256 JWTs shaped like Kubernetes projected service-account tokens, for `dev` (jwt auth against
 * a local key) and for tests (jwt and kubernetes auth). Real clusters never use this: kubelet mints them.
 */
import { createSign, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';

export interface JwtKey {
  privateKey: KeyObject;
  publicKeyPem: string;
}

export function generateJwtKey(): JwtKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export function signJwt(key: KeyObject, claims: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: 'dev' }));
  const payload = b64url(JSON.stringify(claims));
  const signer = createSign('RSA-SHA256');
  signer.update(`${header}.${payload}`);
  return `${header}.${payload}.${b64url(signer.sign(key))}`;
}

export interface ServiceAccountRef {
  namespace: string;
  name: string;
  uid?: string;
}

export const DEV_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** A projected-token-like JWT: sub system:serviceaccount:<ns>:<name>, aud as an array. */
export function serviceAccountJwt(key: KeyObject, sa: ServiceAccountRef, opts: { audience?: string; ttlSeconds?: number; nowSeconds?: number } = {}): string {
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  return signJwt(key, {
    iss: DEV_ISSUER,
    sub: `system:serviceaccount:${sa.namespace}:${sa.name}`,
    aud: [opts.audience ?? 'vault'],
    iat: now,
    nbf: now,
    exp: now + (opts.ttlSeconds ?? 3600),
    'kubernetes.io': { namespace: sa.namespace, serviceaccount: { name: sa.name, uid: sa.uid ?? randomUUID() } },
  });
}
