/**
 * Runs the built agent bundle as a child process (what the image runs: `node <bundle> <command>`),
 * follows its JSON log lines and counts publishes, without keeping the whole log in memory (a soak
 * produces tens of thousands of lines).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { command, withNodeFlags, type Launch } from './launch.js';

export const PUBLISHED = 'published a new intermediate';

export interface LogLine {
  level: string;
  msg: string;
  time?: string;
  [k: string]: unknown;
}

export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  /** performance.now() just before spawn. */
  spawnedAt: number;
  /** Lines kept when `keepLines` (init runs); otherwise only the last few. */
  lines: LogLine[];
  published: number;
  /** performance.now() when each publish line arrived (only the latest are needed by callers). */
  lastPublishAt: number;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  /** Resolves when `published` reaches `count`; rejects on timeout or exit. */
  waitPublished(count: number, timeoutMs?: number): Promise<void>;
  waitLine(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  tail(): string;
  stop(): Promise<void>;
}

/** A minimal environment: nothing from the caller's shell (VAULT_TOKEN...) leaks into the agent. */
export function agentEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', METRICS_ADDR: '', ISTIOD_METRICS_URL: '', ...extra };
}

/**
 * Starts the agent as `launch` says, with `args` (`node [nodeArgs] <bundle> <args>` for a bundle).
 * `wrap` runs it under another command (e.g. /usr/bin/time); `pid` is then the wrapper's.
 */
export function startAgent(launch: Launch, args: string[], env: Record<string, string>, opts: { keepLines?: boolean; nodeArgs?: string[]; wrap?: string[] } = {}): AgentProcess {
  const spawnedAt = performance.now();
  const [node, argv] = command(withNodeFlags(launch, opts.nodeArgs ?? []), args);
  const [cmd, ...rest] = [...(opts.wrap ?? []), node, ...argv] as [string, ...string[]];
  const child = spawn(cmd, rest, { env: { ...env, ...launch.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const waiters = new Set<{ check: () => boolean; done: () => void }>();
  let stderr = '';
  let exited = false;
  const agent: AgentProcess = {
    child,
    pid: child.pid ?? -1,
    spawnedAt,
    lines: [],
    published: 0,
    lastPublishAt: 0,
    exit: new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        exited = true;
        resolve({ code, signal, at: performance.now() });
        for (const w of [...waiters]) w.done();
      }),
    ),
    waitPublished(count, timeoutMs = 60_000) {
      return wait(() => agent.published >= count, timeoutMs, `publish #${count}`).then(() => undefined);
    },
    waitLine(pred, timeoutMs = 60_000) {
      let hit: LogLine | undefined = agent.lines.find(pred);
      const watch = (l: LogLine) => {
        if (!hit && pred(l)) hit = l;
      };
      watchers.add(watch);
      return wait(() => hit !== undefined, timeoutMs, 'a log line').then(
        () => {
          watchers.delete(watch);
          return hit!;
        },
        (err) => {
          watchers.delete(watch);
          throw err;
        },
      );
    },
    tail: () => `last log lines:\n${recent.join('\n')}\nstderr: ${stderr.slice(-2000)}`,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await agent.exit;
        clearTimeout(t);
      }
    },
  };
  const watchers = new Set<(l: LogLine) => void>();
  const recent: string[] = [];

  function wait(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = {
        check,
        done: () => {
          waiters.delete(w);
          clearTimeout(t);
          if (check()) resolve();
          else reject(new Error(`the agent exited before ${what}; ${agent.tail()}`));
        },
      };
      const t = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${agent.tail()}`));
      }, timeoutMs);
      waiters.add(w);
    });
  }

  let partial = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (text: string) => {
    partial += text;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const p of parts) {
      if (!p.trim()) continue;
      recent.push(p);
      if (recent.length > 10) recent.shift();
      let line: LogLine;
      try {
        line = JSON.parse(p) as LogLine;
      } catch {
        line = { level: 'raw', msg: p };
      }
      if (opts.keepLines) agent.lines.push(line);
      if (line.msg === PUBLISHED) {
        agent.published++;
        agent.lastPublishAt = performance.now();
      }
      for (const f of watchers) f(line);
      for (const w of [...waiters]) if (w.check()) w.done();
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  return agent;
}

/** Port the agent listens on (METRICS_ADDR=127.0.0.1:0 picks a free one and logs it). */
export async function metricsUrl(agent: AgentProcess, timeoutMs = 30_000): Promise<string> {
  const line = await agent.waitLine((l) => typeof l.addr === 'string' && l.msg.startsWith('serving /metrics'), timeoutMs);
  return `http://${String(line.addr)}`;
}

export async function postRotate(base: string): Promise<void> {
  const res = await fetch(`${base}/rotate`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
  await res.text();
  if (res.status !== 202) throw new Error(`POST /rotate answered ${res.status}`);
}

export async function scrape(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return res.text();
}

/** Value of a sample in Prometheus text (shared with the tests). */
export { sample } from '../../test/helpers/metrics-text.js';
