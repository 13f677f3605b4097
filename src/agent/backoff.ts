/**
 * Retry pacing: capped exponential backoff with "equal jitter" (half fixed, half random), so retries
 * spread out but never collapse to zero. How hard to retry depends on what istiod has:
 * - a valid bundle: back off up to BACKOFF_CAP_MS, but never sleep past the moment it expires without
 *   one more try (at least one attempt in the second half of its remaining life);
 * - nothing valid (expired, or never issued): istiod cannot sign workload certificates, so retry within
 *   seconds (NOTHING_VALID_CAP_MS, jittered) until a bundle is published;
 * - a failure a quick retry cannot fix (denied, refused, a root change): the cap (clamped like the
 *   rest to the valid bundle's life), never more often than REFUSED_MIN_DELAY_MS, so a misconfigured
 *   Vault is not asked again and again; with nothing valid, exactly that often.
 */

export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_CAP_MS = 5 * 60_000;
/** Longest wait between retries while istiod has no valid bundle. */
export const NOTHING_VALID_CAP_MS = 5000;
/** Shortest wait after a failure that retrying soon cannot fix. */
export const REFUSED_MIN_DELAY_MS = 30_000;

/** Delay before retry number `attempt` (0-based). `random` in [0, 1). */
export function backoffDelay(attempt: number, random: number, base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS): number {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

/** The delay actually slept after a failed attempt. */
export function retryDelay(opts: {
  attempt: number;
  random: number;
  retryable: boolean;
  now: number;
  /** notAfter of the certificate istiod uses now; undefined when there is none. */
  currentNotAfter: number | undefined;
  base?: number;
  cap?: number;
}): number {
  const base = opts.base ?? BACKOFF_BASE_MS;
  const cap = opts.cap ?? BACKOFF_CAP_MS;
  const left = opts.currentNotAfter === undefined ? 0 : opts.currentNotAfter - opts.now;
  if (!opts.retryable) {
    // With nothing valid, an operator's fix should be picked up soon: every REFUSED_MIN_DELAY_MS.
    const wanted = left > 0 ? Math.min(cap, left / 2) : 0;
    return Math.round(Math.max(REFUSED_MIN_DELAY_MS, wanted));
  }
  if (left <= 0) return backoffDelay(opts.attempt, opts.random, base, Math.min(cap, NOTHING_VALID_CAP_MS));
  return Math.round(Math.min(backoffDelay(opts.attempt, opts.random, base, cap), Math.max(base, left / 2)));
}
