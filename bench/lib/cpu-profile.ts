/**
 * Where a short-lived process spends its CPU: runs it under `node --cpu-prof` and adds up self time by
 * what the code belongs to. The plain (unminified) bundle marks each module with a `// .../node_modules/
 * <pkg>/...` or `// .../src/...` comment, so a sample's line number tells which package it ran in;
 * Node's own internals are grouped by file (module compilation shows up as internal/modules/*).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { command, withNodeFlags, type Launch } from './launch.js';

interface ProfileNode {
  id: number;
  children?: number[];
  callFrame: { functionName: string; url: string; lineNumber: number };
  /** Samples by source line (1-based) inside the function: top-level code of every hoisted module runs in one function. */
  positionTicks?: { line: number; ticks: number }[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Sorted [line, owner] pairs from the bundle's module comments. */
function moduleMarks(bundle: string): [number, string][] {
  const marks: [number, string][] = [];
  fs.readFileSync(bundle, 'utf8')
    .split('\n')
    .forEach((l, i) => {
      // esbuild writes the path relative to where it ran (the bench builds in a scratch folder).
      const m = /^\/\/ (?:\S*\/)?node_modules\/((?:@[^/\s]+\/)?[^/\s]+)\/\S*$/.exec(l) ?? /^\/\/ (?:\S*\/)?(src)\/\S+\.ts$/.exec(l);
      if (m) marks.push([i, m[1] === 'src' ? 'src/ (our code)' : m[1]!]);
    });
  return marks;
}

function ownerAt(marks: [number, string][], line: number): string {
  let lo = 0;
  let hi = marks.length - 1;
  let owner = 'bundle top level (esbuild runtime, banner)';
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (marks[mid]![0] <= line) {
      owner = marks[mid]![1];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return owner;
}

function classify(url: string, fn: string, bundle: string, marks: [number, string][], line: number): string {
  // A snapshot names the script as it was given when the snapshot was built.
  if (url === `file://${bundle}` || url === bundle || (url !== '' && path.basename(url) === path.basename(bundle))) return ownerAt(marks, line);
  if (url.startsWith('node:internal/modules/') || url.startsWith('node:internal/bootstrap') || url.startsWith('node:internal/process')) return url.includes('esm/utils') ? 'node: compiling the bundle (V8 parse of the ESM source)' : 'node: module loader, bootstrap';
  if (url.startsWith('node:internal/deps/undici')) return 'node: undici (fetch/Request globals, loaded lazily)';
  if (url.startsWith('node:internal/crypto') || url.startsWith('node:crypto')) return 'node: crypto';
  if (url.startsWith('node:')) return `node: ${url.replace(/^node:(internal\/)?/, '').replace(/\/.*$/, '')}`;
  if (!url) return fn === '(garbage collector)' ? 'GC' : fn === '(program)' ? 'native/VM (program)' : fn === '(idle)' ? 'idle (waiting on I/O)' : `(${fn})`;
  return url;
}

export interface ProfileResult {
  totalMs: number;
  /** Self time per owner, largest first. */
  byOwner: [string, number][];
}

/**
 * Runs `launch` with `--cpu-prof` `runs` times; returns the mean self time grouped by owner. `bundle` is
 * the script the launch runs (or the one its snapshot was built from): its module comments name the owners.
 */
export async function profileRuns(launch: Launch, bundle: string, args: string[], env: Record<string, string>, runs: number, before?: () => Record<string, string>): Promise<ProfileResult> {
  const total = new Map<string, number>();
  for (let i = 0; i < runs; i++) {
    const r = await profileRun(launch, bundle, args, { ...env, ...before?.() });
    for (const [k, v] of r.byOwner) total.set(k, (total.get(k) ?? 0) + v / runs);
  }
  const byOwner = [...total].sort((a, b) => b[1] - a[1]);
  return { totalMs: byOwner.reduce((s, [, v]) => s + v, 0), byOwner };
}

/** Runs `launch` with `--cpu-prof` once and returns self time grouped by owner. */
export async function profileRun(launch: Launch, bundle: string, args: string[], env: Record<string, string>): Promise<ProfileResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ivagent-prof-'));
  try {
    const [cmd, argv] = command(withNodeFlags(launch, ['--cpu-prof', '--cpu-prof-interval', '200', `--cpu-prof-dir=${dir}`]), args);
    const child = spawn(cmd, argv, { env: { ...env, ...launch.env }, stdio: 'ignore' });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    if (code !== 0) throw new Error(`profiling ${args.join(' ')}: exit ${code}`);
    const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('no .cpuprofile written');
    const prof = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as Profile;
    const marks = moduleMarks(bundle);
    const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
    const self = new Map<string, number>();
    const nodeMs = new Map<number, number>();
    prof.samples.forEach((id, i) => nodeMs.set(id, (nodeMs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000));
    for (const [id, ms] of nodeMs) {
      const n = nodes.get(id)!;
      const cf = n.callFrame;
      const ticks = n.positionTicks ?? [];
      const total = ticks.reduce((s, t) => s + t.ticks, 0);
      // Split a function's time over the lines it was sampled on (they may belong to several modules).
      const parts = total > 0 ? ticks.map((t) => [t.line - 1, (ms * t.ticks) / total] as const) : [[cf.lineNumber, ms] as const];
      // esbuild's __commonJS/__esm helpers (before the first module) spend their self time compiling
      // the module they are about to run: charge it to that module.
      const firstMark = marks[0]?.[0] ?? 0;
      const callee = n.children?.map((c) => nodes.get(c)!).find((c) => c.callFrame.url === cf.url && c.callFrame.lineNumber >= firstMark);
      for (const [line, part] of parts) {
        const inHelper = cf.lineNumber < firstMark && line < firstMark && callee !== undefined;
        const key = classify(cf.url, cf.functionName, bundle, marks, inHelper ? callee.callFrame.lineNumber : line);
        self.set(key, (self.get(key) ?? 0) + part);
      }
    }
    const byOwner = [...self].sort((a, b) => b[1] - a[1]);
    return { totalMs: byOwner.reduce((s, [, v]) => s + v, 0), byOwner };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Bytes of the plain bundle per owner (from the same module comments), largest first. */
export function bundleComposition(bundle: string): [string, number][] {
  const lines = fs.readFileSync(bundle, 'utf8').split('\n');
  const marks = moduleMarks(bundle);
  const bytes = new Map<string, number>();
  lines.forEach((l, i) => {
    const o = ownerAt(marks, i);
    bytes.set(o, (bytes.get(o) ?? 0) + Buffer.byteLength(l) + 1);
  });
  return [...bytes].sort((a, b) => b[1] - a[1]);
}
