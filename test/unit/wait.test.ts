/** The tests' one waiting helper (test/helpers/wait.ts): what it resolves with, and what its errors say. */
import { describe, expect, it } from 'vitest';
import { giveUp, notYet, waitFor } from '../helpers/wait.js';

describe('waitFor', () => {
  it('resolves with the first value that is not undefined or false, probing again until then', async () => {
    let calls = 0;
    const v = await waitFor(() => (++calls < 3 ? (calls === 1 ? undefined : false) : { calls }), { what: 'a third call', timeoutMs: 5000, intervalMs: 1 });
    expect(v).toEqual({ calls: 3 });
  });

  it('counts a thrown error as "not yet" and resolves once the probe succeeds', async () => {
    let calls = 0;
    const v = await waitFor(async () => {
      if (++calls < 3) throw new Error('ECONNREFUSED');
      return 'up';
    }, { what: 'the server', timeoutMs: 5000, intervalMs: 1 });
    expect(v).toBe('up');
  });

  it('times out naming what it waited for, the last reason and the detail', async () => {
    let n = 0;
    const err = (await waitFor(() => notYet(`HTTP 50${n++ % 10}`), { what: 'istiod to be ready', timeoutMs: 30, intervalMs: 5, detail: () => 'last lines: x' }).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^timed out after 30 ms waiting for istiod to be ready \(last: HTTP 50\d\)\nlast lines: x$/);
  });

  it('gives up at once, with the reason, or with the very error it is given', async () => {
    const t0 = Date.now();
    await expect(waitFor(() => giveUp('the process exited'), { what: 'a line', timeoutMs: 10_000 })).rejects.toThrow(/^gave up waiting for a line: the process exited$/);
    const own = new Error('forbidden');
    await expect(waitFor(() => giveUp(own), { what: 'a pod', timeoutMs: 10_000 })).rejects.toBe(own);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
