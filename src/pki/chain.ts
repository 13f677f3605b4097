/**
 * Chain assembly from a sign-intermediate response, the cert-manager way: pool `certificate`,
 * `issuing_ca` and `ca_chain`, drop duplicates (Vault lists the new intermediate in ca_chain too),
 * then walk issuer links by signature, never trusting the order of the arrays.
 */
import { VerificationError } from '../common/errors.js';
import { certsFromPem, isIssuedBy, type CertInfo } from './cert-info.js';

/** Longest chain accepted; a deeper one from Vault is a misconfiguration or an attack. */
export const MAX_CHAIN_DEPTH = 8;

export interface AssembledChain {
  intermediate: CertInfo;
  /** Intermediate first, then each issuer, the self-signed root last. */
  chain: CertInfo[];
  root: CertInfo;
}

export interface SignedMaterial {
  certificate: string;
  issuingCa: string;
  caChain: readonly string[];
}

/**
 * Orders `issuers` into the path from `leaf` up to a self-signed root.
 * Throws VerificationError(CHAIN_INCOMPLETE) when no self-signed root is reached.
 */
export function buildPath(leaf: CertInfo, issuers: readonly CertInfo[]): CertInfo[] {
  const seen = new Set<string>([leaf.der.toString('base64')]);
  const pool: CertInfo[] = [];
  for (const c of issuers) {
    const id = c.der.toString('base64');
    if (!seen.has(id)) {
      seen.add(id);
      pool.push(c);
    }
  }
  const path = [leaf];
  let cur = leaf;
  while (!cur.selfSigned) {
    if (path.length > MAX_CHAIN_DEPTH) {
      throw new VerificationError(`the chain is longer than ${MAX_CHAIN_DEPTH} certificates`, 'CHAIN_TOO_LONG');
    }
    const parent = pool.find((p) => !path.includes(p) && isIssuedBy(cur, p));
    if (!parent) {
      throw new VerificationError(
        `the chain has no issuer for "${cur.subject}" (issuer "${cur.issuer}") and does not reach a self-signed root; check that the PKI mount's issuer chain is complete (vault read <mount>/issuer/default/json)`,
        'CHAIN_INCOMPLETE',
      );
    }
    path.push(parent);
    cur = parent;
  }
  return path;
}

/** Assembles the chain Vault returned. Throws VerificationError for unparsable PEM or a broken chain. */
export function assembleChain(material: SignedMaterial): AssembledChain {
  const leaves = certsFromPem(material.certificate, "the signed certificate in Vault's response");
  if (leaves.length !== 1) {
    throw new VerificationError(`Vault's "certificate" field holds ${leaves.length} certificates, expected exactly 1`, 'PEM_INVALID');
  }
  const intermediate = leaves[0]!;
  const issuers = [
    ...certsFromPem(material.issuingCa, "issuing_ca in Vault's response"),
    ...material.caChain.flatMap((pem, i) => certsFromPem(pem, `ca_chain[${i}] in Vault's response`)),
  ];
  const chain = buildPath(intermediate, issuers);
  return { intermediate, chain, root: chain[chain.length - 1]! };
}
