import { defineConfig } from 'vitest/config';

/**
 * Five tiers, each a vitest project with its own npm script; `npm test` runs them all.
 * - unit: in-process logic in fake time (a fake Vault that really signs, an in-memory or temp-dir
 *   writer): no network, no child processes, no servers. Seconds; the edit loop.
 * - integration: the real thing, one concern at a time: a real OpenBao, the built agent as a child
 *   process, local HTTP servers, real folders and mounts.
 * - evidence: the long suites behind docs/reliability.md (fault injection, crash points, readers).
 * - manifests: every install path rendered by the real tools (kubectl kustomize, helm, istioctl, promtool).
 * - ha: the agent against a real 3-node OpenBao Raft cluster, active node killed mid-renewal (~2 min).
 * Only the tiers that run the built agent or OpenBao get the global setup (build + find `bao`).
 */
const heavy = { globalSetup: ['test/global-setup.ts'], testTimeout: 60_000, hookTimeout: 60_000 };

export default defineConfig({
  test: {
    pool: 'forks',
    // Integration suites start their own OpenBao and agents; two cores, so keep the fan-out modest.
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 20_000 } },
      { extends: true, test: { name: 'integration', include: ['test/integration/**/*.test.ts'], ...heavy } },
      { extends: true, test: { name: 'evidence', include: ['test/evidence/**/*.test.ts'], ...heavy } },
      { extends: true, test: { name: 'manifests', include: ['test/manifests/**/*.test.ts'], ...heavy } },
      // Each file starts its own 3-node OpenBao cluster: one file at a time.
      { extends: true, test: { name: 'ha', include: ['test/ha/**/*.test.ts'], ...heavy, fileParallelism: false } },
    ],
  },
});
