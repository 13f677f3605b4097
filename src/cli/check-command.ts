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

async function askAgent(addr: { host: string; port: number } | undefined): Promise<AgentSchedule | undefined> {
  if (!addr) return undefined;
  const host = addr.host === '0.0.0.0' || addr.host === '::' ? '127.0.0.1' : addr.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}/metrics`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    if (!res.ok) return undefined;
    const m = new RegExp(`^${RENEWAL_METRIC}\\s+([0-9.eE+]+)$`, 'm').exec(await res.text());
    return m ? { renewAt: Number(m[1]) * 1000, from: url } : undefined;
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
