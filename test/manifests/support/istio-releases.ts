/**
 * The real istio-discovery chart renders per Istio release (test/fixtures/istio-charts, see its README),
 * what each release's chart does with the values our values files use, the check every install path must
 * pass, and the real chart source of the Istio version istioctl is built from (Go module cache).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { checkManifest, type ManifestReport } from '../../../src/install/check-manifest.js';
import { IN_CI } from '../../helpers/tools.js';
import { deployments, docs, REPO, type Obj } from './render.js';

export const RELEASES = ['1.20.0', '1.22.0', '1.23.0', '1.24.0', '1.30.3'] as const;
export type Release = (typeof RELEASES)[number];
/** default: istiod in istio-system; canary: revision canary; ns: namespace mesh-cp; canaryns: both. */
export const RENDERS = ['default', 'canary', 'ns', 'canaryns'] as const;
export type Render = (typeof RENDERS)[number];
export const MATRIX = RELEASES.flatMap((r) => RENDERS.map((n) => [r, n] as [Release, Render]));

export const RENDER_FACTS: Record<Render, { name: string; namespace: string; serviceAccount: string }> = {
  default: { name: 'istiod', namespace: 'istio-system', serviceAccount: 'istiod' },
  canary: { name: 'istiod-canary', namespace: 'istio-system', serviceAccount: 'istiod-canary' },
  ns: { name: 'istiod', namespace: 'mesh-cp', serviceAccount: 'istiod' },
  canaryns: { name: 'istiod-canary', namespace: 'mesh-cp', serviceAccount: 'istiod-canary' },
};

export function chartRender(release: Release, render: Render): string {
  return readFileSync(path.join(REPO, 'test/fixtures/istio-charts', release, `${render}.yaml`), 'utf8');
}

/** `pilot.initContainers` (and so the values-file path) exists in the istiod chart from 1.24.0 on. */
export function chartHasInitContainers(release: Release): boolean {
  const [major, minor] = release.split('.').map(Number) as [number, number];
  return major > 1 || minor >= 24;
}

/**
 * What the istiod chart of `release` renders for `pilot.env`, `pilot.volumes`, `pilot.volumeMounts` and
 * `pilot.initContainers` (templates/deployment.yaml): env appended to discovery's as name/value strings,
 * volumes to the pod's, volumeMounts to discovery's, initContainers to the pod (1.24.0 on; older charts
 * have no such value and render nothing for it, without an error).
 */
export function applyChartValues(rendered: string, values: Obj, release: Release): Obj[] {
  const all = docs(rendered);
  const dep = deployments(all)[0]!;
  const pod = dep.spec.template.spec;
  const p = values.pilot as Obj;
  if (p.initContainers && chartHasInitContainers(release)) pod.initContainers = [...(pod.initContainers ?? []), ...structuredClone(p.initContainers)];
  pod.volumes.push(...structuredClone(p.volumes ?? []));
  const discovery = (pod.containers as Obj[]).find((c) => c.name === 'discovery')!;
  discovery.volumeMounts.push(...structuredClone(p.volumeMounts ?? []));
  for (const [name, value] of Object.entries((p.env ?? {}) as Record<string, unknown>)) discovery.env.push({ name, value: String(value) });
  return all;
}

/** check-manifest over `objects`: asserts it is sound, naming every istiod of the render. */
export function expectSound(objects: Obj[], render: Render): ManifestReport {
  const r = checkManifest(objects, { audience: 'vault' });
  expect(r.problems).toEqual([]);
  const f = RENDER_FACTS[render];
  expect(r.sound.map((l) => l.slice(0, l.indexOf(': ok')))).toEqual([`${f.namespace}/Deployment ${f.name}`]);
  return r;
}

/** The Istio source istioctl is built from (tools/istio/go.mod pins it); its charts are the real master charts. */
export const ISTIO_MODULE = `istio.io/istio@${/^\s*istio\.io\/istio (v\S+)$/m.exec(readFileSync(path.join(REPO, 'tools/istio/go.mod'), 'utf8'))![1]}`;

/**
 * Folder of the real istio-discovery chart at ISTIO_MODULE (downloaded into the Go module cache through
 * the module proxy when missing). '' to skip when Go is unavailable; throws under CI.
 */
export function istioDiscoveryChart(): string {
  const r = spawnSync('go', ['mod', 'download', '-json', ISTIO_MODULE], { encoding: 'utf8', cwd: '/', env: { ...process.env, GOFLAGS: '-mod=mod' }, maxBuffer: 8 * 1024 * 1024, timeout: 600_000 });
  if (r.status === 0) {
    const dir = (JSON.parse(r.stdout) as { Dir?: string }).Dir;
    if (dir) return path.join(dir, 'manifests/charts/istio-control/istio-discovery');
  }
  const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' ');
  if (IN_CI) throw new Error(`cannot download ${ISTIO_MODULE} (needs go and the module proxy): ${why}`);
  console.warn(`skipping the real istiod chart: cannot download ${ISTIO_MODULE}: ${why}`);
  return '';
}
