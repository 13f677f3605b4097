/**
 * The istioctl binary for the install tests: built from istio.io/istio (tools/istio, ISTIO_MODULE) by
 * scripts/go-tools.sh into a cache outside the repository. Until that script is on this branch, the
 * cache folder is looked up directly. '' skips (outside CI).
 */
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isExecutable } from '../../../src/dev/bao-binary.js';

export function istioctlBin(): string {
  const cache = process.env.IVA_TOOLS_CACHE ?? path.join(os.homedir(), '.cache/istiod-vault-agent/go-tools');
  let dirs: string[];
  try {
    dirs = readdirSync(cache).filter((d) => d.startsWith('istioctl-'));
  } catch {
    dirs = [];
  }
  for (const d of dirs) {
    const bin = path.join(cache, d, 'istioctl');
    if (isExecutable(bin)) return bin;
  }
  console.warn('skipping: istioctl is not built (scripts/go-tools.sh build istioctl)');
  return '';
}
