/**
 * The istiod chart values files in manifests/helm. The real istiod chart cannot be fetched here, so
 * values-native-sidecar.yaml is checked structurally against what the chart does with these keys
 * (read from istio/istio manifests/charts/istio-control/istio-discovery: templates/deployment.yaml and
 * values.schema.json; zzy_descope_legacy.yaml copies `pilot.*` to the top level):
 *   - `initContainers`: rendered into the pod with `tpl (toYaml .) $` (so no `{{` may appear);
 *   - `volumes`: appended to the pod's volumes; `volumeMounts`: appended to `discovery`'s mounts;
 *   - `env`: a map, appended to `discovery`'s env as `- name: K, value: "V"`.
 * The same edits are applied to the real chart output (the fixture) and the result must satisfy every
 * check the kustomize variants pass; then a small chart of ours renders the file with helm's own
 * toYaml/tpl to prove it survives templating.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { requireCommand } from '../helpers/tools.js';
import { checkAgentDeployment, checkOnlyIstiodChanged, type Expect } from './support/agent-pod.js';
import { requireHelm } from './support/helm.js';
import { deployments, docs, fixture, HELM_DIR, kustomize, type Obj } from './support/render.js';

const native = YAML.parse(readFileSync(path.join(HELM_DIR, 'values-native-sidecar.yaml'), 'utf8')) as Obj;
const postRenderer = YAML.parse(readFileSync(path.join(HELM_DIR, 'values-postrenderer.yaml'), 'utf8')) as Obj;
const CHART_KEYS = ['env', 'volumes', 'volumeMounts', 'initContainers'];

const certDir = native.pilot.env.ROOT_CA_DIR as string;
const VALUES_EXPECT: Expect = { variant: 'native', cacertsVolume: 'istiod-vault-agent-cacerts', agentCertDir: certDir, istiodCertDir: certDir };

/** What the istiod chart does with these values, applied to the chart's real output. */
function applyChartValues(rendered: string, values: Obj): Obj[] {
  const all = docs(rendered);
  const dep = deployments(all)[0]!;
  const pod = dep.spec.template.spec;
  const p = values.pilot as Obj;
  if (p.initContainers) pod.initContainers = [...(pod.initContainers ?? []), ...structuredClone(p.initContainers)];
  pod.volumes.push(...structuredClone(p.volumes ?? []));
  const discovery = (pod.containers as Obj[]).find((c) => c.name === 'discovery')!;
  discovery.volumeMounts.push(...structuredClone(p.volumeMounts ?? []));
  for (const [name, value] of Object.entries((p.env ?? {}) as Record<string, unknown>)) discovery.env.push({ name, value: String(value) });
  return all;
}

describe('values-native-sidecar.yaml (no post-renderer)', () => {
  it('uses only the istiod chart\'s own keys, under pilot', () => {
    expect(Object.keys(native)).toEqual(['pilot']);
    expect(Object.keys(native.pilot).sort()).toEqual([...CHART_KEYS].sort());
    for (const v of Object.values(native.pilot.env)) expect(typeof v, 'chart env values are strings').toBe('string');
    // The chart passes initContainers through `tpl`.
    expect(JSON.stringify(native.pilot.initContainers)).not.toContain('{{');
  });

  it('keeps clear of the chart\'s own cacerts Secret volume and /etc/cacerts mount', () => {
    const names = (native.pilot.volumes as Obj[]).map((v) => v.name);
    expect(names).not.toContain('cacerts');
    expect(certDir).not.toBe('/etc/cacerts');
    expect((native.pilot.volumeMounts as Obj[]).map((m) => m.mountPath)).not.toContain('/etc/cacerts');
  });

  it.each(['pilot_default.yaml', 'pilot_k8s_settings.yaml'])('gives %s a complete native-sidecar agent', (file) => {
    const out = applyChartValues(fixture(file), native);
    const dep = deployments(out)[0]!;
    checkAgentDeployment(dep, VALUES_EXPECT);
    checkOnlyIstiodChanged(docs(fixture(file)), out);
    // The chart's Secret volume is still there (values cannot remove it), unused by istiod.
    expect(dep.spec.template.spec.volumes).toContainEqual({ name: 'cacerts', secret: { optional: true, secretName: 'cacerts' } });
  });

  it.skipIf(!requireCommand('kubectl', 'kubectl >= 1.27'))('declares the same agent container as the native kustomize component', async () => {
    const fromKustomize = (deployments(docs(await kustomize(fixture('pilot_default.yaml'), 'native')))[0]!.spec.template.spec.initContainers as Obj[])[0]!;
    const fromValues = structuredClone((native.pilot.initContainers as Obj[])[0]!);
    // Only the bundle's path and volume name differ.
    fromValues.env = (fromValues.env as Obj[]).map((e) => (e.name === 'CERT_DIR' ? { ...e, value: '/etc/cacerts' } : e));
    fromValues.volumeMounts = (fromValues.volumeMounts as Obj[]).map((m) => (m.name === 'istiod-vault-agent-cacerts' ? { name: 'cacerts', mountPath: '/etc/cacerts' } : m));
    expect(fromValues).toEqual(fromKustomize);
  });
});

describe('values-postrenderer.yaml', () => {
  it('sets only discovery env that the post-renderer patch sets to the same values', async () => {
    expect(Object.keys(postRenderer)).toEqual(['pilot']);
    expect(Object.keys(postRenderer.pilot)).toEqual(['env']);
    const patch = YAML.parse(readFileSync(path.resolve(HELM_DIR, '../kustomize/common/pod.yaml'), 'utf8')) as Obj;
    const patchEnv = Object.fromEntries((patch.spec.template.spec.containers[0].env as Obj[]).map((e) => [e.name, e.value]));
    expect(postRenderer.pilot.env).toEqual(patchEnv);
  });
});

const helm = requireHelm();

describe.skipIf(!helm)('values-native-sidecar.yaml through helm\'s templating', () => {
  it('renders with toYaml/tpl the way the istiod chart consumes these keys', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ivagent-values-'));
    try {
      mkdirSync(path.join(dir, 'templates'));
      writeFileSync(path.join(dir, 'Chart.yaml'), 'apiVersion: v2\nname: values-probe\nversion: 0.0.1\n');
      writeFileSync(path.join(dir, 'values.yaml'), 'env: {}\nvolumes: []\nvolumeMounts: []\ninitContainers: []\npilot: {}\n');
      // Our own minimal template with the chart's four insertion points (not Istio's template).
      writeFileSync(
        path.join(dir, 'templates', 'pod.yaml'),
        [
          '{{- $_ := mustMergeOverwrite $.Values (index $.Values "pilot") }}',
          'apiVersion: v1',
          'kind: Pod',
          'metadata:',
          '  name: probe',
          'spec:',
          '{{- with .Values.initContainers }}',
          '  initContainers:',
          '    {{- tpl (toYaml .) $ | nindent 4 }}',
          '{{- end }}',
          '  containers:',
          '    - name: discovery',
          '      image: pilot',
          '      env:',
          '      {{- range $key, $val := .Values.env }}',
          '      - name: {{ $key }}',
          '        value: "{{ $val }}"',
          '      {{- end }}',
          '      volumeMounts:',
          '      {{- with .Values.volumeMounts }}',
          '        {{- toYaml . | nindent 6 }}',
          '      {{- end }}',
          '  volumes:',
          '  {{- with .Values.volumes }}',
          '    {{- toYaml . | nindent 2 }}',
          '  {{- end }}',
          '',
        ].join('\n'),
      );
      const res = spawnSync(helm, ['template', 'probe', dir, '-f', path.join(HELM_DIR, 'values-native-sidecar.yaml')], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '', HOME: dir, HELM_CACHE_HOME: path.join(dir, 'c'), HELM_CONFIG_HOME: path.join(dir, 'g'), HELM_DATA_HOME: path.join(dir, 'd') },
      });
      expect(res.status, res.stderr).toBe(0);
      const pod = docs(res.stdout)[0]!;
      expect(pod.spec.initContainers).toEqual(native.pilot.initContainers);
      expect(pod.spec.volumes).toEqual(native.pilot.volumes);
      expect(pod.spec.containers[0].volumeMounts).toEqual(native.pilot.volumeMounts);
      // `range` over a map visits keys in sorted order.
      const env = Object.entries(native.pilot.env as Record<string, string>).sort(([a], [b]) => a.localeCompare(b));
      expect(pod.spec.containers[0].env).toEqual(env.map(([name, value]) => ({ name, value })));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
