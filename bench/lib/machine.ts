/** One paragraph describing where the figures were measured, for bench/RESULTS.md. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

export interface Machine {
  cpu: string;
  cores: number;
  ramGiB: number;
  kernel: string;
  os: string;
  node: string;
  bao: string;
  date: string;
}

function cpuModel(): string {
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const m = /^model name\s*:\s*(.+)$/m.exec(info);
    if (m) return m[1]!.trim();
  } catch {
    /* not Linux */
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

function osName(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(fs.readFileSync('/etc/os-release', 'utf8'));
    if (m) return m[1]!;
  } catch {
    /* no os-release */
  }
  return `${os.type()} ${os.release()}`;
}

/** `node`: the version of the Node.js binary the agent runs on (not necessarily the one running the bench). */
export function describeMachine(baoBin: string, node: string = process.version): Machine {
  let bao = 'unknown';
  try {
    bao = execFileSync(baoBin, ['version'], { encoding: 'utf8' }).trim().split('\n')[0]!;
  } catch {
    /* keep unknown */
  }
  return {
    cpu: cpuModel(),
    cores: os.availableParallelism(),
    ramGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: os.release(),
    os: osName(),
    node,
    bao,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
}

export function machineMarkdown(m: Machine): string[] {
  return [
    `| | |`,
    `|---|---|`,
    `| date | ${m.date} |`,
    `| CPU | ${m.cpu}, ${m.cores} cores |`,
    `| RAM | ${m.ramGiB} GiB |`,
    `| OS / kernel | ${m.os} / Linux ${m.kernel} |`,
    `| Node.js | ${m.node} |`,
    `| OpenBao | ${m.bao} |`,
  ];
}
