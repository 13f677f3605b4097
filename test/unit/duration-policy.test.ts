import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/common/duration.js';
import { BACKOFF_BASE_MS, BACKOFF_CAP_MS, NOTHING_VALID_CAP_MS, REFUSED_MIN_DELAY_MS, backoffDelay, retryDelay } from '../../src/agent/backoff.js';
import { dueAt, MAX_JITTER_MS, renewBeforeWarning, renewalInstant, renewWindow } from '../../src/agent/renewal-policy.js';

const H = 3_600_000;

describe('durations', () => {
  it.each([
    ['90s', 90_000], ['15m', 900_000], ['720h', 720 * H], ['1h30m', 5_400_000], ['500ms', 500], ['1.5h', 5_400_000], ['2d', 48 * H], ['0', 0],
  ])('parses %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', '30', '30x', 'h', '1h 30m', '-5m', '5 m', 'PT5M'])('rejects %j', (text) => expect(parseDuration(text)).toBeUndefined());

  it('formats for people', () => {
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(250_000)).toBe('4m 10s');
    expect(formatDuration(30 * 86_400_000 - H)).toBe('29d 23h');
    expect(formatDuration(-65_000)).toBe('-1m 5s');
  });
});

describe('renewal policy', () => {
  it.each([
    // lifetime, RENEW_BEFORE, expected window
    [720 * H, undefined, 240 * H],
    [720 * H, 48 * H, 48 * H],
    [40_000, 25_000, 25_000],
    [90 * 86_400_000, undefined, 30 * 86_400_000],
    // Vault capped the lifetime below RENEW_BEFORE: still used for a third of its life, no renewal storm.
    [20_000, 25_000, 20_000 * (2 / 3)],
  ])('lifetime %d with RENEW_BEFORE %s renews %d before expiry', (lifetime, rb, window) => {
    const nb = Date.UTC(2026, 0, 1);
    expect(renewWindow(nb, nb + lifetime, rb)).toBeCloseTo(window, 5);
    expect(dueAt(nb, nb + lifetime, rb)).toBeCloseTo(nb + lifetime - window, 0);
  });

  it('jitter only moves renewal earlier, by at most 5% of the window and 10 minutes', () => {
    const nb = 0;
    const na = 720 * H;
    const due = dueAt(nb, na, undefined);
    expect(renewalInstant(nb, na, undefined, 0)).toBe(due);
    const earliest = renewalInstant(nb, na, undefined, 0.999999);
    expect(due - earliest).toBeLessThanOrEqual(MAX_JITTER_MS);
    expect(due - earliest).toBeGreaterThan(MAX_JITTER_MS * 0.99);
    const short = renewalInstant(0, 40_000, 25_000, 0.999999);
    expect(dueAt(0, 40_000, 25_000) - short).toBeLessThanOrEqual(25_000 * 0.05);
    for (let i = 0; i < 1000; i++) {
      const t = renewalInstant(nb, na, undefined, Math.random());
      expect(t).toBeLessThanOrEqual(due);
      expect(t).toBeGreaterThanOrEqual(due - MAX_JITTER_MS);
    }
  });

  it('warns when workload certificates could outlive the intermediate', () => {
    expect(renewBeforeWarning(undefined, 720 * H)).toBeUndefined();
    expect(renewBeforeWarning(25 * H, 720 * H)).toBeUndefined();
    expect(renewBeforeWarning(12 * H, 720 * H)).toMatch(/RENEW_BEFORE is 12h.*under 25h/);
    expect(renewBeforeWarning(undefined, 48 * H)).toMatch(/a third of CERT_TTL/);
    // Which istiod releases each behaviour belongs to.
    expect(renewBeforeWarning(12 * H, 720 * H)).toMatch(/up to Istio 1\.29 .*without capping.*1\.30 and later caps.*#59766/);
  });
});

describe('backoff', () => {
  it('doubles from 1 s to a 5 min cap, with equal jitter', () => {
    const lows = Array.from({ length: 12 }, (_, n) => backoffDelay(n, 0));
    const highs = Array.from({ length: 12 }, (_, n) => backoffDelay(n, 0.999999));
    expect(lows).toEqual([500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 150000, 150000, 150000]);
    expect(highs.map((h) => Math.round(h / 1000))).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    expect(backoffDelay(1000, 0.5)).toBeLessThanOrEqual(BACKOFF_CAP_MS);
  });

  it('retries a permanent failure at the cap while a valid bundle lasts, never sooner than REFUSED_MIN_DELAY_MS', () => {
    expect(retryDelay({ attempt: 0, random: 0, retryable: false, now: 0, currentNotAfter: 10 * BACKOFF_CAP_MS })).toBe(BACKOFF_CAP_MS);
    // Half of what is left, but a refused or denied request is not repeated more often than every 30 s.
    expect(retryDelay({ attempt: 0, random: 0, retryable: false, now: 0, currentNotAfter: 4 * 60_000 })).toBe(2 * 60_000);
    expect(retryDelay({ attempt: 0, random: 0, retryable: false, now: 0, currentNotAfter: 20_000 })).toBe(REFUSED_MIN_DELAY_MS);
    // Nothing valid: an operator's fix is picked up within REFUSED_MIN_DELAY_MS.
    expect(retryDelay({ attempt: 9, random: 0.9, retryable: false, now: 0, currentNotAfter: undefined })).toBe(REFUSED_MIN_DELAY_MS);
  });

  it('never sleeps past the current expiry without a try', () => {
    // 20 s of validity left: the 5 min backoff is cut to half of what is left.
    expect(retryDelay({ attempt: 20, random: 0.9, retryable: true, now: 0, currentNotAfter: 20_000 })).toBe(10_000);
    // Nearly expired: still at least the base delay, never a busy loop.
    expect(retryDelay({ attempt: 20, random: 0.9, retryable: true, now: 0, currentNotAfter: 100 })).toBe(1000);
  });

  it('retries within seconds, jittered, once nothing valid is left (expired or never issued)', () => {
    for (const currentNotAfter of [undefined, -1, 0]) {
      for (const attempt of [0, 3, 10, 50]) {
        for (const random of [0, 0.5, 0.999]) {
          const d = retryDelay({ attempt, random, retryable: true, now: 0, currentNotAfter });
          expect(d).toBeLessThanOrEqual(NOTHING_VALID_CAP_MS);
          expect(d).toBeGreaterThanOrEqual(BACKOFF_BASE_MS / 2);
        }
      }
    }
    // Jittered: two agents at the same attempt do not retry in the same instant.
    expect(retryDelay({ attempt: 10, random: 0, retryable: true, now: 0, currentNotAfter: undefined })).not.toBe(retryDelay({ attempt: 10, random: 0.9, retryable: true, now: 0, currentNotAfter: undefined }));
  });
});
