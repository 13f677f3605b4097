/**
 * The metrics of a process that serves none (`init` exits before anything could scrape it): every
 * record is dropped, and prom-client is not loaded at all (it is the largest part of init's start-up
 * that a V8 startup snapshot cannot hold: src/main.ts).
 */
import type { MetricsRecorder } from './metrics.js';

const ignore = (): void => undefined;

export const discardedMetrics: MetricsRecorder = {
  setReadyProbe: ignore,
  observeVault: ignore,
  recordIssued: ignore,
  recordAdopted: ignore,
  recordRenewalAt: ignore,
  recordFailure: ignore,
  recordIstiodSync: ignore,
  recordRootRotation: ignore,
};
