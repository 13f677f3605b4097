/**
 * The image's start-up, reproduced here without a Docker engine, from image/Dockerfile itself: the
 * `snapshot` stage's RUN is run with a chosen Node.js binary (the image's own version: scripts/
 * image-node.sh) on the locally built bundle, into a folder standing in for /app, and the runtime's
 * ENTRYPOINT is returned with its container paths mapped to that folder and binary. The image-startup
 * test and the bench both start the agent this way, so they run what the image runs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DOCKERFILE = path.join(ROOT, 'image', 'Dockerfile');
/** Where the distroless runtime keeps node, and the folder the agent's files are in. */
const CONTAINER_NODE = '/nodejs/bin/node';
const APP = '/app/';

export interface Instruction {
  op: string;
  args: string;
}

export interface Stage {
  /** The base image, with the ARG defaults declared before the first FROM put in. */
  from: string;
  name: string | undefined;
  body: Instruction[];
}

/** Dockerfile instructions: comments dropped, continuation lines joined. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw) && !pending) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    const m = /^(\S+)\s*(.*)$/.exec(full);
    if (m) out.push({ op: m[1]!.toUpperCase(), args: m[2]! });
  }
  return out;
}

/** The stages, each FROM's image resolved against the ARG defaults declared before the first FROM. */
export function dockerfileStages(ins: Instruction[]): Stage[] {
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const i of ins) {
    if (i.op === 'ARG' && stages.length === 0) {
      const m = /^(\w+)=(.*)$/.exec(i.args);
      if (m) args[m[1]!] = m[2]!.replace(/^"|"$/g, '');
    } else if (i.op === 'FROM') {
      const parts = i.args.split(/\s+/).filter((p) => !p.startsWith('--platform'));
      const from = parts[0]!.replace(/\$\{?(\w+)\}?/g, (_, n: string) => args[n] ?? `<unset ${n}>`);
      const as = parts.findIndex((p) => p.toUpperCase() === 'AS');
      stages.push({ from, name: as >= 0 ? parts[as + 1] : undefined, body: [] });
    } else {
      stages.at(-1)?.body.push(i);
    }
  }
  return stages;
}

/** What the Dockerfile says about start-up. */
export interface ImageStartup {
  /** ARG NODE_VERSION: the one Node.js version that builds the snapshot and runs it. */
  nodeVersion: string;
  /** The runtime stage's exec-form ENTRYPOINT and CMD. */
  entrypoint: string[];
  cmd: string[];
  /** The snapshot stage's RUN instructions (shell form, split on spaces). */
  snapshotRuns: string[][];
  /** The snapshot stage's COPY instructions: [from stage or undefined for the build context, source, destination]. */
  snapshotCopies: [string | undefined, string, string][];
  /** Files the runtime stage takes from the snapshot stage: container source -> container destination. */
  runtimeFiles: [string, string][];
}

/** Reads image/Dockerfile. Throws when a part the image's start-up relies on is missing. */
export function readImageStartup(dockerfile = DOCKERFILE): ImageStartup {
  const ins = parseDockerfile(fs.readFileSync(dockerfile, 'utf8'));
  const nodeVersion = ins.map((i) => (i.op === 'ARG' ? /^NODE_VERSION=(\d+\.\d+\.\d+)$/.exec(i.args)?.[1] : undefined)).find(Boolean);
  if (!nodeVersion) throw new Error(`${dockerfile}: no ARG NODE_VERSION=<x.y.z>`);
  const stages = dockerfileStages(ins);
  const snapshot = stages.find((s) => s.name === 'snapshot');
  const runtime = stages.at(-1)!;
  if (!snapshot) throw new Error(`${dockerfile}: no stage named snapshot`);
  const json = (op: string) => {
    const i = runtime.body.filter((x) => x.op === op).at(-1);
    return i ? (JSON.parse(i.args) as string[]) : [];
  };
  const copyArgs = (i: Instruction) => {
    const words = i.args.split(/\s+/);
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((w) => !w.startsWith('--'));
    return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
  };
  const snapshotCopies: [string | undefined, string, string][] = snapshot.body
    .filter((i) => i.op === 'COPY')
    .flatMap((i) => {
      const c = copyArgs(i);
      return c.sources.map((s) => [c.from, s, c.dest] as [string | undefined, string, string]);
    });
  const runtimeFiles: [string, string][] = runtime.body
    .filter((i) => i.op === 'COPY')
    .map(copyArgs)
    .filter((c) => c.from === 'snapshot')
    .flatMap((c) => c.sources.map((s) => [s, c.dest] as [string, string]));
  return {
    nodeVersion,
    entrypoint: json('ENTRYPOINT'),
    cmd: json('CMD'),
    snapshotRuns: snapshot.body.filter((i) => i.op === 'RUN').map((i) => i.args.split(/\s+/)),
    snapshotCopies,
    runtimeFiles,
  };
}

/** The image's Node.js binary when installed here (scripts/image-node.sh install), else undefined. */
export function imageNode(): string | undefined {
  try {
    return execFileSync(path.join(ROOT, 'scripts', 'image-node.sh'), ['path'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export interface LocalImage {
  /** The stand-in for /app: exactly what the runtime stage puts there. */
  appDir: string;
  /** The ENTRYPOINT with its paths mapped: argv[0] is the Node.js binary. */
  entrypoint: string[];
  cmd: string[];
}

/**
 * Runs the Dockerfile's snapshot stage here: copies its inputs (`bundleDir` holds the build stage's
 * /src/dist, the build context is the repository), runs its RUN lines with `node`, then leaves in
 * `appDir` only what the runtime stage copies into /app. `nodeFlags`, when given, replace the Node.js
 * flags of both the snapshot RUN and the ENTRYPOINT (to measure other V8 settings). Throws with the
 * output when a step fails.
 */
export function buildLocalImage(node: string, bundleDir: string, appDir: string, spec = readImageStartup(), nodeFlags?: string[]): LocalImage {
  const work = fs.mkdtempSync(path.join(path.dirname(appDir), `${path.basename(appDir)}-snapshot-stage-`));
  try {
    // Container path -> local path, for the snapshot stage's filesystem.
    const local = (p: string) => (p.startsWith(APP) ? path.join(appDir, p.slice(APP.length)) : path.join(work, p));
    fs.mkdirSync(appDir, { recursive: true });
    for (const [from, src, dest] of spec.snapshotCopies) {
      const source = from === 'build' ? path.join(bundleDir, path.relative('/src/dist', src)) : from === undefined ? path.join(ROOT, src) : undefined;
      if (!source || source.startsWith('..')) throw new Error(`snapshot stage: cannot reproduce COPY --from=${from} ${src}`);
      fs.mkdirSync(path.dirname(local(dest)), { recursive: true });
      fs.copyFileSync(source, local(dest));
    }
    for (const run of spec.snapshotRuns) {
      if (run[0] !== 'node') throw new Error(`snapshot stage: cannot reproduce RUN ${run.join(' ')}`);
      const script = run.findIndex((a) => a.startsWith('/'));
      const args = [...(nodeFlags ?? run.slice(1, script)), ...run.slice(script).map((a) => (a.startsWith('/') ? local(a) : a))];
      const res = spawnSync(node, args, { encoding: 'utf8', cwd: appDir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
      if (res.status !== 0) throw new Error(`snapshot stage: RUN ${run.join(' ')} failed (exit ${res.status ?? res.signal}):\n${res.stdout}${res.stderr}`);
    }
    // The runtime has what it copies from the snapshot stage and nothing else (not the bundle).
    const keep = new Set(spec.runtimeFiles.filter(([, dest]) => dest.startsWith(APP)).map(([src]) => local(src)));
    for (const f of fs.readdirSync(appDir)) if (!keep.has(path.join(appDir, f))) fs.rmSync(path.join(appDir, f), { recursive: true, force: true });
    for (const f of keep) if (!fs.existsSync(f)) throw new Error(`snapshot stage did not produce ${f}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const map = (a: string) => (a === CONTAINER_NODE ? node : a.startsWith(APP) ? path.join(appDir, a.slice(APP.length)) : a);
  const entrypoint = spec.entrypoint.map(map);
  const blob = entrypoint.indexOf('--snapshot-blob');
  return { appDir, entrypoint: nodeFlags ? [entrypoint[0]!, ...nodeFlags, ...entrypoint.slice(blob)] : entrypoint, cmd: spec.cmd };
}
