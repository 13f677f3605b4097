/**
 * A Clock in fake time: `sleep` arms a timer that fires only when the test advances time past it.
 * `waitForSleepers` lets a test wait until the code under test is actually waiting before advancing,
 * so no test sleeps for real and no advance races the code it drives.
 */
import { AbortedError, type Clock } from '../../src/common/clock.js';

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

  /** Resolves once at least `n` timers are armed (after letting pending promise jobs run). */
  async waitForSleepers(n = 1, maxTicks = 10_000): Promise<void> {
    for (let i = 0; i < maxTicks; i++) {
      if (this.timers.length >= n) return;
      await new Promise((r) => setImmediate(r));
    }
    throw new Error(`expected ${n} armed timer(s), have ${this.timers.length}`);
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
