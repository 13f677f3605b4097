/**
 * `init`: make sure the cert dir holds a valid bundle that is not due; issue one if not. Retryable
 * failures are retried with backoff until INIT_TIMEOUT (waits shrink near the deadline so the last try
 * lands just before it, and no attempt runs past it); a failure a retry cannot fix (403, bad TLS trust,
 * a root change) ends at once. When a valid bundle is already there but due and renewal fails, istiod
 * can still use it: init succeeds with a warning and leaves the renewal to the sidecar.
 */
import { isAbort } from '../common/abort.js';
import { AgentError, describeError } from '../common/errors.js';
import { formatDuration } from '../common/duration.js';
import { BACKOFF_BASE_MS, retryDelay } from './backoff.js';
import type { Renewer, RenewerDeps } from './renewer.js';

export type InitResult = { ok: true; issued: boolean } | { ok: false; error: AgentError; timedOut: boolean };

export async function runInit(
  renewer: Renewer,
  deps: Pick<RenewerDeps, 'clock' | 'random' | 'log'>,
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<InitResult> {
  const { clock, log } = deps;
  const state = await renewer.inspect();
  if (state.kind === 'valid' && !state.due) {
    const i = state.bundle.intermediate;
    log.info({ serial: i.serial, notAfter: new Date(i.notAfter).toISOString() }, 'the cert dir already holds a valid bundle that is not due; adopting it');
    return { ok: true, issued: false };
  }
  const trigger = state.kind === 'valid' ? 'due' : state.kind === 'absent' ? 'missing' : 'invalid';
  if (state.kind === 'invalid') log.warn({ problem: state.problem }, 'the cert dir holds an unusable bundle; issuing a new one');

  const deadline = clock.now() + opts.timeoutMs;
  // Aborts an attempt still running at INIT_TIMEOUT (a hanging Vault call can take VAULT_CLIENT_TIMEOUT).
  const timeUp = new AbortController();
  const timer = new AbortController();
  clock.sleep(opts.timeoutMs, timer.signal).then(() => timeUp.abort(), () => undefined);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeUp.signal]) : timeUp.signal;
  const giveUp = (e: AgentError, attempts: number): InitResult => {
    log.error({ reason: e.reason, attempts }, `giving up after INIT_TIMEOUT (${formatDuration(opts.timeoutMs)}): ${describeError(e)}`);
    return { ok: false, error: e, timedOut: true };
  };
  let last: AgentError | undefined;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await renewer.renew(trigger, signal);
        return { ok: true, issued: true };
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        if (isAbort(err)) {
          return giveUp(
            last ?? new AgentError('while issuing the first intermediate: no answer before INIT_TIMEOUT (check that Vault is reachable)', { code: 'INIT_TIMEOUT', reason: 'vault_unreachable', retryable: true }),
            attempt + 1,
          );
        }
        const e = err as AgentError;
        last = e;
        if (state.kind === 'valid' && renewer.isReady()) {
          log.warn({ reason: e.reason }, 'renewal failed but the current bundle is still valid; istiod starts with it and the sidecar keeps renewing');
          return { ok: true, issued: false };
        }
        if (!e.retryable) return { ok: false, error: e, timedOut: false };
        const left = deadline - clock.now();
        if (left < BACKOFF_BASE_MS) return giveUp(e, attempt + 1);
        const delay = Math.min(retryDelay({ attempt, random: deps.random(), retryable: true, now: clock.now(), currentNotAfter: undefined }), left / 2);
        log.info({ attempt: attempt + 1, retryInMs: Math.round(delay) }, 'retrying');
        await clock.sleep(delay, opts.signal);
      }
    }
  } finally {
    timer.abort();
  }
}
