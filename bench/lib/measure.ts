/** Timed runs and idle windows, shared by the bench scripts. */
import { spawn } from 'node:child_process';
import { cpuMs, memory, type ChildCpu } from './proc.js';

/** One timed run: wall time from spawn to exit, and the child's user+system CPU when measurable. */
export interface Timing {
  wallMs: number;
  cpuMs: number | undefined;
}

/** Runs a command to completion; throws unless it exits 0. */
export async function timeCommand(childCpu: ChildCpu, cmd: string, argv: string[], env: Record<string, string>): Promise<Timing> {
  const w = childCpu.wrap();
  const [c, ...rest] = [...w.argv, cmd, ...argv] as [string, ...string[]];
  const t0 = performance.now();
  const child = spawn(c, rest, { env, stdio: 'ignore' });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${code}`);
  return { wallMs: ms, cpuMs: w.read() };
}

export interface IdleResult {
  name: string;
  rssStart: number;
  rssEnd: number;
  rssMax: number;
  rssAnonEnd: number;
  cpuMs: number;
  windowS: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resident memory and CPU of a running process over `windowS` seconds (RSS sampled every 5 s). */
export async function idleWindow(name: string, pid: number, windowS: number): Promise<IdleResult> {
  const m0 = memory(pid);
  const c0 = cpuMs(pid);
  const t0 = performance.now();
  let rssMax = m0.rss;
  while (performance.now() - t0 < windowS * 1000) {
    await sleep(Math.min(5000, windowS * 1000 - (performance.now() - t0)));
    rssMax = Math.max(rssMax, memory(pid).rss);
  }
  const m1 = memory(pid);
  const c1 = cpuMs(pid);
  return { name, rssStart: m0.rss, rssEnd: m1.rss, rssMax: Math.max(rssMax, m1.rss), rssAnonEnd: m1.rssAnon, cpuMs: c1 - c0, windowS: (performance.now() - t0) / 1000 };
}
