/**
 * Every install path, rendered by the real tools, applied to a real Kubernetes API server
 * (kube-apiserver + etcd from scripts/go-tools.sh; no nodes): `kubectl apply --server-side` of the
 * rendered ServiceAccount(s) and istiod Deployment(s), then the stored Deployment read back must keep
 * everything that was rendered (containers, init containers with restartPolicy, probes, volumes, env with
 * the downward API; the API server may add defaults and write quantities canonically, nothing may go
 * missing), and a Pod built from its template is admitted (namespace enforcing PodSecurity `baseline`; the
 * agent's own containers alone pass `restricted`). It stays Pending: there is no scheduler or kubelet.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { checkManifest } from '../../src/install/check-manifest.js';
import { goTool } from '../helpers/go-tools.js';
import { startKubeCluster, type KubeCluster } from '../helpers/kube-cluster.js';
import { requireCommand } from '../helpers/tools.js';
import { giveUp, waitFor } from '../helpers/wait.js';
import { requireHelm } from '../manifests/support/helm.js';
import { applyChartValues, chartRender, istioDiscoveryChart, type Release, type Render } from '../manifests/support/istio-releases.js';
import { deployments, docs, HELM_DIR, kustomize, POST_RENDERER, REPO, type Obj } from '../manifests/support/render.js';

const haveKube = goTool('kube-apiserver') !== '' && goTool('etcd') !== '';
const istioctl = goTool('istioctl');
const haveKubectl = requireCommand('kubectl', 'kubectl >= 1.27 (kustomize v5)');
const helm = requireHelm();

let cluster: KubeCluster | undefined;
const kube = () => cluster!;
const work = mkdtempSync(path.join(os.tmpdir(), 'ivagent-apply-'));
let createdPods = 0;

beforeAll(async () => {
  if (!haveKube) return;
  cluster = await startKubeCluster();
  for (const ns of ['istio-system', 'mesh-cp']) {
    await kube().kubectl('create', 'namespace', ns);
    // istiod's own container sets no seccompProfile, so `restricted` would refuse istiod itself.
    await kube().kubectl('label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=baseline');
  }
  await kube().kubectl('create', 'namespace', 'restricted-check');
  // No controller-manager: the namespace's default service account must be made by hand.
  await kube().kubectl('-n', 'restricted-check', 'create', 'serviceaccount', 'default');
  await kube().kubectl('label', 'namespace', 'restricted-check', 'pod-security.kubernetes.io/enforce=restricted');
}, 180_000);
afterAll(async () => {
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
}, 60_000);

/** Kubernetes quantities (100m, 96Mi, 2Gi, 0.5) as numbers, so that `2048Mi` equals the stored `2Gi`. */
function quantity(v: unknown): number | undefined {
  if (typeof v !== 'string' && typeof v !== 'number') return undefined;
  const m = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(v));
  if (!m) return undefined;
  const mult: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
  return Number(m[1]) * (m[2] ? mult[m[2]]! : 1);
}

/** Every field of `rendered` is in `stored` with the same value (lists element by element, same length); defaults may be added. */
function expectKept(rendered: unknown, stored: unknown, at: string): void {
  // The API omits zero values (omitempty): `value: ""` or `readOnly: false` come back absent, meaning the same.
  if (stored === undefined && (rendered === '' || rendered === false || (Array.isArray(rendered) && rendered.length === 0))) return;
  if (Array.isArray(rendered)) {
    expect(Array.isArray(stored), `${at}: a list`).toBe(true);
    expect((stored as unknown[]).length, `${at}: length`).toBe(rendered.length);
    rendered.forEach((r, i) => expectKept(r, (stored as unknown[])[i], `${at}[${(r as Obj)?.name ?? i}]`));
  } else if (rendered && typeof rendered === 'object') {
    expect(stored && typeof stored === 'object', `${at}: an object`).toBeTruthy();
    for (const [k, v] of Object.entries(rendered)) expectKept(v, (stored as Obj)[k], `${at}.${k}`);
  } else if (rendered !== (stored as unknown)) {
    const q = quantity(rendered);
    expect(q !== undefined && q === quantity(stored), `${at}: rendered ${String(rendered)}, stored ${String(stored)}`).toBe(true);
  }
}

interface Rendered {
  what: string;
  objects: Obj[];
}

/** Applies the ServiceAccounts and istiod Deployments of a render, checks them, creates a Pod of each, cleans up. */
async function applyAndCheck(r: Rendered): Promise<void> {
  expect(checkManifest(r.objects, { audience: 'vault' }).problems, r.what).toEqual([]);
  const istiods = deployments(r.objects).filter((d) => d.metadata.labels?.app === 'istiod');
  const sas = r.objects.filter((o) => o.kind === 'ServiceAccount');
  // The `ns` fixtures were rendered with `-n mesh-cp` but without `--set global.istioNamespace=mesh-cp`:
  // their ServiceAccount lands in istio-system. A real install sets both; here the pod's service account
  // is created where the pod needs it.
  for (const d of istiods) {
    const name = d.spec.template.spec.serviceAccountName as string;
    if (!sas.some((a) => a.metadata.name === name && a.metadata.namespace === d.metadata.namespace)) {
      sas.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: d.metadata.namespace } });
    }
  }
  const input = [...sas, ...istiods].map((o) => YAML.stringify(o)).join('---\n');
  const out = await kube().kubectlWithInput(input, 'apply', '--server-side', '--field-manager=istiod-vault-agent-test', '-f', '-');
  for (const d of istiods) expect(out).toContain(`deployment.apps/${d.metadata.name} serverside-applied`);
  try {
    for (const d of istiods) {
      const ns = d.metadata.namespace;
      const stored = JSON.parse(await kube().kubectl('-n', ns, 'get', 'deployment', d.metadata.name, '-o', 'json')) as Obj;
      expectKept(d.spec.template, stored.spec.template, `${r.what}: ${ns}/${d.metadata.name}.spec.template`);
      expectKept(d.spec.selector, stored.spec.selector, `${r.what}: selector`);

      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `istiod-${createdPods++}`, namespace: ns, labels: d.spec.template.metadata.labels, annotations: d.spec.template.metadata.annotations },
        spec: d.spec.template.spec,
      };
      const created = await createPod(pod);
      try {
        expect(created.status.phase, `${r.what}: a pod without a node`).toBe('Pending');
        // The ServiceAccount admission plugin adds the API-access token mount to every container.
        const withoutApiAccess = (cs: Obj[] = []) => cs.map((c) => ({ ...c, volumeMounts: ((c.volumeMounts ?? []) as Obj[]).filter((m) => !String(m.name).startsWith('kube-api-access-')) }));
        expectKept(d.spec.template.spec.initContainers ?? [], withoutApiAccess(created.spec.initContainers), `${r.what}: pod initContainers`);
        expectKept(d.spec.template.spec.containers, withoutApiAccess(created.spec.containers), `${r.what}: pod containers`);
      } finally {
        await kube().kubectl('-n', ns, 'delete', 'pod', pod.metadata.name, '--wait=false');
      }

      // The agent's containers alone pass PodSecurity `restricted` (the OpenShift variant too).
      const agentOnly = (list: Obj[] | undefined) => (list ?? []).filter((c) => String(c.name).startsWith('istiod-vault-agent'));
      const spec = d.spec.template.spec;
      const inits = agentOnly(spec.initContainers);
      const mains = agentOnly(spec.containers);
      const agentPod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `agent-${createdPods++}`, namespace: 'restricted-check' },
        spec: {
          securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
          initContainers: inits,
          // A native sidecar needs a main container beside it (a plain copy of the agent, no ports).
          containers: mains.length ? mains : [{ ...inits[0], name: 'main', restartPolicy: undefined, startupProbe: undefined, ports: undefined }],
          volumes: spec.volumes,
        },
      };
      await createPod(agentPod);
      await kube().kubectl('-n', 'restricted-check', 'delete', 'pod', agentPod.metadata.name, '--wait=false');
    }
  } finally {
    for (const d of istiods) await kube().kubectl('-n', d.metadata.namespace, 'delete', 'deployment', d.metadata.name, '--wait=false');
  }
}

/**
 * Creates a Pod; retries only while the ServiceAccount admission plugin does not see a just-applied
 * service account yet (it reads an informer cache), up to 15 s.
 */
async function createPod(pod: Obj): Promise<Obj> {
  return waitFor(async () => {
    try {
      return JSON.parse(await kube().kubectlWithInput(JSON.stringify(pod), 'create', '-f', '-', '-o', 'json')) as Obj;
    } catch (err) {
      if (!/error looking up service account/.test((err as Error).message)) giveUp(err as Error);
      throw err;
    }
  }, { what: `the pod ${String((pod.metadata as Obj | undefined)?.name)} to be created`, timeoutMs: 15_000, intervalMs: 200 });
}

const renderOf = (release: Release, render: Render) => chartRender(release, render);

function postRender(input: string, args: string[]): Obj[] {
  const res = spawnSync(POST_RENDERER, args, { input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { PATH: process.env.PATH ?? '', HOME: work } });
  expect(res.status, res.stderr).toBe(0);
  return docs(res.stdout);
}

function istioctlGenerate(overlay: string, render: Render): Obj[] {
  const spec: Obj = {};
  if (render.startsWith('canary')) spec.revision = 'canary';
  if (render.endsWith('ns')) spec.values = { global: { istioNamespace: 'mesh-cp' } };
  const op = path.join(work, `op-${render}.yaml`);
  writeFileSync(op, YAML.stringify({ apiVersion: 'install.istio.io/v1alpha1', kind: 'IstioOperator', spec }));
  let text = readFileSync(path.join(REPO, 'manifests/istioctl', overlay), 'utf8');
  if (spec.revision) text = text.replace(/^(\s+name: )istiod( #.*)$/m, '$1istiod-canary$2');
  const file = path.join(work, `${render}-${overlay}`);
  writeFileSync(file, text);
  const res = spawnSync(istioctl, ['manifest', 'generate', '-f', op, '-f', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, cwd: work, env: { PATH: process.env.PATH ?? '', HOME: work } });
  expect(res.status, res.stderr).toBe(0);
  return docs(res.stdout).filter((o) => o.kind === 'ServiceAccount' || (o.kind === 'Deployment' && o.metadata.labels?.app === 'istiod'));
}

describe.skipIf(!haveKube || !haveKubectl)('every install path applied to a real API server', () => {
  const KUSTOMIZE: [Release, Render, 'classic' | 'native' | 'openshift/classic' | 'openshift/native'][] = [
    ['1.20.0', 'default', 'classic'],
    ['1.20.0', 'canaryns', 'native'],
    ['1.23.0', 'ns', 'openshift/classic'],
    ['1.30.3', 'canaryns', 'classic'],
    ['1.30.3', 'default', 'native'],
    ['1.30.3', 'canary', 'openshift/native'],
  ];
  it.each(KUSTOMIZE)('kustomize on %s %s, %s', async (release, render, component) => {
    await applyAndCheck({ what: `kustomize ${component} ${release} ${render}`, objects: docs(await kustomize(renderOf(release, render), component)) });
  });

  it.each([
    ['1.22.0', 'canary', ['classic']],
    ['1.24.0', 'ns', ['native']],
    ['1.30.3', 'canaryns', ['native', 'openshift']],
  ] as [Release, Render, string[]][])('post-renderer on %s %s, %j', async (release, render, args) => {
    await applyAndCheck({ what: `post-renderer ${args.join(' ')} ${release} ${render}`, objects: postRender(renderOf(release, render), args) });
  });

  it.each([
    ['1.24.0', 'canaryns', 'values-native-sidecar.yaml'],
    ['1.30.3', 'default', 'values-native-sidecar-openshift.yaml'],
  ] as [Release, Render, string][])('values file on %s %s (the chart\'s handling of the values), %s', async (release, render, file) => {
    const values = YAML.parse(readFileSync(path.join(HELM_DIR, file), 'utf8')) as Obj;
    await applyAndCheck({ what: `values ${file} ${release} ${render}`, objects: applyChartValues(renderOf(release, render), values, release) });
  });

  const chart = helm ? istioDiscoveryChart() : '';
  it.skipIf(!chart)('values file through the real master chart (helm template), revision canary in mesh-cp', async () => {
    const res = spawnSync(helm, ['template', 'istiod-canary', chart, '-n', 'mesh-cp', '--set', 'revision=canary', '--set', 'global.istioNamespace=mesh-cp', '-f', path.join(HELM_DIR, 'values-native-sidecar.yaml')], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      env: { PATH: process.env.PATH ?? '', HOME: work, HELM_CACHE_HOME: path.join(work, 'hc'), HELM_CONFIG_HOME: path.join(work, 'hg'), HELM_DATA_HOME: path.join(work, 'hd') },
    });
    expect(res.status, res.stderr).toBe(0);
    await applyAndCheck({ what: 'values master chart canary mesh-cp', objects: docs(res.stdout) });
  });

  it.skipIf(!istioctl).each([
    ['classic.yaml', 'default'],
    ['native.yaml', 'canaryns'],
  ] as [string, Render][])('istioctl overlay %s, %s install', async (overlay, render) => {
    await applyAndCheck({ what: `istioctl ${overlay} ${render}`, objects: istioctlGenerate(overlay, render) });
  });

  it('an API server keeps the native sidecar\'s restartPolicy (an older one would drop it and hang the pod in Init)', async () => {
    const objects = docs(await kustomize(renderOf('1.30.3', 'default'), 'native'));
    const dep = deployments(objects)[0]!;
    await kube().kubectlWithInput([...objects.filter((o) => o.kind === 'ServiceAccount'), dep].map((o) => YAML.stringify(o)).join('---\n'), 'apply', '--server-side', '--field-manager=istiod-vault-agent-test', '-f', '-');
    try {
      const stored = JSON.parse(await kube().kubectl('-n', 'istio-system', 'get', 'deployment', 'istiod', '-o', 'json')) as Obj;
      const agent = (stored.spec.template.spec.initContainers as Obj[]).find((c) => c.name === 'istiod-vault-agent')!;
      expect(agent.restartPolicy).toBe('Always');
      expect(agent.startupProbe.httpGet).toMatchObject({ path: '/readyz', port: 15099 });
      expect(agent.readinessProbe).toBeUndefined();
    } finally {
      await kube().kubectl('-n', 'istio-system', 'delete', 'deployment', 'istiod', '--wait=false');
    }
  });
});
