/**
 * Builds the agent with the project's own scripts/build.mjs, but into a private folder: dist/ is what the
 * integration tests run, and a benchmark must not rewrite it under them. build.mjs writes `dist/...`
 * relative to its working directory, so it runs in a scratch folder whose `src` is a symlink to ours
 * (esbuild follows it to the real sources and finds node_modules and package.json from there). An older
 * commit is built from `git archive` of its sources, to measure what a change was worth. The image's
 * start-up (a V8 startup snapshot made by the Dockerfile's snapshot stage, started by its ENTRYPOINT)
 * is reproduced with test/helpers/image-launch.ts, for the Node.js binary being measured.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLocalImage, readImageStartup } from '../../test/helpers/image-launch.js';
import { scriptLaunch, type Launch, type NodeBinary } from './launch.js';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** One output of scripts/build.mjs. */
export interface Build {
  /** Its dist/ folder. */
  dist: string;
  /** The ESM bundle (`node <bundle>`), and its size. */
  mjs: string;
  bytes: number;
  /** The CommonJS bundle the snapshot is made from (absent before the snapshot existed). */
  cjs: string | undefined;
}

export interface Bundles {
  plain: Build;
  minified: Build;
  /** A scratch folder that cleanup() removes. */
  scratch(name: string): string;
  /** Removes the scratch folder. */
  cleanup(): void;
}

function runBuild(cwd: string, minify: boolean, script = 'scripts/build.mjs'): Build {
  const res = spawnSync(process.execPath, [script, ...(minify ? [] : ['--no-minify'])], { cwd, encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`node ${script} in ${cwd} failed:\n${res.stdout}\n${res.stderr}`);
  const dist = path.join(cwd, 'dist');
  const mjs = path.join(dist, 'istiod-vault-agent.mjs');
  const cjs = path.join(dist, 'istiod-vault-agent.cjs');
  return { dist, mjs, bytes: fs.statSync(mjs).size, cjs: fs.existsSync(cjs) ? cjs : undefined };
}

function buildInto(dir: string, minify: boolean): Build {
  fs.mkdirSync(dir, { recursive: true });
  const link = path.join(dir, 'src');
  if (!fs.existsSync(link)) fs.symlinkSync(path.join(PROJECT_ROOT, 'src'), link);
  return runBuild(dir, minify, path.join(PROJECT_ROOT, 'scripts', 'build.mjs'));
}

/** Builds the plain and the minified bundle from the current src/. Throws with the build output on failure. */
export function buildBundles(): Bundles {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'ivagent-bench-build-'));
  return {
    plain: buildInto(path.join(base, 'plain'), false),
    minified: buildInto(path.join(base, 'min'), true),
    scratch: (name) => fs.mkdtempSync(path.join(base, `${name}-`)),
    cleanup: () => fs.rmSync(base, { recursive: true, force: true }),
  };
}

/** Builds the (minified) bundle of commit `ref` into `dir`, from `git archive` of its sources. */
export function buildAtRef(ref: string, dir: string): Build {
  fs.mkdirSync(dir, { recursive: true });
  const tar = execFileSync('git', ['archive', ref, 'src', 'scripts', 'package.json', 'tsconfig.json'], { cwd: PROJECT_ROOT, maxBuffer: 64 << 20 });
  execFileSync('tar', ['-x', '-C', dir], { input: tar });
  fs.symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return runBuild(dir, true);
}

/** The commit `ref` names, abbreviated. */
export function commitOf(ref: string): string {
  return execFileSync('git', ['rev-parse', '--short', ref], { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
}

/** `node <bundle.mjs>`: what the tests (and the image before the snapshot) run. */
export function bundleLaunch(node: NodeBinary, b: Build, flags: string[] = [], env: Record<string, string> = {}): Launch {
  return scriptLaunch(node, b.mjs, flags, env);
}

/**
 * The image's start-up for `node`: the Dockerfile's snapshot stage run on `b`'s CommonJS bundle into a
 * fresh folder under `into`, started by the Dockerfile's ENTRYPOINT. `nodeFlags`, when given, replace
 * the ENTRYPOINT's own Node.js flags (to try other heap settings). Throws when the build has no
 * CommonJS bundle.
 */
export function imageLaunch(node: NodeBinary, b: Build, into: string, nodeFlags?: string[]): Launch {
  if (!b.cjs) throw new Error(`${b.dist} has no CommonJS bundle to make a snapshot from`);
  // The snapshot is built with the flags it is started with (Node.js 20 refuses any difference).
  const app = buildLocalImage(node.path, b.dist, fs.mkdtempSync(path.join(into, 'app-')), readImageStartup(), nodeFlags);
  return { argv: app.entrypoint, env: {} };
}

/** The Node.js flags the image's ENTRYPOINT passes before the snapshot (heap settings, when any). */
export function imageNodeFlags(): string[] {
  const e = readImageStartup().entrypoint;
  return e.slice(1, e.indexOf('--snapshot-blob'));
}
