/**
 * Paths of the Go binaries built by scripts/go-tools.sh (real istiod, istioctl, the workload stand-in,
 * kube-apiserver, etcd). Tests never build them (the first istio build takes ~15 minutes): global setup
 * looks them up once, `.ci/run` builds them before `npm test`. A missing binary skips its tests outside
 * CI and fails them under CI=true.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { inject } from 'vitest';
import { IN_CI } from './tools.js';

export const GO_TOOLS = ['pilot-discovery', 'istioctl', 'workload', 'kube-apiserver', 'etcd'] as const;
export type GoTool = (typeof GO_TOOLS)[number];

const SCRIPT = path.resolve('scripts/go-tools.sh');

/** Looks every tool up in the cache (no build); '' for one that is not built. For global setup. */
export function lookUpGoTools(): Record<GoTool, string> {
  const found = {} as Record<GoTool, string>;
  for (const tool of GO_TOOLS) {
    const r = spawnSync('bash', [SCRIPT, 'path', tool], { encoding: 'utf8' });
    found[tool] = r.status === 0 ? r.stdout.trim() : '';
  }
  return found;
}

/**
 * Path of `tool`'s cached binary, or '' when it is not built (the caller skips). Under CI=true a missing
 * binary throws, so the suite fails instead of silently skipping.
 */
export function goTool(tool: GoTool): string {
  const bin = inject('goTools')[tool];
  if (bin) return bin;
  const hint = `build it with: scripts/go-tools.sh build ${tool}`;
  if (IN_CI) throw new Error(`${tool} is required under CI (${hint})`);
  console.warn(`skipping: ${tool} is not built (${hint})`);
  return '';
}
