/**
 * istiod's version from its metrics page, and what the sync check concludes from it: before Istio 1.24
 * istiod sets citadel_server_cert_chain_expiry_timestamp only when its CA starts, so a stale value there
 * is "unknown" (with the reason), not "out of sync". Pages are shaped like istiod's own exposition (the
 * OpenTelemetry Prometheus exporter istiod uses, without scope/target info: istio/istio pkg/monitoring);
 * time is fake.
 */
import { describe, expect, it } from 'vitest';
import { reportsReloads, waitForIstiod } from '../../src/agent/istiod-sync.js';
import { parseIstiodVersion } from '../../src/agent/istiod-version.js';
import { FakeClock } from '../helpers/fake-clock.js';

const NOT_AFTER = Date.UTC(2026, 1, 1, 12, 0, 0);
const STALE = 1767268800; // what istiod recorded when it started, before the reload

/** A page as istiod serves it on :15014/metrics (trimmed to the families that matter, plus neighbours). */
function istiodPage(o: { tag?: string; pilotInfo?: string; expiry?: number }): string {
  const lines = [
    '# HELP citadel_server_root_cert_expiry_timestamp The unix timestamp, in seconds, when the root cert will expire.',
    '# TYPE citadel_server_root_cert_expiry_timestamp gauge',
    'citadel_server_root_cert_expiry_timestamp 2.082758399e+09',
  ];
  if (o.expiry !== undefined) {
    lines.push(
      '# HELP citadel_server_cert_chain_expiry_timestamp The unix timestamp, in seconds, when Istio generated cert chain will expire.',
      '# TYPE citadel_server_cert_chain_expiry_timestamp gauge',
      // Go's %g: 1.7672688e+09
      `citadel_server_cert_chain_expiry_timestamp ${o.expiry.toExponential().replace(/e\+(\d)$/, 'e+0$1')}`,
    );
  }
  if (o.tag !== undefined) {
    lines.push('# HELP istio_build Istio component build info', '# TYPE istio_build gauge', `istio_build{component="pilot",tag="${o.tag}"} 1`);
  }
  if (o.pilotInfo !== undefined) {
    lines.push('# HELP pilot_info Pilot version and build information.', '# TYPE pilot_info gauge', `pilot_info{version="${o.pilotInfo}"} 1`);
  }
  lines.push('# HELP istiod_uptime_seconds Current istiod server uptime in seconds', '# TYPE istiod_uptime_seconds gauge', 'istiod_uptime_seconds 1234.56');
  return lines.join('\n') + '\n';
}

describe('parseIstiodVersion (istiod-sync uses it to tell Istio < 1.24)', () => {
  it.each([
    ['istio_build of a release', istiodPage({ tag: '1.23.2' }), { major: 1, minor: 23, tag: '1.23.2' }],
    ['istio_build of 1.24.0', istiodPage({ tag: '1.24.0' }), { major: 1, minor: 24, tag: '1.24.0' }],
    ['pilot_info when istio_build is absent', istiodPage({ pilotInfo: '1.22.6-0d2c7a0b1f3e7d9c1d2b4a7e5f0c9b8a7d6e5f4c-Clean' }), { major: 1, minor: 22, tag: '1.22.6' }],
    ['istio_build before pilot_info', istiodPage({ tag: '1.30.3', pilotInfo: '1.20.0-x-Clean' }), { major: 1, minor: 30, tag: '1.30.3' }],
  ])('reads %s', (_name, page, want) => {
    expect(parseIstiodVersion(page)).toMatchObject(want);
  });

  it.each([
    ['a dev build', istiodPage({ tag: 'unknown', pilotInfo: 'unknown-unknown-unknown' })],
    ['no build metrics at all', istiodPage({ expiry: STALE })],
    ['another component\'s build', 'istio_build{component="proxy",tag="1.23.2"} 1\n'],
    // A build from the Go module proxy (tools/istio) tags itself with its pseudo-version: not release 0.0.
    ['a pseudo-version tag alone', istiodPage({ tag: 'v0.0.0-20260827124520-eed52ebb66ad' })],
  ])('is undefined for %s', (_name, page) => {
    expect(parseIstiodVersion(page)).toBeUndefined();
  });

  it('knows which releases update the gauge after a reload', () => {
    expect(reportsReloads({ major: 1, minor: 23, patch: 6, prerelease: undefined, tag: '1.23.6' })).toBe(false);
    expect(reportsReloads({ major: 1, minor: 24, patch: 0, prerelease: undefined, tag: '1.24.0' })).toBe(true);
    expect(reportsReloads({ major: 2, minor: 0, patch: 0, prerelease: undefined, tag: '2.0.0' })).toBe(true);
  });
});

describe('waitForIstiod by istiod version', () => {
  async function check(page: string, timeoutMs = 60_000) {
    const clock = new FakeClock(NOT_AFTER - 30 * 86400_000);
    let fetches = 0;
    const res = await clock.drive(
      waitForIstiod({
        url: 'http://localhost:15014/metrics',
        notAfterMs: NOT_AFTER,
        timeoutMs,
        clock,
        fetchText: async () => {
          fetches++;
          return page;
        },
        signal: new AbortController().signal,
      }),
    );
    return { ...res, fetches };
  }

  it('Istio 1.23 with the value it recorded at start: unknown at once, saying why', async () => {
    const res = await check(istiodPage({ tag: '1.23.2', expiry: STALE }));
    expect(res).toMatchObject({ state: 'unknown', seen: STALE });
    expect(res.why).toBe('istiod 1.23.2 sets citadel_server_cert_chain_expiry_timestamp only when it starts, not after a reload (Istio < 1.24)');
    expect(res.fetches).toBe(1);
  });

  it('Istio 1.23 that started with this intermediate: in sync', async () => {
    expect(await check(istiodPage({ tag: '1.23.2', expiry: NOT_AFTER / 1000 }))).toMatchObject({ state: 'in_sync' });
  });

  it('Istio 1.24 still on the old value until the deadline: out of sync', async () => {
    const res = await check(istiodPage({ tag: '1.24.0', expiry: STALE }), 10_000);
    expect(res).toMatchObject({ state: 'out_of_sync', seen: STALE });
    expect(res.why).toBeUndefined();
    expect(res.fetches).toBeGreaterThan(1);
  });

  // The istiod built here (tools/istio): istio_build carries a Go pseudo-version, pilot_info "1.31-dev".
  // Read as release 0.0 it would be "unknown" at the first look, before istiod's 100 ms reload.
  it('a build from the Go module proxy (pseudo-version tag, 1.31-dev) still on the old value: polled until the deadline', async () => {
    const res = await check(istiodPage({ tag: 'v0.0.0-20260827124520-eed52ebb66ad', pilotInfo: '1.31-dev-eed52ebb66ad-Clean', expiry: STALE }), 10_000);
    expect(res).toMatchObject({ state: 'out_of_sync', seen: STALE });
    expect(res.fetches).toBeGreaterThan(1);
  });

  it('an istiod that names no release is judged by the value alone', async () => {
    expect(await check(istiodPage({ tag: 'unknown', expiry: STALE }), 10_000)).toMatchObject({ state: 'out_of_sync', seen: STALE });
  });
});
