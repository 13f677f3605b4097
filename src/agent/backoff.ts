/**
 * Retry pacing: capped exponential backoff with "equal jitter" (half fixed, half random), so retries
 * spread out but never collapse to zero. Never sleeps past the moment the current certificate expires
 * without one more try.
 */

export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_CAP_MS = 5 * 60_000;

/** Delay before retry number `attempt` (0-based). `random` in [0, 1). */
export function backoffDelay(attempt: number, random: number, base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS): number {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

/**
 * The delay actually slept: the backoff (or the cap, for failures a quick retry cannot fix), clamped so
 * that at least one attempt happens in the second half of the remaining lifetime of the current cert.
 */
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
  let delay = opts.retryable ? backoffDelay(opts.attempt, opts.random, base, cap) : cap;
  if (opts.currentNotAfter !== undefined) {
    const left = opts.currentNotAfter - opts.now;
    if (left > 0) delay = Math.min(delay, Math.max(base, left / 2));
  }
  return delay;
}
