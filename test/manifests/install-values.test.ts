/**
 * The Helm values path (manifests/helm/values-native-sidecar{,-openshift}.yaml) on every Istio release we
 * have real chart output for: the chart's handling of these values is applied to each release's render
 * (1.20-1.23 drop initContainers without an error; 1.24 on keep them), and check-manifest must pass on
 * >= 1.24 and FAIL LOUDLY on < 1.24, naming the Deployment and the dropped initContainers. Then the real
 * istiod chart (Istio master, from the Go module cache) renders the values files with helm itself, for the
 * default install, a revision and another namespace, and the documented CI command
 * `helm template ... | istiod-vault-agent check-manifest -` exits 0 on it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { checkManifest } from '../../src/install/check-manifest.js';
import { BUNDLE } from '../helpers/agent-process.js';
import { AGENT_IMAGE, checkAgentDeployment, type Expect } from './support/agent-pod.js';
import { requireHelm } from './support/helm.js';
import { applyChartValues, chartHasInitContainers, chartRender, expectSound, istioDiscoveryChart, MATRIX, RENDER_FACTS, type Render } from './support/istio-releases.js';
import { deployments, docs, HELM_DIR, type Obj } from './support/render.js';

const FILES = { default: 'values-native-sidecar.yaml', openshift: 'values-native-sidecar-openshift.yaml' } as const;
const values = (f: keyof typeof FILES) => YAML.parse(readFileSync(path.join(HELM_DIR, FILES[f]), 'utf8')) as Obj;
const certDir = values('default').pilot.env.ROOT_CA_DIR as string;
const EXPECT = (anyUid: boolean): Expect => ({ variant: 'native', anyUid, cacertsVolume: 'istiod-vault-agent-cacerts', agentCertDir: certDir, istiodCertDir: certDir });

describe('values files on every release\'s chart output', () => {
  it.each(MATRIX.flatMap(([rel, r]) => (['default', 'openshift'] as const).map((f) => [rel, r, f] as const)))('%s %s with the %s values file', (release, render, file) => {
    const out = applyChartValues(chartRender(release, render), values(file), release);
    if (chartHasInitContainers(release)) {
      expectSound(out, render);
      checkAgentDeployment(deployments(out)[0]!, EXPECT(file === 'openshift'));
    } else {
      const r = checkManifest(out, { audience: 'vault' });
      const f = RENDER_FACTS[render];
      expect(r.ok).toBe(false);
      expect(r.problems).toEqual([
        `${f.namespace}/Deployment ${f.name}: ROOT_CA_DIR ${certDir} is set but no istiod-vault-agent container mounts volume istiod-vault-agent-cacerts: istiod finds an empty directory and falls back to its self-signed CA (the agent's volumes are there but its container is not: the istiod chart before Istio 1.24 silently drops pilot.initContainers, and the Sail Operator prunes them; use the post-renderer, kustomize or istioctl path)`,
      ]);
    }
  });

  it('fails the documented CI command (exit 1, the problem on stderr) on an Istio 1.23 render', () => {
    const out = applyChartValues(chartRender('1.23.0', 'canaryns'), values('default'), '1.23.0');
    const res = spawnSync(process.execPath, [BUNDLE, 'check-manifest', '-'], { input: out.map((d) => YAML.stringify(d)).join('---\n'), encoding: 'utf8' });
    expect(res.status).toBe(1);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(/^mesh-cp\/Deployment istiod-canary: ROOT_CA_DIR .* before Istio 1\.24 silently drops pilot\.initContainers/);
  });
});

const helm = requireHelm();
const chart = helm ? istioDiscoveryChart() : '';

describe.skipIf(!helm || !chart)('values files through the real istiod chart (Istio master)', () => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'ivagent-chart-'));
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  const INSTALLS: [Render, string[]][] = [
    ['default', ['istiod', '-n', 'istio-system']],
    ['canary', ['istiod-canary', '-n', 'istio-system', '--set', 'revision=canary']],
    ['ns', ['istiod', '-n', 'mesh-cp']],
    ['canaryns', ['istiod-canary', '-n', 'mesh-cp', '--set', 'revision=canary']],
  ];

  function template(args: string[]): string {
    const res = spawnSync(helm, ['template', ...args.slice(0, 1), chart, ...args.slice(1)], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      env: { PATH: process.env.PATH ?? '', HOME: home, HELM_CACHE_HOME: path.join(home, 'c'), HELM_CONFIG_HOME: path.join(home, 'g'), HELM_DATA_HOME: path.join(home, 'd') },
    });
    expect(res.status, res.stderr).toBe(0);
    return res.stdout;
  }

  it.each(INSTALLS.flatMap(([r, a]) => (['default', 'openshift'] as const).map((f) => [r, f, a] as const)))('%s install with the %s values file passes check-manifest', (render, file, args) => {
    const extra = file === 'openshift' ? ['--set', 'global.platform=openshift'] : [];
    const out = docs(template([...args, '-f', path.join(HELM_DIR, FILES[file]), ...extra]));
    expectSound(out, render);
    checkAgentDeployment(deployments(out)[0]!, EXPECT(file === 'openshift'));
  });

  it('without the values file the chart renders an istiod check-manifest refuses', () => {
    const out = docs(template(['istiod', '-n', 'istio-system']));
    const r = checkManifest(out, { audience: 'vault' });
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatch(/^istio-system\/Deployment istiod: no istiod-vault-agent and no ROOT_CA_DIR/);
  });

  it('`helm template ... | istiod-vault-agent check-manifest -` exits 0 and prints one ok line', () => {
    const rendered = template(['istiod-canary', '-n', 'mesh-cp', '--set', 'revision=canary', '-f', path.join(HELM_DIR, FILES.default)]);
    const res = spawnSync(process.execPath, [BUNDLE, 'check-manifest', '-'], { input: rendered, encoding: 'utf8' });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout.trim()).toBe(`mesh-cp/Deployment istiod-canary: ok (native sidecar, ${AGENT_IMAGE}, ROOT_CA_DIR ${certDir} on istiod-vault-agent-cacerts (emptyDir, Memory))`);
  });
});
