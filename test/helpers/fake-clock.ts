/**
 * A Clock in fake time: `sleep` arms a timer that fires only when the test advances time past it.
 * `waitForSleepers` lets a test wait until the code under test is actually waiting before advancing,
 * so no fake-time wait is ever slept for real and no advance races the code it drives.
 */
import { AbortedError, type Clock } from '../../src/common/clock.js';
import { notYet, waitFor } from './wait.js';

interface Timer {
  at: number;
  ms: number;
  resolve: () => void;
}

export class FakeClock implements Clock {
  private timers: Timer[] = [];
  private listeners: (() => void)[] = [];
  /** Every sleep requested, in ms, in order (to assert timer lengths). */
  readonly requested: number[] = [];

  constructor(private t = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.requested.push(ms);
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortedError());
      const timer: Timer = { at: this.t + Math.max(0, ms), ms, resolve };
      this.timers.push(timer);
      signal?.addEventListener('abort', () => {
        this.timers = this.timers.filter((x) => x !== timer);
        reject(new AbortedError());
      }, { once: true });
      for (const l of this.listeners.splice(0)) l();
    });
  }

  get pending(): number {
    return this.timers.length;
  }

  /** Earliest armed timer's deadline. */
  get nextAt(): number | undefined {
    return this.timers.length ? Math.min(...this.timers.map((t) => t.at)) : undefined;
  }

  /**
   * Resolves once at least `n` timers are armed. The code under test may be doing real asynchronous
   * work meanwhile (key generation, file I/O), so this polls for up to `realMs` of real time; it does
   * not move fake time.
   */
  async waitForSleepers(n = 1, realMs = 10_000): Promise<void> {
    await waitFor(() => this.timers.length >= n || notYet(`${this.timers.length} armed`), { what: `${n} armed timer(s)`, timeoutMs: realMs, intervalMs: 1 });
  }

  /**
   * Runs `p` to completion in fake time: whenever the code under test waits on this clock, fires its
   * earliest timer. `background` timers (e.g. a deadline armed at the start) do not count as waiting:
   * they fire only once nothing else has been armed for `quietMs` of real time (the code is blocked on
   * them). Throws after `maxTimers` timers, to catch loops that never finish.
   */
  async drive<T>(p: Promise<T>, opts: { maxTimers?: number; background?: number; quietMs?: number } = {}): Promise<T> {
    const { maxTimers = 1000, background = 0, quietMs = 300 } = opts;
    let settled = false;
    const done = p.finally(() => {
      settled = true;
    });
    done.catch(() => undefined);
    for (let fired = 0; !settled; ) {
      const quietUntil = Date.now() + quietMs;
      await until(() => settled || this.timers.length > background || (this.timers.length > 0 && Date.now() > quietUntil));
      if (settled) break;
      if (++fired > maxTimers) throw new Error(`still running after ${maxTimers} timers`);
      await this.fireNext();
    }
    return done;
  }

  /** Moves time forward by `ms`, firing due timers in order. */
  async advance(ms: number): Promise<void> {
    await this.advanceTo(this.t + ms);
  }

  async advanceTo(target: number): Promise<void> {
    for (;;) {
      const due = this.timers.filter((x) => x.at <= target).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.t = Math.max(this.t, due.at);
      this.timers = this.timers.filter((x) => x !== due);
      due.resolve();
      await new Promise((r) => setImmediate(r));
    }
    this.t = Math.max(this.t, target);
  }

  /** Jumps the wall clock without firing timers (NTP step, suspend/resume). */
  jump(ms: number): void {
    this.t += ms;
  }

  /** Fires the earliest timer, moving time to it. */
  async fireNext(): Promise<void> {
    const at = this.nextAt;
    if (at === undefined) throw new Error('no timer armed');
    await this.advanceTo(at);
  }
}

/**
 * `waitFor` as fake-time tests need it: polls `cond` every millisecond of real time (the code under test
 * may be doing real asynchronous work, key generation, file I/O) for up to `realMs`.
 */
export async function until(cond: () => boolean, realMs = 10_000): Promise<void> {
  await waitFor(cond, { what: 'a condition of a fake-time test', timeoutMs: realMs, intervalMs: 1 });
}
