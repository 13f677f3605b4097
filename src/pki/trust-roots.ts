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
        .join(', ')}): keeping the current intermediate, because istiod refuses a reload whose root changed (see the README section "Root changed in Vault")`,
      { code: 'ROOT_CHANGED', reason: 'root_changed', retryable: false },
    );
  }
}

export interface RootChoice {
  /** Exact bytes for root-cert.pem. */
  rootCert: string;
  /** True when the configured extra roots differ from what is published and were not applied. */
  extrasPending: boolean;
}

function sameCerts(a: readonly CertInfo[], b: readonly CertInfo[]): boolean {
  return a.length === b.length && a.every((c) => b.some((d) => d.der.equals(c.der)));
}

/**
 * @param vaultRoot the self-signed root Vault's chain ends in
 * @param extraRoots extra anchors from EXTRA_TRUST_ROOTS_FILE ([] when unset)
 * @param current the published root-cert.pem (bytes and parsed), undefined on a first issuance
 * Throws RootChangedError when a bundle is published and Vault's root is not among its roots.
 */
export function chooseRootCert(vaultRoot: CertInfo, extraRoots: readonly CertInfo[], current?: { bytes: string; roots: readonly CertInfo[] }): RootChoice {
  const wanted = [vaultRoot, ...extraRoots.filter((e) => !e.der.equals(vaultRoot.der))];
  if (current === undefined) return { rootCert: wanted.map((c) => c.pem).join(''), extrasPending: false };
  if (!current.roots.some((r) => r.der.equals(vaultRoot.der))) throw new RootChangedError(vaultRoot, current.roots);
  return { rootCert: current.bytes, extrasPending: !sameCerts(wanted, current.roots) };
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
