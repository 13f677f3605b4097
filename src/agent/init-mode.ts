/**
 * `init`: make sure the cert dir holds a valid bundle that is not due; issue one if not. Retryable
 * failures are retried with backoff until INIT_TIMEOUT; a failure a retry cannot fix (403, bad TLS
 * trust, a root change) ends at once. When a valid bundle is already there but due and renewal fails,
 * istiod can still use it: init succeeds with a warning and leaves the renewal to the sidecar.
 */
import { isAbort } from '../common/abort.js';
import { describeError, type AgentError } from '../common/errors.js';
import { formatDuration } from '../common/duration.js';
import { retryDelay } from './backoff.js';
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
  for (let attempt = 0; ; attempt++) {
    try {
      await renewer.renew(trigger, opts.signal);
      return { ok: true, issued: true };
    } catch (err) {
      if (isAbort(err)) throw err;
      const e = err as AgentError;
      if (state.kind === 'valid' && renewer.isReady()) {
        log.warn({ reason: e.reason }, 'renewal failed but the current bundle is still valid; istiod starts with it and the sidecar keeps renewing');
        return { ok: true, issued: false };
      }
      if (!e.retryable) return { ok: false, error: e, timedOut: false };
      const delay = retryDelay({ attempt, random: deps.random(), retryable: true, now: clock.now(), currentNotAfter: undefined });
      if (clock.now() + delay >= deadline) {
        log.error({ reason: e.reason, attempts: attempt + 1 }, `giving up after INIT_TIMEOUT (${formatDuration(opts.timeoutMs)}): ${describeError(e)}`);
        return { ok: false, error: e, timedOut: true };
      }
      log.info({ attempt: attempt + 1, retryInMs: delay }, 'retrying');
      await clock.sleep(delay, opts.signal);
    }
  }
}
