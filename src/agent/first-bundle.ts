/**
 * The first phase of `init` and `run`: make sure the cert dir holds a valid bundle that is not due;
 * take one from the source if not. Retryable failures are retried with backoff until INIT_TIMEOUT
 * (waits shrink near the deadline so the last try lands just before it, and an attempt still running
 * at the deadline is cut there); a failure a retry cannot fix (403, bad TLS trust, a root change) ends
 * at once. When a valid bundle is already there but due and renewal fails or runs out of time, istiod
 * can still use it: the phase succeeds with a warning and leaves the renewal to the sidecar.
 */
import type { Logger } from 'pino';
import { isAbort } from '../common/abort.js';
import type { Clock } from '../common/clock.js';
import { AgentError, describeError } from '../common/errors.js';
import { formatDuration } from '../common/duration.js';
import { BACKOFF_BASE_MS, retryDelay } from './backoff.js';
import type { BundleKeeper } from './bundle-keeper.js';

/** How long `init` spends asking Vault for a root rotation when a valid bundle is already there. */
export const ROOT_CHECK_BUDGET_MS = 5000;

export type FirstBundleResult = { ok: true; issued: boolean } | { ok: false; error: AgentError; timedOut: boolean };

export async function ensureFirstBundle(
  keeper: BundleKeeper,
  deps: { clock: Clock; random: () => number; log: Logger },
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<FirstBundleResult> {
  const { clock, log } = deps;
  const state = await keeper.inspect();
  // Before istiod starts is when root-cert.pem may change whatever istiod's settings: a root added or
  // removed in Vault is applied now, even to a bundle that is not due.
  // Bounded: a Vault that does not answer must not hold istiod back when a valid bundle is there.
  const look = AbortSignal.any([AbortSignal.timeout(ROOT_CHECK_BUDGET_MS), ...(opts.signal ? [opts.signal] : [])]);
  const rootsPending = state.kind === 'valid' && !state.due && (await keeper.sourceChanged(look).catch((err: unknown) => {
    log.warn({ err }, 'could not check Vault for a root rotation; keeping the roots on disk');
    return false;
  }));
  if (state.kind === 'valid' && !state.due && !rootsPending) {
    const i = state.bundle.intermediate;
    log.info({ serial: i.serial, notAfter: new Date(i.notAfter).toISOString() }, 'the cert dir already holds a valid bundle that is not due; adopting it');
    return { ok: true, issued: false };
  }
  const trigger = rootsPending ? 'changed' : state.kind === 'valid' ? 'due' : state.kind === 'absent' ? 'missing' : 'invalid';
  if (state.kind === 'invalid') log.warn({ problem: state.problem }, 'the cert dir holds an unusable bundle; issuing a new one');

  const deadline = clock.now() + opts.timeoutMs;
  // Cuts an attempt still running at INIT_TIMEOUT (a hanging Vault call can take VAULT_CLIENT_TIMEOUT).
  const timeUp = new AbortController();
  const timer = new AbortController();
  clock.sleep(opts.timeoutMs, timer.signal).then(() => timeUp.abort(), () => undefined);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeUp.signal]) : timeUp.signal;
  /** A due but valid bundle is still better than none: istiod starts on it. */
  const keepValid = (why: string, e: AgentError | undefined): FirstBundleResult | undefined => {
    if (state.kind !== 'valid' || !keeper.isReady()) return undefined;
    // The one line this attempt gets: it says what failed, not only that the bundle is kept.
    log.warn({ reason: e?.reason, code: e?.code, ...(e ? { err: e } : {}) }, `${why}, but the current bundle is still valid: istiod starts with it and the sidecar keeps renewing${e ? ` (what failed: ${describeError(e)})` : ''}`);
    return { ok: true, issued: false };
  };
  const giveUp = (e: AgentError, attempts: number): FirstBundleResult => {
    log.error({ reason: e.reason, code: e.code, attempts }, `init failed: giving up after INIT_TIMEOUT (${formatDuration(opts.timeoutMs)}): ${describeError(e)}`);
    return { ok: false, error: e, timedOut: true };
  };
  let last: AgentError | undefined;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await keeper.renew(trigger, signal);
        return { ok: true, issued: true };
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        if (isAbort(err)) {
          return (
            keepValid(`renewal did not finish within INIT_TIMEOUT (${formatDuration(opts.timeoutMs)})`, last) ??
            giveUp(last ?? new AgentError('while issuing the first intermediate: no answer before INIT_TIMEOUT (check that Vault is reachable)', { code: 'INIT_TIMEOUT', reason: 'vault_unreachable', retryable: true }), attempt + 1)
          );
        }
        const e = err as AgentError;
        last = e;
        const kept = keepValid('renewal failed', e);
        if (kept) return kept;
        if (!e.retryable) {
          log.error({ reason: e.reason, code: e.code }, `init failed (not retried: a retry cannot fix this): ${describeError(e)}`);
          return { ok: false, error: e, timedOut: false };
        }
        const left = deadline - clock.now();
        if (left < BACKOFF_BASE_MS) return giveUp(e, attempt + 1);
        const delay = Math.min(retryDelay({ attempt, random: deps.random(), retryable: true, now: clock.now(), currentNotAfter: undefined }), left / 2);
        log.warn({ reason: e.reason, retryable: true, attempt: attempt + 1, retryInMs: Math.round(delay), err: e }, `issuance failed: ${describeError(e)}; retrying in ${formatDuration(delay)}`);
        await clock.sleep(delay, opts.signal);
      }
    }
  } finally {
    timer.abort();
  }
}
