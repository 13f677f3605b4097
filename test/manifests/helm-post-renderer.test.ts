/**
 * manifests/helm/post-renderer.sh as Helm runs it: `helm template --post-renderer` on a tiny local
 * chart whose only template emits a real istiod chart output (the fixtures). Also the script's own
 * contract: it fails loudly (non-zero, message on stderr, nothing on stdout) and leaves no temp files.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs/promises';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireCommand } from '../helpers/tools.js';
import { checkAgentDeployment, checkOnlyIstiodChanged, KUSTOMIZE_EXPECT } from './support/agent-pod.js';
import { requireHelm } from './support/helm.js';
import { deployments, docs, fixture, POST_RENDERER, revisioned, type Variant } from './support/render.js';

const haveKubectl = requireCommand('kubectl', 'kubectl >= 1.27 (kustomize v5)');
const helm = haveKubectl ? requireHelm() : '';

let work = '';
/** TMPDIR for the post-renderer: must be empty again after every run. */
let scratch = '';

/** A chart named istiod whose template prints `manifest` verbatim (via .Files.Get: no templating). */
async function chartWith(name: string, manifest: string): Promise<string> {
  const dir = path.join(work, name);
  await fs.mkdir(path.join(dir, 'templates'), { recursive: true });
  await fs.mkdir(path.join(dir, 'files'), { recursive: true });
  await fs.writeFile(path.join(dir, 'Chart.yaml'), 'apiVersion: v2\nname: istiod\nversion: 1.0.0\nappVersion: 1.0.0\n');
  await fs.writeFile(path.join(dir, 'files', 'rendered.yaml'), manifest);
  await fs.writeFile(path.join(dir, 'templates', 'rendered.yaml'), '{{ .Files.Get "files/rendered.yaml" }}\n');
  return dir;
}

function run(cmd: string, args: string[], opts: { env?: Record<string, string>; input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    encoding: 'utf8',
    input: opts.input,
    maxBuffer: 64 * 1024 * 1024,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', TMPDIR: scratch, ...opts.env },
  });
}

function helmTemplate(chart: string, namespace: string, extra: string[] = [], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  return run(helm, ['template', 'istiod', chart, '--namespace', namespace, '--post-renderer', POST_RENDERER, ...extra], { env: { HELM_CACHE_HOME: path.join(work, 'cache'), HELM_CONFIG_HOME: path.join(work, 'config'), HELM_DATA_HOME: path.join(work, 'data'), ...env } });
}

function expectNoLeftovers(): void {
  expect(readdirSync(scratch), 'the post-renderer left temp files behind').toEqual([]);
}

describe.skipIf(!helm)('helm template --post-renderer', () => {
  beforeAll(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'ivagent-helm-'));
    scratch = mkdtempSync(path.join(os.tmpdir(), 'ivagent-helm-scratch-'));
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  it.each([
    ['classic', 'pilot_default.yaml', 'istio-system'],
    ['native', 'pilot_default.yaml', 'istio-system'],
    ['classic', 'pilot_k8s_settings.yaml', 'istio-control'],
    ['native', 'pilot_k8s_settings.yaml', 'istio-control'],
  ] as [Variant, string, string][])('%s variant through IVA_VARIANT on %s', async (variant, file, ns) => {
    const chart = await chartWith(`${variant}-${file}`, fixture(file));
    const res = helmTemplate(chart, ns, [], { IVA_VARIANT: variant });
    expect(res.status, res.stderr).toBe(0);
    const out = docs(res.stdout);
    checkAgentDeployment(deployments(out)[0]!, KUSTOMIZE_EXPECT(variant));
    checkOnlyIstiodChanged(docs(fixture(file)), out);
    expectNoLeftovers();
  });

  it('takes the variant from --post-renderer-args and patches a revisioned istiod', async () => {
    const canary = revisioned(fixture('pilot_default.yaml'), 'canary');
    const chart = await chartWith('canary', canary);
    const res = helmTemplate(chart, 'istio-system', ['--post-renderer-args', 'native']);
    expect(res.status, res.stderr).toBe(0);
    const out = docs(res.stdout);
    expect(out[0]!.metadata.name).toBe('istiod-canary');
    checkAgentDeployment(out[0]!, KUSTOMIZE_EXPECT('native'));
    checkOnlyIstiodChanged(docs(canary), out);
    expectNoLeftovers();
  });

  it.each([
    ['registry.example:5000/mesh/istiod-vault-agent:1.2.3', 'registry.example:5000/mesh/istiod-vault-agent:1.2.3'],
    [`registry.example/istiod-vault-agent@sha256:${'a'.repeat(64)}`, `registry.example/istiod-vault-agent@sha256:${'a'.repeat(64)}`],
  ])('IVA_IMAGE=%s sets the agent image', async (ref, expected) => {
    const chart = await chartWith(`image-${expected.length}`, fixture('pilot_k8s_settings.yaml'));
    const res = helmTemplate(chart, 'istio-control', [], { IVA_VARIANT: 'classic', IVA_IMAGE: ref });
    expect(res.status, res.stderr).toBe(0);
    const dep = deployments(docs(res.stdout))[0]!;
    checkAgentDeployment(dep, { ...KUSTOMIZE_EXPECT('classic'), image: expected });
    expect(dep.spec.template.spec.containers[0].image, 'istiod keeps its image').toBe('registry.istio.io/release/pilot:1.1.4');
  });

  it('fails the helm run when the chart has no istiod Deployment', async () => {
    const chart = await chartWith('not-istiod', 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: something\ndata:\n  a: b\n');
    const res = helmTemplate(chart, 'istio-system');
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(/no Deployment labelled app=istiod/);
    expectNoLeftovers();
  });

  describe('the script on its own', () => {
    it.each([
      ['empty input', '', {}, /empty input/],
      ['input kustomize cannot build', 'apiVersion: v1\nkind: ConfigMap\n', {}, /kustomize failed/],
      ['a failing kubectl', 'kind: Deployment\n', { KUBECTL: '/bin/false' }, /kustomize failed/],
      ['an unknown variant', 'kind: Deployment\n', { IVA_VARIANT: 'sidecarless' }, /IVA_VARIANT must be classic or native/],
    ] as [string, string, Record<string, string>, RegExp][])('fails loudly on %s and leaves no temp files', (_name, input, env, message) => {
      const res = run(POST_RENDERER, [], { input, env });
      expect(res.status).not.toBe(0);
      expect(res.stderr).toMatch(message);
      expect(res.stdout).toBe('');
      expectNoLeftovers();
    });

    it('refuses input that already carries the agent (values file and post-renderer together)', () => {
      const once = run(POST_RENDERER, ['native'], { input: fixture('pilot_k8s_settings.yaml') });
      expect(once.status, once.stderr).toBe(0);
      const twice = run(POST_RENDERER, ['native'], { input: once.stdout });
      expect(twice.status).not.toBe(0);
      expect(twice.stderr).toMatch(/already contains istiod-vault-agent/);
      expectNoLeftovers();
    });

    it('accepts `kubectl get deployment -o yaml` output (a List) for the plain-kubectl path', () => {
      const dep = deployments(docs(fixture('pilot_default.yaml')))[0]!;
      const list = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [dep] });
      const res = run(POST_RENDERER, ['classic'], { input: list });
      expect(res.status, res.stderr).toBe(0);
      const out = docs(res.stdout);
      expect(out).toHaveLength(1);
      checkAgentDeployment(out[0]!, KUSTOMIZE_EXPECT('classic'));
    });
  });
});
