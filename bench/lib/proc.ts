/**
 * What Linux says about a process: resident memory (/proc/<pid>/status), CPU time (/proc/<pid>/stat
 * utime + stime, in clock ticks) and open file descriptors (/proc/<pid>/fd).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let ticks: number | undefined;

/** Clock ticks per second (USER_HZ), 100 on nearly every Linux. */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

export interface MemSample {
  /** VmRSS in bytes. */
  rss: number;
  /** RssAnon in bytes (heap, stacks: what the process allocated, without mapped files). */
  rssAnon: number;
}

/** Throws when the process is gone. */
export function memory(pid: number): MemSample {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : NaN;
  };
  return { rss: kb('VmRSS'), rssAnon: kb('RssAnon') };
}

/** User + system CPU time of the process (not its children) in milliseconds. */
export function cpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses; fields after the last ')' are fixed.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return ((utime + stime) * 1000) / clockTicks();
}

export function openFds(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/**
 * CPU time of a child that has exited, measured by GNU time (`/usr/bin/time -f "%U %S" -o FILE`), which
 * reads the kernel's rusage of the child. Undefined when /usr/bin/time is not installed.
 */
export class ChildCpu {
  readonly available = fs.existsSync('/usr/bin/time');
  private n = 0;
  constructor(private readonly dir: string) {}

  /** Wrapper argv for one run, and a reader of its user+system CPU in ms after the run. */
  wrap(): { argv: string[]; read: () => number | undefined } {
    if (!this.available) return { argv: [], read: () => undefined };
    const file = `${this.dir}/cpu-${++this.n}.txt`;
    return {
      argv: ['/usr/bin/time', '-f', '%U %S', '-o', file],
      read: () => {
        try {
          const [u, s] = fs.readFileSync(file, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
          fs.rmSync(file, { force: true });
          return ((u ?? NaN) + (s ?? NaN)) * 1000;
        } catch {
          return undefined;
        }
      },
    };
  }
}
