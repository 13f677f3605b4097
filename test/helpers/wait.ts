/**
 * Waiting in tests, in one place. The rule: a test waits for an event (a log line, a status, a file),
 * never for a length of time. Where no callback announces the event, `waitFor` polls for it; a fixed
 * wait (`passTime`) is only for where the passing of time is itself the point, and each caller says why.
 *
 * Event-driven waits that need no polling live with their source: `AgentRun.waitFor` (agent log lines),
 * `ServerProcess.waitForLog` (a server's output); `FakeClock` waits in fake time.
 */

/** What a probe returns: the awaited value, or undefined/false for "not yet" (or it throws: not yet, and why). */
export type Probe<T> = () => T | undefined | false | Promise<T | undefined | false>;

export interface WaitOptions {
  /** What is awaited, for the error: "Prometheus to be ready", "two publishes". */
  what: string;
  /** How long to wait in all, in real time. */
  timeoutMs: number;
  /**
   * The longest gap between two probes (default 100 ms). The first ones come sooner (10 ms, doubling up
   * to this), so an event that is near is seen at once and a slow one is not probed in a busy loop.
   */
  intervalMs?: number;
  /** More to say when the wait fails (the last lines of a server's log). */
  detail?: () => string;
}

class NotYet extends Error {}
class GiveUp extends Error {
  constructor(readonly reason: string | Error) {
    super(String(reason));
  }
}

/** Thrown from a probe: not yet, and why (the timeout's error quotes the last reason). */
export function notYet(why: string): never {
  throw new NotYet(why);
}

/**
 * Thrown from a probe: the event can no longer happen (the process exited), so the wait rejects at once
 * instead of at its timeout. Given an Error, the wait rejects with that very error.
 */
export function giveUp(reason: string | Error): never {
  throw new GiveUp(reason);
}

/**
 * Calls `probe` until it returns a value other than undefined or false, and resolves with that value.
 * An error the probe throws counts as "not yet" (a server not listening yet); the last one is quoted
 * when the wait times out. Rejects after `timeoutMs`, or at once when the probe calls `giveUp`.
 */
export async function waitFor<T>(probe: Probe<T>, opts: WaitOptions): Promise<T> {
  const { what, timeoutMs, intervalMs = 100 } = opts;
  const detail = () => (opts.detail ? `\n${opts.detail()}` : '');
  const deadline = Date.now() + timeoutMs;
  let last = 'the probe returned nothing yet';
  for (let delay = Math.min(10, intervalMs); ; delay = Math.min(delay * 2, intervalMs)) {
    try {
      // A synchronous probe is not awaited: a condition that already holds costs no extra turn.
      let v = probe();
      if (v instanceof Promise) v = await v;
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (err instanceof GiveUp) {
        if (err.reason instanceof Error) throw err.reason;
        throw new Error(`gave up waiting for ${what}: ${err.reason}${detail()}`, { cause: err });
      }
      last = err instanceof NotYet ? err.message : String(err);
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})${detail()}`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

/**
 * Lets `ms` of real time pass. Not a way to wait for something: only for where time itself is the point
 * (a kill at a random moment, a reader's pace, two timestamps that must differ). Every caller says why.
 */
export function passTime(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}
