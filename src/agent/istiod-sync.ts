/**
 * Did istiod take the new intermediate? istiod exports citadel_server_cert_chain_expiry_timestamp on its
 * own metrics port; after a publish it must equal the new intermediate's notAfter. Before Istio 1.24
 * istiod sets that gauge only when its CA server starts, never after a hot reload, so another value
 * proves nothing there: an istiod that says it is older than 1.24 (istio_build) gets "unknown", as does
 * a disabled port or another error. "unknown" is reported but never treated as a failure.
 */
import { AbortedError, type Clock } from '../common/clock.js';
import { parseIstiodVersion, type IstiodVersion } from './istiod-version.js';

export const ISTIOD_EXPIRY_METRIC = 'citadel_server_cert_chain_expiry_timestamp';
export const SYNC_POLL_MS = 2000;
/** The first Istio minor (1.x) whose istiod updates ISTIOD_EXPIRY_METRIC after a hot reload of ROOT_CA_DIR. */
export const RELOAD_AWARE_MINOR = 24;

export type SyncState = 'in_sync' | 'out_of_sync' | 'unknown';

/** Whether istiod of `v` updates ISTIOD_EXPIRY_METRIC after a hot reload (Istio 1.24 and later). */
export function reportsReloads(v: IstiodVersion): boolean {
  return v.major > 1 || v.minor >= RELOAD_AWARE_MINOR;
}

export type FetchText = (url: string, signal: AbortSignal) => Promise<string>;

/** The metric's values in a Prometheus text page (one per label set), in seconds. */
export function readExpiryMetric(page: string): number[] {
  const out: number[] = [];
  const re = new RegExp(`^${ISTIOD_EXPIRY_METRIC}(?:\\{[^}]*\\})?\\s+([-+0-9.eE]+|NaN)`, 'gm');
  for (const m of page.matchAll(re)) {
    const v = Number(m[1]);
    if (Number.isFinite(v)) out.push(v);
  }
  return out;
}

/**
 * Polls until istiod reports `notAfterMs` (in sync), or until `timeoutMs` passes: then out_of_sync if
 * istiod answered with another value, unknown if it never answered with the metric.
 */
export async function waitForIstiod(opts: {
  url: string;
  notAfterMs: number;
  timeoutMs: number;
  clock: Clock;
  fetchText: FetchText;
  signal: AbortSignal;
  pollMs?: number;
}): Promise<{ state: SyncState; seen: number | undefined; why?: string }> {
  const deadline = opts.clock.now() + opts.timeoutMs;
  const want = Math.floor(opts.notAfterMs / 1000);
  let seen: number | undefined;
  for (;;) {
    if (opts.signal.aborted) throw new AbortedError();
    try {
      const page = await opts.fetchText(opts.url, opts.signal);
      const values = readExpiryMetric(page);
      if (values.some((v) => Math.abs(v - want) <= 1)) return { state: 'in_sync', seen: want };
      if (values.length) {
        seen = values[0];
        // A match still proves istiod loaded it (it started with it); another value proves nothing before 1.24.
        const version = parseIstiodVersion(page);
        if (version && !reportsReloads(version)) {
          return { state: 'unknown', seen, why: `istiod ${version.tag} sets ${ISTIOD_EXPIRY_METRIC} only when it starts, not after a reload (Istio < 1.${RELOAD_AWARE_MINOR})` };
        }
      }
    } catch (err) {
      if (opts.signal.aborted) throw new AbortedError();
      void err; // unreachable istiod: keep polling until the deadline, then report unknown
    }
    const left = deadline - opts.clock.now();
    if (left <= 0) return { state: seen === undefined ? 'unknown' : 'out_of_sync', seen };
    await opts.clock.sleep(Math.min(opts.pollMs ?? SYNC_POLL_MS, left), opts.signal);
  }
}

/** Default FetchText: GET with a short timeout, text body, non-2xx is an error. */
export const fetchMetricsPage: FetchText = async (url, signal) => {
  const res = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(5000)]) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.text();
};
