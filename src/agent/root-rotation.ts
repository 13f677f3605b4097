/**
 * Root rotation, as a pure plan: from Vault's root issuers, the issuer PKI_SIGN_PATH signs with, what
 * root-cert.pem holds and the clock, what root-cert.pem should hold now and which root signs the next
 * intermediate. Every replica of istiod computes the same plan from the same Vault and clock (times come
 * from certificates, not from a replica's memory), in three publishes:
 *
 *   add     a new root appears in the mount: root-cert.pem = old + new (appended, so the old bytes stay a
 *           prefix: istiod <= 1.29 accepts only a byte superset), intermediate unchanged;
 *   switch  the signing issuer's root is the new one and it has been trusted for ROOT_SWITCH_SOAK (proxies
 *           must hold the new anchor first): a new intermediate from the new root; root-cert.pem the same
 *           two roots, reordered (new first) where istiod compares sets (>= 1.30) so it pushes the bundle
 *           and workloads re-issue, the same bytes where it compares bytes (<= 1.29);
 *   remove  the old root leaves once nothing valid chains to it: ROOT_REMOVE_AFTER after the switch (the
 *           old intermediate is gone from istiod then; workload certificates it signed live 24 h by
 *           default), or at once when Vault no longer has it (an operator deleted it, or it expired).
 *
 * Rollback before switch: delete the new issuer in Vault (or make the old one default again and delete
 * the new one): the new root leaves root-cert.pem. Hold: nothing moves (ROOT_ROTATION=hold).
 */
import { formatDuration } from '../common/duration.js';
import { certBlocks, type CertInfo } from '../pki/cert-info.js';

/** A root issuer of the PKI mount (self-signed CA certificate). */
export interface VaultRoot {
  /** Issuer id in the mount. */
  id: string;
  name: string;
  cert: CertInfo;
}

export type RotationPhase = 'steady' | 'added' | 'switched' | 'held';

export interface RootPlanInput {
  now: number;
  /** Every root issuer of the mount (expired ones are ignored here). */
  vaultRoots: readonly VaultRoot[];
  /** The root the issuer PKI_SIGN_PATH names chains to: the root new intermediates should come from. */
  target: VaultRoot;
  /** root-cert.pem as published, if a valid intermediate is published under it. */
  published: { bytes: string; roots: readonly CertInfo[] } | undefined;
  /** The root the published intermediate chains to. */
  anchor: CertInfo | undefined;
  /** notBefore of the published intermediate. */
  currentNotBefore: number | undefined;
  /** EXTRA_TRUST_ROOTS_FILE: kept as they are, never part of a rotation. */
  extraRoots: readonly CertInfo[];
  soakMs: number;
  removeAfterMs: number;
  /** istiod compares root bundles as sets (>= 1.30): reorder at switch so it pushes the new bundle. */
  reorderOnSwitch: boolean;
  hold: boolean;
}

export interface RootPlan {
  phase: RotationPhase;
  /** What root-cert.pem should hold now (exact bytes). */
  rootBytes: string;
  /** True when rootBytes differ from the published bytes. */
  rootsChange: boolean;
  /** The root the next intermediate is signed by. */
  signWith: VaultRoot;
  /** The published intermediate must be replaced now (the switch). */
  mintNow: boolean;
  /** When the plan changes by itself (end of the soak, time to remove the old root). */
  nextAt: number | undefined;
  /** For the log: what the plan does and why. */
  notes: string[];
}

const same = (a: CertInfo, b: CertInfo) => a.der.equals(b.der);

/** Joins PEM blocks, each ending in exactly one newline. */
function joinBlocks(blocks: readonly string[]): string {
  return blocks.map((b) => (b.endsWith('\n') ? b : `${b}\n`)).join('');
}

export function planRoots(i: RootPlanInput): RootPlan {
  const notes: string[] = [];
  const valid = i.vaultRoots.filter((r) => i.now < r.cert.notAfter && i.now >= r.cert.notBefore);
  const isExtra = (c: CertInfo) => i.extraRoots.some((e) => same(e, c));
  const inVault = (c: CertInfo) => valid.find((r) => same(r.cert, c));

  // Nothing valid is published (first issuance, or what is there is unusable): trust every valid root of
  // the mount, the signing one first, plus the extra roots. While the signing issuer's root is still in
  // its soak, sign with the root it replaces, as the running replicas do: a pod started during the soak
  // (a rolling restart, a rescheduled pod) must not hand out certificates some proxies cannot verify yet.
  if (!i.published || !i.anchor) {
    const soakEnds = i.target.cert.notBefore + i.soakMs;
    // Roots made within the same second have equal notBefores: any other root not newer than the target.
    const replaced = i.now < soakEnds ? valid.filter((r) => !same(r.cert, i.target.cert) && r.cert.notBefore <= i.target.cert.notBefore).sort((a, b) => b.cert.notBefore - a.cert.notBefore)[0] : undefined;
    const signWith = replaced ?? i.target;
    if (replaced) notes.push(`the signing issuer's root "${i.target.cert.subject}" is new: this first intermediate comes from "${replaced.cert.subject}" until ${new Date(soakEnds).toISOString()} (ROOT_SWITCH_SOAK ${formatDuration(i.soakMs)} after the new root appeared)`);
    const roots = [signWith.cert, ...valid.filter((r) => !same(r.cert, signWith.cert)).map((r) => r.cert), ...i.extraRoots];
    const uniq = roots.filter((c, n) => roots.findIndex((d) => same(c, d)) === n);
    return { phase: uniq.length > 1 + i.extraRoots.length ? 'added' : 'steady', rootBytes: joinBlocks(uniq.map((c) => c.pem)), rootsChange: true, signWith, mintNow: true, nextAt: replaced ? soakEnds : undefined, notes };
  }

  const anchor = i.anchor;
  const anchorIssuer = inVault(anchor);
  const original = certBlocks(i.published.bytes, 'root-cert.pem');
  let blocks = [...original];
  const blockOf = (c: CertInfo) => blocks.findIndex((b) => b.cert.der.equals(c.der));
  const published = blocks.map((b) => b.cert);

  if (i.hold) {
    notes.push('ROOT_ROTATION=hold: root-cert.pem and the signing root stay as they are');
    return { phase: 'held', rootBytes: i.published.bytes, rootsChange: false, signWith: anchorIssuer ?? i.target, mintNow: false, nextAt: undefined, notes };
  }

  let nextAt: number | undefined;
  const at = (t: number) => (nextAt = nextAt === undefined ? t : Math.min(nextAt, t));

  // add: every valid root of the mount is trusted, and every extra root.
  for (const r of valid) {
    if (published.some((c) => same(c, r.cert))) continue;
    blocks = [...blocks, { text: r.cert.pem, cert: r.cert }];
    notes.push(`add: root "${r.cert.subject}" (${r.cert.fingerprint}) is new in the mount; root-cert.pem gets it next to the current one`);
  }
  for (const e of i.extraRoots) {
    if (blocks.some((b) => same(b.cert, e))) continue;
    blocks = [...blocks, { text: e.pem, cert: e }];
    notes.push(`add: root "${e.subject}" (${e.fingerprint}) from EXTRA_TRUST_ROOTS_FILE`);
  }

  // switch: the signing root differs from the published intermediate's, and has been trusted long enough.
  let signWith: VaultRoot = anchorIssuer ?? i.target;
  let mintNow = false;
  if (!same(i.target.cert, anchor)) {
    const trustedSince = i.target.cert.notBefore;
    const wasPublished = published.some((c) => same(c, i.target.cert));
    const soakEnds = trustedSince + i.soakMs;
    if (wasPublished && i.now >= soakEnds) {
      signWith = i.target;
      mintNow = true;
      notes.push(`switch: intermediate from the new root "${i.target.cert.subject}"`);
      if (i.reorderOnSwitch) {
        const n = blockOf(i.target.cert);
        blocks = [blocks[n]!, ...blocks.filter((_, k) => k !== n)];
        notes.push('switch: root-cert.pem lists the new root first, so istiod pushes the bundle and workloads re-issue');
      }
    } else if (!anchorIssuer) {
      // The old root left Vault before the soak ended: only the new one can sign.
      signWith = i.target;
      notes.push(`the published intermediate's root "${anchor.subject}" is no longer in Vault; renewals come from the new root`);
    } else {
      at(Math.max(soakEnds, i.now + 1));
      notes.push(`the signing issuer's root is new: renewals stay on "${anchor.subject}" until ${new Date(soakEnds).toISOString()} (ROOT_SWITCH_SOAK ${formatDuration(i.soakMs)} after the new root appeared)`);
    }
  }

  // remove: roots other than the one the intermediate chains to (after a switch: the new intermediate's).
  const keep = mintNow ? i.target.cert : anchor;
  const switchedAt = Math.max(keep.notBefore + i.soakMs, i.currentNotBefore ?? 0);
  for (const b of [...blocks]) {
    const c = b.cert;
    if (same(c, keep) || same(c, i.target.cert) || isExtra(c)) continue;
    if (!inVault(c)) {
      blocks = blocks.filter((x) => x !== b);
      notes.push(`remove: root "${c.subject}" (${c.fingerprint}) is neither a valid issuer in the mount nor in EXTRA_TRUST_ROOTS_FILE`);
      continue;
    }
    // Older than the root in use: the one being rotated out. (A newer one is being added.)
    if (mintNow || c.notBefore >= keep.notBefore) continue;
    const removeAt = switchedAt + i.removeAfterMs;
    if (i.now >= removeAt) {
      blocks = blocks.filter((x) => x !== b);
      notes.push(`remove: old root "${c.subject}" (${c.fingerprint}); nothing valid chains to it any more (ROOT_REMOVE_AFTER ${formatDuration(i.removeAfterMs)} after the switch)`);
    } else {
      at(removeAt);
      notes.push(`old root "${c.subject}" stays in root-cert.pem until ${new Date(removeAt).toISOString()}`);
    }
  }

  // Only additions: the published bytes stay exactly as they are, with the new roots after them.
  const onlyAppended = blocks.length >= original.length && original.every((b, n) => blocks[n] === b);
  const rootBytes = onlyAppended
    ? (blocks.length === original.length ? i.published.bytes : joinBlocks([i.published.bytes, ...blocks.slice(original.length).map((b) => b.text)]))
    : joinBlocks(blocks.map((b) => b.text));
  const vaultRootsPublished = blocks.filter((b) => !isExtra(b.cert)).length;
  const phase: RotationPhase = vaultRootsPublished <= 1 ? 'steady' : same(mintNow ? i.target.cert : anchor, i.target.cert) && blocks.some((b) => !isExtra(b.cert) && b.cert.notBefore < i.target.cert.notBefore) ? 'switched' : 'added';
  return { phase, rootBytes, rootsChange: rootBytes !== i.published.bytes, signWith, mintNow, nextAt, notes };
}
