/**
 * istiod's release from its metrics page, and whether it compares root bundles as sets (>= 1.30), which
 * decides whether the agent may reorder root-cert.pem at a root switch.
 */
import { describe, expect, it } from 'vitest';
import { comparesRootSets, istiodComparesSets, parseIstiodVersion } from '../../src/agent/istiod-version.js';
import { captureLog } from '../helpers/log-sink.js';

/** The two lines as the istiod built here (tools/istio, release-1.31 commit eed52ebb66ad) prints them. */
const BUILT_HERE = [
  '# HELP istio_build Istio component build info',
  '# TYPE istio_build gauge',
  'istio_build{component="pilot",tag="v0.0.0-20260827124520-eed52ebb66ad"} 1',
  '# HELP pilot_info Pilot version and build information.',
  '# TYPE pilot_info gauge',
  'pilot_info{version="1.31-dev-eed52ebb66ad-Clean"} 1',
].join('\n');

/** A release build: istio_build carries the git tag, pilot_info "<version>-<revision>-<status>". */
const release = (tag: string) => `istio_build{component="pilot",tag="${tag}"} 1\npilot_info{version="${tag}-4c0a9b2f1e7d3a6b8c5d2e1f0a9b8c7d6e5f4a3b-Clean"} 1\n`;

describe('parseIstiodVersion', () => {
  it.each([
    { name: 'the istiod built here (pseudo-version tag, dev version)', page: BUILT_HERE, want: { major: 1, minor: 31, patch: undefined, prerelease: 'dev' } },
    { name: 'a release', page: release('1.24.2'), want: { major: 1, minor: 24, patch: 2, prerelease: undefined } },
    { name: 'a release candidate', page: release('1.30.0-rc.1'), want: { major: 1, minor: 30, patch: 0, prerelease: 'rc.1' } },
    { name: 'labels in another order', page: 'istio_build{tag="1.30.1",component="pilot"} 1\n', want: { major: 1, minor: 30, patch: 1, prerelease: undefined } },
    // A git revision that starts with hex letters is not a pre-release.
    { name: 'pilot_info only', page: 'pilot_info{version="1.29.3-deadbeef00-Clean"} 1\n', want: { major: 1, minor: 29, patch: 3, prerelease: undefined } },
  ])('$name', ({ page, want }) => {
    expect(parseIstiodVersion(page)).toMatchObject(want);
  });

  it.each([
    { name: 'no build metrics', page: 'citadel_server_cert_chain_expiry_timestamp 1.7e9\npilot_xds{version="1.31.0"} 3\n' },
    { name: 'only a pseudo-version', page: 'istio_build{component="pilot",tag="v0.0.0-20260827124520-eed52ebb66ad"} 1\n' },
    { name: 'garbage', page: 'pilot_info{version="unknown"} 1\n' },
  ])('unknown: $name', ({ page }) => {
    expect(parseIstiodVersion(page)).toBeUndefined();
  });
});

describe('comparesRootSets', () => {
  it.each([
    { v: '1.19.5', sets: false },
    { v: '1.20.0', sets: false },
    { v: '1.29.4', sets: false },
    { v: '1.30.0-beta.0', sets: false },
    { v: '1.30.0', sets: true },
    { v: '1.30.4', sets: true },
    { v: '1.31.0-alpha.0', sets: true },
    { v: '1.31.2', sets: true },
    { v: '2.0.0', sets: true },
  ])('$v: $sets', ({ v, sets }) => {
    expect(comparesRootSets(parseIstiodVersion(release(v)))).toBe(sets);
  });

  it('a 1.30 development build may predate the change; the 1.31 one does not', () => {
    expect(comparesRootSets(parseIstiodVersion('pilot_info{version="1.30-dev-0123abcd-Clean"} 1'))).toBe(false);
    expect(comparesRootSets(parseIstiodVersion(BUILT_HERE))).toBe(true);
  });

  it('unknown is false (keeping the bytes is safe on every release)', () => {
    expect(comparesRootSets(undefined)).toBe(false);
  });
});

describe('istiodComparesSets', () => {
  it('asks istiod until it answers, then keeps the answer', async () => {
    const cap = captureLog();
    const pages: (string | Error)[] = [new Error('connect ECONNREFUSED'), BUILT_HERE, release('1.24.2')];
    const urls: string[] = [];
    const ask = istiodComparesSets({
      url: 'http://127.0.0.1:15014/metrics',
      log: cap.log,
      fetchText: async (url) => {
        urls.push(url);
        const p = pages.shift()!;
        if (p instanceof Error) throw p;
        return p;
      },
    });
    expect(await ask()).toBe(false);
    expect(await ask()).toBe(true);
    expect(await ask()).toBe(true);
    expect(urls).toEqual(['http://127.0.0.1:15014/metrics', 'http://127.0.0.1:15014/metrics']);
    expect(cap.lines.filter((l) => l.level === 'info')).toEqual([expect.objectContaining({ istiodVersion: '1.31-dev', comparesSets: true })]);
  });

  it('an older release is kept as "bytes"; no URL asks nothing', async () => {
    const cap = captureLog();
    let calls = 0;
    const fetchText = async () => {
      calls++;
      return release('1.26.1');
    };
    const ask = istiodComparesSets({ url: 'http://127.0.0.1:15014/metrics', log: cap.log, fetchText });
    expect(await ask()).toBe(false);
    expect(await ask()).toBe(false);
    expect(calls).toBe(1);
    expect(cap.text()).toContain('1.26.1');
    expect(await istiodComparesSets({ url: undefined, log: cap.log, fetchText })()).toBe(false);
    expect(calls).toBe(1);
  });
});
