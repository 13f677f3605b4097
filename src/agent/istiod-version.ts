/**
 * Which Istio release istiod is, read from its own metrics page, and whether that release compares
 * root-cert.pem bundles as sets when the plugged-in CA files change (pilot/pkg/bootstrap/istio_ca.go):
 * - 1.20 to 1.29 accept a root change with ISTIO_MULTIROOT_MESH only when one file's BYTES contain the
 *   other's, so the same roots in another order are refused (the whole reload is skipped);
 * - 1.30 and later (istio/istio#59909, cherry-picked to release-1.30) compare the sets of certificates,
 *   so a reorder is taken as a root change and pushed to proxies (PCDS).
 * Unknown means "bytes": keeping root-cert.pem's bytes at the switch is safe on every release.
 */
import type { Logger } from 'pino';
import type { FetchText } from './istiod-sync.js';

export interface IstiodVersion {
  major: number;
  minor: number;
  patch: number | undefined;
  /** `dev` (a build from a development branch, e.g. "1.31-dev"), `alpha.1`, `beta.0`, `rc.2`; undefined for a release. */
  prerelease: string | undefined;
  /** The version as istiod reports it, e.g. `1.23.2`, `1.30.0-rc.1`, `1.31-dev`. */
  tag: string;
}

/** First release whose istiod compares root bundles as sets. */
export const SET_COMPARISON_SINCE = { major: 1, minor: 30 } as const;

const VERSION = /^(\d+)\.(\d+)(?:\.(\d+))?(?:-(dev|(?:alpha|beta|rc)(?:\.\d+)?)(?=-|$))?/;

function parseVersion(text: string): IstiodVersion | undefined {
  const m = VERSION.exec(text);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: m[3] === undefined ? undefined : Number(m[3]), prerelease: m[4], tag: m[0] };
}

/** The label sets of the samples of `metric` in a Prometheus text page, in page order. */
function samplesOf(page: string, metric: string): string[] {
  return [...page.matchAll(new RegExp(`^${metric}\\{([^}]*)\\}`, 'gm'))].map((m) => m[1]!);
}

const labelValue = (labels: string, name: string) => new RegExp(`(?:^|,)\\s*${name}="([^"]*)"`).exec(labels)?.[1];

/**
 * istiod's release from its metrics page: `istio_build{component="pilot",tag=...}` (istio/istio
 * pkg/version/stats.go: the git tag of a release build, e.g. "1.24.2"; a Go pseudo-version such as
 * "v0.0.0-20260827124520-eed52ebb66ad" on a build from the module proxy, which names no release), else
 * `pilot_info{version=...}` ("<version>-<git revision>-<build status>", e.g. "1.31-dev-eed52ebb66ad-Clean").
 * Undefined when neither names a release.
 */
export function parseIstiodVersion(page: string): IstiodVersion | undefined {
  const candidates = [
    ...samplesOf(page, 'istio_build').filter((l) => labelValue(l, 'component') === 'pilot').map((l) => labelValue(l, 'tag') ?? ''),
    ...samplesOf(page, 'pilot_info').map((l) => labelValue(l, 'version') ?? ''),
  ];
  for (const c of candidates) {
    const v = parseVersion(c);
    if (v) return v;
  }
  return undefined;
}

/**
 * True when this release compares root bundles as sets. 1.30 releases do; a 1.30 pre-release or
 * development build may predate the change (it was merged during 1.30's release cycle), so it counts as
 * "bytes"; every 1.31 build came after it.
 */
export function comparesRootSets(v: IstiodVersion | undefined): boolean {
  if (!v) return false;
  if (v.major !== SET_COMPARISON_SINCE.major) return v.major > SET_COMPARISON_SINCE.major;
  if (v.minor !== SET_COMPARISON_SINCE.minor) return v.minor > SET_COMPARISON_SINCE.minor;
  return v.prerelease === undefined;
}

/**
 * Asks istiod (ISTIOD_METRICS_URL) once whether it compares root bundles as sets. The answer is kept
 * once istiod's page was read (a container restart keeps its image, so the release cannot change under
 * a running agent); an istiod that does not answer is asked again next time, and meanwhile "false".
 */
export function istiodComparesSets(o: { url: string | undefined; fetchText: FetchText; log: Logger; timeoutMs?: number }): (signal?: AbortSignal) => Promise<boolean> {
  let known: boolean | undefined;
  return async (signal) => {
    if (known !== undefined) return known;
    if (!o.url) return false;
    const deadline = AbortSignal.timeout(o.timeoutMs ?? 5000);
    let page: string;
    try {
      page = await o.fetchText(o.url, signal ? AbortSignal.any([signal, deadline]) : deadline);
    } catch (err) {
      o.log.debug({ url: o.url, err }, "cannot read istiod's release from its metrics; the root switch keeps root-cert.pem's bytes");
      return false;
    }
    const v = parseIstiodVersion(page);
    known = comparesRootSets(v);
    o.log.info(
      { url: o.url, istiodVersion: v?.tag ?? 'unknown', comparesSets: known },
      known
        ? 'istiod compares root bundles as sets (Istio >= 1.30): at a root switch root-cert.pem lists the new root first, so istiod pushes the trust bundle and proxies re-issue'
        : `istiod ${v ? `${v.tag} compares root bundles byte by byte (Istio < 1.30)` : 'names no release in its metrics; treated as comparing root bundles byte by byte'}: at a root switch root-cert.pem keeps its bytes (workloads move to the new intermediate at their own renewal)`,
    );
    return known;
  };
}
