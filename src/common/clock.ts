/**
 * Time as a dependency. Renewal logic only ever asks a Clock, so tests drive it in fake time and
 * production gets timers that survive Node's setTimeout limit (2^31-1 ms, about 24.8 days: longer
 * delays fire at once) and wall-clock jumps (sleepUntil re-checks the wall clock on every wake).
 */
export interface Clock {
  /** Wall-clock milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`, or rejects with AbortError when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Largest delay setTimeout honours; longer ones overflow and fire immediately. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** A long wait wakes at least this often to re-read the wall clock (suspend/resume, NTP steps). */
export const WAKE_INTERVAL_MS = 60 * 60 * 1000;

export class AbortedError extends Error {
  constructor() {
    super('aborted');
    this.name = 'AbortError';
  }
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortedError());
      const onAbort = () => {
        clearTimeout(timer);
        reject(new AbortedError());
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.min(Math.max(0, ms), MAX_TIMER_MS));
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/**
 * Sleeps until the wall clock reaches `deadline`, in slices no longer than WAKE_INTERVAL_MS, so an
 * arbitrarily long wait neither overflows a timer nor oversleeps after the clock jumps forward.
 */
export async function sleepUntil(clock: Clock, deadline: number, signal?: AbortSignal): Promise<void> {
  for (;;) {
    const left = deadline - clock.now();
    if (left <= 0) return;
    await clock.sleep(Math.min(left, WAKE_INTERVAL_MS), signal);
  }
}
