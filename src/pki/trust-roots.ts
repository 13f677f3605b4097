/**
 * What goes into root-cert.pem. istiod (without ISTIO_MULTIROOT_MESH) refuses a whole reload when the
 * bytes of root-cert.pem change, and then keeps the old intermediate until restarted. So once a bundle
 * is published, its root bytes are reused verbatim as long as Vault's root is one of them; a different
 * root from Vault is a root rotation and is refused here, never published silently.
 */
import { AgentError } from '../common/errors.js';
import { certsFromPem, type CertInfo } from './cert-info.js';

export class RootChangedError extends AgentError {
  constructor(vaultRoot: CertInfo, current: readonly CertInfo[]) {
    super(
      `Vault's root "${vaultRoot.subject}" (SHA-256 ${vaultRoot.fingerprint}) is not the root istiod trusts in root-cert.pem (${current
        .map((r) => `"${r.subject}" SHA-256 ${r.fingerprint}`)
        .join(', ')}): keeping the current intermediate, because istiod refuses a reload whose root changed (see docs/root-rotation.md)`,
      { code: 'ROOT_CHANGED', reason: 'root_changed', retryable: false },
    );
  }
}

export interface RootChoice {
  /** Exact bytes for root-cert.pem. */
  rootCert: string;
  /** True when the configured extra roots differ from what is published and were not applied. */
  extrasPending: boolean;
  /** True when the published roots were replaced because nothing valid was left to protect. */
  replacedRoots: boolean;
}

/** What root-cert.pem holds on disk now. */
export interface PublishedRoots {
  bytes: string;
  roots: readonly CertInfo[];
  /** A valid intermediate is published under these roots: a different Vault root must be refused. */
  enforce: boolean;
}

function sameCerts(a: readonly CertInfo[], b: readonly CertInfo[]): boolean {
  return a.length === b.length && a.every((c) => b.some((d) => d.der.equals(c.der)));
}

/**
 * @param vaultRoot the self-signed root Vault's chain ends in
 * @param extraRoots extra anchors from EXTRA_TRUST_ROOTS_FILE ([] when unset)
 * @param published root-cert.pem on disk (even when the rest of the bundle is unusable), if it parses
 * Throws RootChangedError when a valid bundle is published and Vault's root is not among its roots.
 */
export function chooseRootCert(vaultRoot: CertInfo, extraRoots: readonly CertInfo[], published?: PublishedRoots): RootChoice {
  const wanted = [vaultRoot, ...extraRoots.filter((e) => !e.der.equals(vaultRoot.der))];
  const fresh = { rootCert: wanted.map((c) => c.pem).join(''), extrasPending: false };
  if (published === undefined) return { ...fresh, replacedRoots: false };
  if (!published.roots.some((r) => r.der.equals(vaultRoot.der))) {
    if (published.enforce) throw new RootChangedError(vaultRoot, published.roots);
    return { ...fresh, replacedRoots: true };
  }
  return { rootCert: published.bytes, extrasPending: !sameCerts(wanted, published.roots), replacedRoots: false };
}

/** Parses EXTRA_TRUST_ROOTS_FILE content; each certificate must be a self-signed CA. */
export function parseExtraRoots(pem: string | undefined): CertInfo[] {
  if (pem === undefined || pem.trim() === '') return [];
  const certs = certsFromPem(pem, 'EXTRA_TRUST_ROOTS_FILE');
  for (const c of certs) {
    if (!c.isCa || !c.selfSigned) {
      throw new AgentError(`EXTRA_TRUST_ROOTS_FILE: "${c.subject}" is not a self-signed CA certificate`, { code: 'EXTRA_ROOTS_INVALID', reason: 'input_invalid', retryable: false });
    }
  }
  return certs;
}
