/**
 * `check [DIR]`: verify a cert dir as istiod would and describe it. When an agent runs next to it
 * (`kubectl exec ... check` in the istiod pod), its own renewal time is asked for on METRICS_ADDR,
 * because the settings this process sees need not be the ones the agent runs with.
 */
import path from 'node:path';
import { checkCertDir, type AgentSchedule } from '../agent/check-dir.js';
import { loadSettings } from '../config/settings.js';
import { METRIC_PREFIX } from '../telemetry/metrics.js';
import type { CliIo } from './io.js';

const RENEWAL_METRIC = `${METRIC_PREFIX}cert_renewal_timestamp_seconds`;
const PHASE_METRIC = `${METRIC_PREFIX}root_rotation_phase`;
const NEXT_STEP_METRIC = `${METRIC_PREFIX}root_rotation_next_step_timestamp_seconds`;
const RESTART_METRIC = `${METRIC_PREFIX}root_rotation_restart_required`;

/** The agent's root rotation state from its metrics page; undefined before its first look at Vault. */
export function rotationFromMetrics(text: string): AgentSchedule['rotation'] {
  const phase = new RegExp(`^${PHASE_METRIC}\\{phase="([a-z]+)"\\}\\s+1$`, 'm').exec(text)?.[1];
  if (!phase) return undefined;
  const next = new RegExp(`^${NEXT_STEP_METRIC}\\s+([0-9.eE+]+)$`, 'm').exec(text)?.[1];
  const restart = new RegExp(`^${RESTART_METRIC}\\s+([0-9.eE+]+)$`, 'm').exec(text)?.[1];
  return { phase, nextAt: next === undefined ? undefined : Number(next) * 1000, restartRequired: restart === '1' };
}

async function askAgent(addr: { host: string; port: number } | undefined): Promise<AgentSchedule | undefined> {
  if (!addr) return undefined;
  const host = addr.host === '0.0.0.0' || addr.host === '::' ? '127.0.0.1' : addr.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}/metrics`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    if (!res.ok) return undefined;
    const text = await res.text();
    const m = new RegExp(`^${RENEWAL_METRIC}\\s+([0-9.eE+]+)$`, 'm').exec(text);
    const rotation = rotationFromMetrics(text);
    return m ? { renewAt: Number(m[1]) * 1000, from: url, ...(rotation ? { rotation } : {}) } : undefined;
  } catch {
    return undefined;
  }
}

export async function checkCommand(source: Readonly<Record<string, string | undefined>>, positional: readonly string[], io: CliIo): Promise<number> {
  const settings = loadSettings(source, { needsVault: false });
  const dir = positional[1] === undefined ? settings.certDir : path.resolve(io.cwd, positional[1]);
  // The agent's schedule belongs to its own CERT_DIR only.
  const agent = dir === settings.certDir ? await askAgent(settings.metricsAddr) : undefined;
  const report = await checkCertDir(dir, Date.now(), settings.renewBeforeMs, agent);
  for (const l of report.lines) (report.ok ? io.out : io.err)(l);
  return report.ok ? 0 : 1;
}
