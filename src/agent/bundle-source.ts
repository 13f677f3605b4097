/**
 * Where a new bundle comes from: the seam between "keep istiod's bundle fresh" (BundleKeeper, the
 * renewal loop) and "obtain a bundle" (Vault PKI signing a CSR made here, or a bundle stored in Vault
 * by someone else). A source returns a bundle that already passed verifyBundle(); the keeper decides
 * whether it may replace what istiod uses, publishes it, and counts the outcome. Adding a source is one
 * file implementing this interface and one line in compose.ts.
 */
import type { VerifiedBundle } from '../pki/bundle.js';
import type { PublishedRoots } from '../pki/trust-roots.js';

export interface SourceRequest {
  /** root-cert.pem on disk, if any: its bytes are kept when the root is the same. */
  published: PublishedRoots | undefined;
  /** What istiod uses now (valid or not), so a source can tell "nothing new" from "new". */
  current: VerifiedBundle | undefined;
  /**
   * Why: a renewal (due, missing, rotate...) wants a new bundle; 'changed' wants only what the source
   * says changed (a root added or removed, a switch), and may get the current bundle back.
   */
  trigger: 'renew' | 'changed';
  /**
   * istiod is running on the published files. Without ISTIO_MULTIROOT_MESH it then skips any reload whose
   * root-cert.pem differs, so root changes wait for its next start.
   */
  istiodRunning: boolean;
}

export interface SourcedBundle {
  bundle: VerifiedBundle;
  /** Lifetime asked of the issuer, when the source asks for one. */
  requestedTtlMs?: number;
  /** Vault's warnings, already logged by the source. */
  warnings?: readonly string[];
}

export interface BundleSource {
  /** For logs: `pki-sign`, `vault-paths`. */
  readonly name: string;
  /**
   * True when every call mints a new certificate (a renewal is an issuance). False when the source
   * hands back what is stored (renewal happens elsewhere): then the same bundle again is "unchanged",
   * not a failure, and a stored bundle that is already due is still better than none.
   */
  readonly mints: boolean;
  /**
   * Obtains a verified bundle. Throws AgentError subclasses with `reason` set (vault_*, invalid_response,
   * verification_failed, root_changed...), or AbortedError when `signal` aborts.
   */
  fetch(req: SourceRequest, signal?: AbortSignal): Promise<SourcedBundle>;
  /**
   * For sources that change out of band: a cheap check (e.g. a KV version) telling whether fetch()
   * could return something new; undefined when the source has nothing cheaper than fetch().
   */
  changed?(req: Omit<SourceRequest, 'trigger'>, signal?: AbortSignal): Promise<boolean>;
  /** How often changed() is worth asking, in ms (jittered by the loop). */
  readonly pollIntervalMs?: number;
  /**
   * How the source's server looks now (cheap, unauthenticated): the loop asks every few seconds while it
   * waits after a failure, and retries as soon as the answer changes to "up" (Vault back, a new leader
   * elected) instead of a doubling backoff later.
   */
  state?(signal?: AbortSignal): Promise<{ up: boolean; fingerprint: string }>;
  /** Epoch ms at which the current Vault token expires, if known (for the metric). */
  tokenExpiresAt(): number | undefined;
  /** Releases what the source holds (revokes its Vault token, bounded). Never throws. */
  close(): Promise<void>;
}
