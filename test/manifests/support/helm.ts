/**
 * Finding helm for the manifest tests. Helm is not a package here: install it with
 * `go install helm.sh/helm/v3/cmd/helm@<HELM_VERSION>` (lands in $(go env GOPATH)/bin, usually ~/go/bin).
 * Same semantics as requireCommand: missing under CI=true fails, elsewhere the tests skip.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { IN_CI } from '../../helpers/tools.js';
import { isExecutable } from '../../../src/dev/bao-binary.js';

export const HELM_VERSION = 'v3.19.0';
export const HELM_INSTALL = `go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION}`;


function goBinDirs(): string[] {
  const dirs = [path.join(os.homedir(), 'go', 'bin')];
  for (const go of ['go', '/usr/local/go/bin/go']) {
    const r = spawnSync(go, ['env', 'GOPATH'], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) {
      for (const p of r.stdout.trim().split(path.delimiter)) dirs.push(path.join(p, 'bin'));
      break;
    }
  }
  return dirs;
}

/** Path of a helm 3 binary: PATH first, then Go's bin folders; '' when none. */
export function findHelm(): string {
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...goBinDirs()]) {
    const candidate = path.join(dir, 'helm');
    if (!isExecutable(candidate)) continue;
    const v = spawnSync(candidate, ['version', '--short'], { encoding: 'utf8' });
    if (v.status === 0 && v.stdout.startsWith('v3.')) return candidate;
  }
  return '';
}

/** Returns helm's path, or '' (after a warning) to skip; throws under CI when helm is missing. */
export function requireHelm(): string {
  const helm = findHelm();
  if (helm) return helm;
  if (IN_CI) throw new Error(`helm 3 is required under CI (${HELM_INSTALL})`);
  console.warn(`skipping: helm 3 not found on PATH or in Go's bin folder (${HELM_INSTALL})`);
  return '';
}
