/** The one search for secrets in test output (test/helpers/secret-fragments.ts), used by log-hygiene and the evidence suites. */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { findSecrets } from '../helpers/secret-fragments.js';

const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
const jwt = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from('{"sub":"system:serviceaccount:istio-system:istiod"}').toString('base64url')}.c2lnbmF0dXJl`;
const secrets = { tokens: ['hvs.CAESIJ2example'], jwts: [jwt], privateKeys: [pem] };

describe('findSecrets', () => {
  it('finds nothing in clean text', () => {
    expect(findSecrets('{"msg":"published a new intermediate","serial":"4f:2a"}', secrets)).toEqual([]);
  });

  it('names each kind it finds, never the secret itself', () => {
    const bodyLine = pem.split('\n')[1]!;
    expect(bodyLine.length).toBeGreaterThanOrEqual(40);
    expect(findSecrets(`key: ${bodyLine}`, secrets)).toEqual(['a fragment of a published private key']);
    expect(findSecrets('-----BEGIN PRIVATE KEY-----', secrets)).toEqual(['a PEM "PRIVATE KEY" label']);
    expect(findSecrets('token=hvs.CAESIJ2example', secrets)).toEqual(['a Vault token']);
    expect(findSecrets(`Authorization: Bearer ${jwt}`, secrets)).toEqual(['the service-account JWT']);
    expect(findSecrets(`claims ${jwt.split('.')[1]}`, secrets)).toEqual(['the JWT claims segment']);
  });
});
