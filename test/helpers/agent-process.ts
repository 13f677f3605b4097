/**
 * Runs the built agent (dist/istiod-vault-agent.mjs; the image starts a snapshot of the same sources) as a
 * child process, captures its JSON log lines and exit code, and lets a test wait for a log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { giveUp, waitFor } from './wait.js';

/** The built bundle; IVA_TEST_BUNDLE points the suite at another build (e.g. to show a test fails on an older one). */
export const BUNDLE = path.resolve(process.env.IVA_TEST_BUNDLE ?? 'dist/istiod-vault-agent.mjs');

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export interface AgentRun {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  lines: LogLine[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line (past or future) matching `pred`; rejects after `timeoutMs`. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs?: number, from?: number): Promise<LogLine>;
  kill(signal?: NodeJS.Signals): void;
}

/** Base environment for agents: nothing from the developer's shell leaks in (VAULT_TOKEN etc.). */
export function cleanEnv(extra: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', METRICS_ADDR: '', ISTIOD_METRICS_URL: '' };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Node options before the bundle, e.g. `['-r', PEAK_RSS_PRELOAD]`. */
export interface StartOptions {
  nodeArgs?: string[];
}

/** Preload that prints `PEAK_RSS_KIB=<n>` on stderr when the agent exits (see peakRssKib()). */
export const PEAK_RSS_PRELOAD = path.resolve('test/helpers/peak-rss.cjs');

/** The agent's peak RSS in KiB, from a run started with PEAK_RSS_PRELOAD. */
export function peakRssKib(run: { stderr: string }): number {
  const m = /PEAK_RSS_KIB=(\d+)/.exec(run.stderr);
  if (!m) throw new Error(`no PEAK_RSS_KIB line in stderr: ${run.stderr.slice(-500)}`);
  return Number(m[1]);
}

export function startAgent(args: string[], env: Record<string, string>, opts: StartOptions = {}): AgentRun {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), BUNDLE, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void; from: number }[] = [];
  const run: AgentRun = {
    child,
    stdout: '',
    stderr: '',
    lines: [],
    exit: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    waitFor(pred, timeoutMs = 30_000, from = 0) {
      const hit = run.lines.slice(from).find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve, from };
        waiters.push(w);
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${run.stdout.split('\n').slice(-8).join('\n')}\nstderr: ${run.stderr.slice(-2000)}`));
        }, timeoutMs);
        w.resolve = (l) => {
          clearTimeout(t);
          resolve(l);
        };
      });
    },
    kill(signal = 'SIGTERM') {
      child.kill(signal);
    },
  };
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    const text = d.toString();
    run.stdout += text;
    partial += text;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const p of parts) {
      if (!p.trim()) continue;
      let line: LogLine;
      try {
        line = JSON.parse(p) as LogLine;
      } catch {
        line = { level: 'raw', msg: p };
      }
      run.lines.push(line);
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (run.stderr += d.toString()));
  return run;
}

/**
 * The first line at index >= `from` matching `pred`, with its index; undefined when the agent exits
 * without one or `timeoutMs` passes (for suites that count a missing line instead of failing at once).
 */
export async function nextLine(a: AgentRun, pred: (l: LogLine) => boolean, from: number, timeoutMs: number): Promise<{ line: LogLine; index: number } | undefined> {
  return waitFor(() => {
    for (let i = from; i < a.lines.length; i++) if (pred(a.lines[i]!)) return { line: a.lines[i]!, index: i };
    if (a.child.exitCode !== null || a.child.signalCode !== null) giveUp('the agent exited');
  }, { what: 'a matching log line', timeoutMs, intervalMs: 10 }).catch(() => undefined);
}

export const isPublished = (l: LogLine) => l.msg === 'published a new intermediate';
/** A failed attempt: one line, a warning while a retry can help, an error when a person must act. */
export const isFailure = (l: LogLine) => (l.level === 'warn' || l.level === 'error') && String(l.msg).startsWith('issuance failed');
/** The loop's failure line says what it keeps and when it retries (the same line as isFailure). */
export const isKeeping = (l: LogLine) => isFailure(l) && l.retryInMs !== undefined;

/** Runs to completion. */
export async function runAgent(args: string[], env: Record<string, string>, timeoutMs = 60_000, opts: StartOptions = {}): Promise<AgentRun & { code: number | null }> {
  const run = startAgent(args, env, opts);
  const t = setTimeout(() => run.kill('SIGKILL'), timeoutMs);
  const { code } = await run.exit;
  clearTimeout(t);
  return Object.assign(run, { code });
}
