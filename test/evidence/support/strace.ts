/**
 * Deterministic crash points: run a command under strace with a syscall fault injection that delivers
 * SIGKILL at one exact system call (optionally only one touching a given path). This is a real kill -9
 * at a chosen instant, not a simulation of what it would leave behind.
 *
 * Caveats (strace 6.x): `-P path` is resolved when strace starts, so it cannot name an existing symlink
 * (it would follow it); `when=N` counts per thread, and libuv runs file system calls on a thread pool,
 * so only `when=1` (the first such call in any thread) is deterministic.
 */
import { spawn, spawnSync } from 'node:child_process';
import { BUNDLE } from '../../helpers/agent-process.js';

let usable: string | undefined | null = null;

/** undefined when strace can trace and kill a child here; else why not. */
export function straceUnavailable(): string | undefined {
  if (usable !== null) return usable;
  const probe = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=fsync', '-e', 'inject=fsync:signal=SIGKILL', process.execPath, '-e', "const fs = require('fs'); fs.fsyncSync(fs.openSync('/tmp', 'r'))"], { encoding: 'utf8' });
  if (probe.error) usable = `strace not found (${(probe.error as NodeJS.ErrnoException).code}); install strace`;
  else if (probe.signal !== 'SIGKILL' && probe.status !== 137) usable = `strace cannot inject faults here (exit ${probe.status}, signal ${probe.signal}): ${probe.stderr.trim().split('\n')[0]}`;
  else usable = undefined;
  return usable;
}

export interface CrashPoint {
  /** Syscalls to trace and kill at, e.g. ['rename'] or ['symlink', 'symlinkat']. */
  syscalls: string[];
  /** Only calls with this path argument (must not be an existing symlink). */
  path?: string;
}

/**
 * Runs the agent with `args` and `env`, killed by SIGKILL at `point`. Resolves with how it ended;
 * `killed` is false when it was the timeout that killed it, not the crash point.
 */
export function runAgentKilledAt(point: CrashPoint, args: string[], env: Record<string, string>, timeoutMs = 90_000): Promise<{ killed: boolean; code: number | null; signal: NodeJS.Signals | null; stdout: string }> {
  const list = point.syscalls.join(',');
  const straceArgs = ['-f', '-qq', '-o', '/dev/null', ...(point.path ? ['-P', point.path] : []), '-e', `trace=${list}`, '-e', `inject=${list}:signal=SIGKILL:when=1`, process.execPath, BUNDLE, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn('strace', straceArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', () => undefined);
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(t);
      // strace re-raises the tracee's fatal signal on itself, or exits 128+signal.
      resolve({ killed: !timedOut && (signal === 'SIGKILL' || code === 137), code, signal, stdout });
    });
  });
}
