/**
 * Builds the agent bundle (plain and minified) with the project's own scripts/build.mjs, but into a
 * private folder: dist/ is what the integration tests run, and a benchmark must not rewrite it under
 * them. build.mjs writes `dist/istiod-vault-agent.mjs` relative to its working directory, so it runs in
 * a scratch folder whose `src` is a symlink to ours (esbuild follows it to the real sources and finds
 * node_modules and package.json from there).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Bundles {
  plain: string;
  minified: string;
  plainBytes: number;
  minifiedBytes: number;
  /** Removes the scratch folder. */
  cleanup(): void;
}

function buildInto(dir: string, minify: boolean): string {
  fs.mkdirSync(dir, { recursive: true });
  const link = path.join(dir, 'src');
  if (!fs.existsSync(link)) fs.symlinkSync(path.join(PROJECT_ROOT, 'src'), link);
  const args = [path.join(PROJECT_ROOT, 'scripts', 'build.mjs'), minify ? '--minify' : '--no-minify'];
  const res = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`node scripts/build.mjs ${minify ? '--minify' : '--no-minify'} failed:\n${res.stdout}\n${res.stderr}`);
  return path.join(dir, 'dist', 'istiod-vault-agent.mjs');
}

/** Builds both bundles from the current src/. Throws with the build output on failure. */
export function buildBundles(opts: { minified?: boolean } = {}): Bundles {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'ivagent-bench-build-'));
  const plain = buildInto(path.join(base, 'plain'), false);
  const minified = opts.minified === false ? plain : buildInto(path.join(base, 'min'), true);
  return {
    plain,
    minified,
    plainBytes: fs.statSync(plain).size,
    minifiedBytes: fs.statSync(minified).size,
    cleanup: () => fs.rmSync(base, { recursive: true, force: true }),
  };
}
