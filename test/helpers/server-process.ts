/**
 * A long-running server child (istiod, kube-apiserver, etcd) for the harnesses: its stdout and stderr as
 * lines, a wait for a line, a wait for a readiness probe, and a stop that always ends it. Every child is
 * also killed when the test process exits, so none outlives a crashed worker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { onTestFinished } from 'vitest';
import { giveUp, notYet, waitFor } from './wait.js';

export interface ServerProcess {
  name: string;
  child: ChildProcess;
  /** stdout and stderr lines, in arrival order. */
  lines: string[];
  exited: Promise<number | null>;
  /** Resolves with the first line from index `from` on (default 0) matching `re`; rejects on exit or timeout. */
  waitForLog(re: RegExp, opts?: { from?: number; timeoutMs?: number }): Promise<string>;
  /**
   * Calls `probe` until it returns true (backing off 10 ms to 250 ms); a string it returns says why not yet.
   * Rejects when the process exits or after `timeoutMs`.
   */
  waitUntil(probe: () => Promise<true | string>, timeoutMs: number): Promise<void>;
  tail(n?: number): string;
  /** SIGTERM, SIGKILL after 10 s; safe to call twice. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export function startServerProcess(name: string, bin: string, args: string[], o: { cwd: string; env: Record<string, string> }): ServerProcess {
  const child = spawn(bin, args, { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const lines: string[] = [];
  const waiters = new Set<{ re: RegExp; from: number; resolve: (l: string) => void }>();
  let gone = false;
  const exited = new Promise<number | null>((resolve) => {
    const done = (code: number | null) => {
      gone = true;
      running.delete(child);
      resolve(code);
    };
    child.once('exit', done);
    // A binary that cannot be started emits 'error' and no 'exit'.
    child.once('error', (err) => {
      lines.push(`[harness] could not run ${bin}: ${err.message}`);
      done(null);
    });
  });
  const tail = (n = 20) => lines.slice(-n).join('\n');
  const collect = () => {
    let partial = '';
    return (d: Buffer) => {
      partial += d.toString();
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        const index = lines.push(line) - 1;
        for (const w of [...waiters]) {
          if (index >= w.from && w.re.test(line)) {
            waiters.delete(w);
            w.resolve(line);
          }
        }
      }
    };
  };
  child.stdout!.on('data', collect());
  child.stderr!.on('data', collect());

  let stopped: Promise<void> | undefined;
  return {
    name,
    child,
    lines,
    exited,
    tail,
    waitForLog(re, opts = {}) {
      const from = opts.from ?? 0;
      const hit = lines.slice(from).find((l) => re.test(l));
      if (hit !== undefined) return Promise.resolve(hit);
      const timeoutMs = opts.timeoutMs ?? 30_000;
      return new Promise((resolve, reject) => {
        const w = {
          re,
          from,
          resolve: (l: string) => {
            clearTimeout(t);
            resolve(l);
          },
        };
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`${name} logged no line matching ${re} within ${timeoutMs} ms; last lines:\n${tail()}`));
        }, timeoutMs);
        waiters.add(w);
        void exited.then((code) => {
          if (!waiters.delete(w)) return;
          clearTimeout(t);
          reject(new Error(`${name} exited (code ${code}) before logging a line matching ${re}; last lines:\n${tail()}`));
        });
      });
    },
    async waitUntil(probe, timeoutMs) {
      await waitFor(async () => {
        if (gone) giveUp(`${name} exited`);
        const r = await probe();
        return r === true || notYet(r);
      }, { what: `${name} to be ready`, timeoutMs, intervalMs: 250, detail: () => `last lines:\n${tail()}` });
    },
    stop: () =>
      (stopped ??= (async () => {
        if (gone) return;
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      })()),
  };
}

/**
 * Called inside a test, registers `stop` to run when the test finishes, passed or failed. Outside a test
 * (beforeAll) it does nothing: the caller stops the server in its afterAll.
 */
export function stopWhenTestFinishes(stop: () => Promise<void>): void {
  try {
    onTestFinished(stop);
  } catch {
    // not inside a test
  }
}
