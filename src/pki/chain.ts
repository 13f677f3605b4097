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
 * Orders `issuers` into the path from `leaf` up to a self-signed root. Several paths can exist (a
 * cross-signed copy of a root has the root's subject and key, so it also "issued" what the root
 * issued): all are explored, and the one kept ends at a root in `trusted` (the published roots) if
 * any does, else at any self-signed root, preferring the shorter path and then the later expiry.
 * Throws VerificationError(CHAIN_INCOMPLETE) when no self-signed root is reached.
 */
export function buildPath(leaf: CertInfo, issuers: readonly CertInfo[], trusted: readonly CertInfo[] = []): CertInfo[] {
  const seen = new Set<string>([leaf.der.toString('base64')]);
  const pool: CertInfo[] = [];
  for (const c of issuers) {
    const id = c.der.toString('base64');
    if (!seen.has(id)) {
      seen.add(id);
      pool.push(c);
    }
  }
  const isTrusted = (c: CertInfo) => trusted.some((t) => t.der.equals(c.der));
  let best: CertInfo[] | undefined;
  const better = (a: CertInfo[], b: CertInfo[] | undefined) => {
    if (!b) return true;
    const ta = isTrusted(a[a.length - 1]!);
    const tb = isTrusted(b[b.length - 1]!);
    if (ta !== tb) return ta;
    if (a.length !== b.length) return a.length < b.length;
    return a[a.length - 1]!.notAfter > b[b.length - 1]!.notAfter;
  };
  let tooLong = false;
  // Bounded work whatever a (hostile) server sends: signature checks are memoised, paths counted.
  const issued = new Map<string, boolean>();
  const signs = (child: CertInfo, parent: CertInfo) => {
    const k = `${pool.indexOf(parent)}>${child === leaf ? -1 : pool.indexOf(child)}`;
    let v = issued.get(k);
    if (v === undefined) issued.set(k, (v = isIssuedBy(child, parent)));
    return v;
  };
  let budget = 1000;
  const walk = (path: CertInfo[]) => {
    if (--budget < 0) return;
    const cur = path[path.length - 1]!;
    if (cur.selfSigned) {
      if (better(path, best)) best = path;
      return;
    }
    if (path.length > MAX_CHAIN_DEPTH) {
      tooLong = true;
      return;
    }
    for (const p of pool) if (!path.includes(p) && signs(cur, p)) walk([...path, p]);
  };
  walk([leaf]);
  if (best) return best;
  if (tooLong) throw new VerificationError(`the chain is longer than ${MAX_CHAIN_DEPTH} certificates`, 'CHAIN_TOO_LONG');
  throw new VerificationError(
    `the chain has no issuer path from "${leaf.subject}" (issuer "${leaf.issuer}") and does not reach a self-signed root; check that the PKI mount's issuer chain is complete (vault read <mount>/issuer/default/json)`,
    'CHAIN_INCOMPLETE',
  );
}

/**
 * Assembles the chain Vault returned, preferring a path to one of `trusted` (the published roots).
 * Throws VerificationError for unparsable PEM or a broken chain.
 */
export function assembleChain(material: SignedMaterial, trusted: readonly CertInfo[] = []): AssembledChain {
  const leaves = certsFromPem(material.certificate, "the signed certificate in Vault's response");
  if (leaves.length !== 1) {
    throw new VerificationError(`Vault's "certificate" field holds ${leaves.length} certificates, expected exactly 1`, 'PEM_INVALID');
  }
  const intermediate = leaves[0]!;
  const issuers = [
    ...certsFromPem(material.issuingCa, "issuing_ca in Vault's response"),
    ...material.caChain.flatMap((pem, i) => certsFromPem(pem, `ca_chain[${i}] in Vault's response`)),
  ];
  const chain = buildPath(intermediate, issuers, trusted);
  return { intermediate, chain, root: chain[chain.length - 1]! };
}
