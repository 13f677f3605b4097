/**
 * External tools the tests need. Under CI=true a missing tool fails the run; elsewhere the tests that
 * need it skip with a message saying what to install.
 */
import { spawnSync } from 'node:child_process';
import { inject } from 'vitest';

export const IN_CI = process.env.CI === 'true';

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Returns true when `cmd` can be used; throws under CI when it cannot. */
export function requireCommand(cmd: string, install: string): boolean {
  if (hasCommand(cmd)) return true;
  if (IN_CI) throw new Error(`${cmd} is required under CI (${install})`);
  console.warn(`skipping: ${cmd} not found (${install})`);
  return false;
}

/** Path of the OpenBao/Vault binary found by global setup, or '' when none. */
export function vaultBin(): string {
  const bin = inject('vaultBin');
  if (!bin && IN_CI) throw new Error('no OpenBao binary under CI');
  return bin;
}
