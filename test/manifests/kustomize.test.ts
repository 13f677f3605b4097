/**
 * The kustomize components (manifests/kustomize/{classic,native}) applied with the real `kubectl
 * kustomize` to real istiod chart output: our containers, probes, security context and mounts are
 * there, `cacerts` is a memory emptyDir with no Secret left, discovery reads it read-only through an
 * absolute ROOT_CA_DIR, and every other document is byte-for-byte (deep-equal) what the chart rendered.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../../src/config/settings.js';
import { requireCommand } from '../helpers/tools.js';
import { checkAgentDeployment, checkOnlyIstiodChanged, KUSTOMIZE_EXPECT } from './support/agent-pod.js';
import { deployments, docs, fixture, KUSTOMIZE_DIR, kustomize, revisioned, type Variant } from './support/render.js';

const haveKubectl = requireCommand('kubectl', 'kubectl >= 1.27 (kustomize v5): apt-get install kubectl, or the kubernetes release binary');

const VARIANTS: Variant[] = ['classic', 'native'];
const CASES = VARIANTS.flatMap((v) => [
  [v, 'pilot_default.yaml'],
  [v, 'pilot_k8s_settings.yaml'],
]) as [Variant, string][];

describe.skipIf(!haveKubectl)('kustomize components on the istiod chart output', () => {
  it.each(CASES)('%s patches %s and changes nothing else', async (variant, file) => {
    const input = fixture(file);
    const out = docs(await kustomize(input, variant));
    const deps = deployments(out);
    expect(deps).toHaveLength(1);
    checkAgentDeployment(deps[0]!, KUSTOMIZE_EXPECT(variant));
    checkOnlyIstiodChanged(docs(input), out);
  });

  it('keeps the namespace and istiod\'s own env of the istio-control fixture', async () => {
    const input = docs(fixture('pilot_k8s_settings.yaml'));
    const dep = deployments(docs(await kustomize(fixture('pilot_k8s_settings.yaml'), 'native')))[0]!;
    expect(dep.metadata.namespace).toBe('istio-control');
    const env = dep.spec.template.spec.containers[0].env as { name: string }[];
    const original = deployments(input)[0]!.spec.template.spec.containers[0].env as { name: string }[];
    for (const e of original) expect(env).toContainEqual(e);
    expect(env.map((e) => e.name)).toEqual(expect.arrayContaining(['GODEBUG', 'NEW_VAR', 'ROOT_CA_DIR']));
  });

  it.each(VARIANTS)('%s applies to a revisioned istiod (istiod-canary) selected by label, not name', async (variant) => {
    const canary = revisioned(fixture('pilot_default.yaml'), 'canary');
    const out = docs(await kustomize(canary, variant));
    expect(out).toHaveLength(1);
    expect(out[0]!.metadata.name).toBe('istiod-canary');
    expect(out[0]!.spec.template.metadata.labels['istio.io/rev']).toBe('canary');
    checkAgentDeployment(out[0]!, KUSTOMIZE_EXPECT(variant));
    checkOnlyIstiodChanged(docs(canary), out);
  });

  it('patches every istiod revision of one render (default and canary side by side)', async () => {
    const both = `${fixture('pilot_default.yaml')}\n---\n${revisioned(fixture('pilot_default.yaml'), 'canary')}`;
    const out = docs(await kustomize(both, 'classic'));
    const deps = deployments(out);
    expect(deps.map((d) => d.metadata.name).sort()).toEqual(['istiod', 'istiod-canary']);
    for (const d of deps) checkAgentDeployment(d, KUSTOMIZE_EXPECT('classic'));
    checkOnlyIstiodChanged(docs(both), out);
  });

  it('leaves a Deployment that is not istiod alone', async () => {
    const other = [
      'apiVersion: apps/v1',
      'kind: Deployment',
      'metadata: {name: web, namespace: istio-system, labels: {app: web}}',
      'spec:',
      '  selector: {matchLabels: {app: web}}',
      '  template:',
      '    metadata: {labels: {app: web}}',
      '    spec:',
      '      containers: [{name: web, image: nginx}]',
      '      volumes: [{name: cacerts, secret: {secretName: cacerts}}]',
    ].join('\n');
    const input = `${fixture('pilot_k8s_settings.yaml')}\n---\n${other}\n`;
    const out = docs(await kustomize(input, 'native'));
    checkOnlyIstiodChanged(docs(input), out);
    expect(out.find((d) => d.metadata.name === 'web')).toEqual(docs(other)[0]);
  });

  it('builds the example overlay (examples/: rendered chart + native + ConfigMap + image override)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ivagent-example-'));
    try {
      cpSync(KUSTOMIZE_DIR, dir, { recursive: true });
      writeFileSync(path.join(dir, 'examples', 'istiod.yaml'), fixture('pilot_default.yaml'));
      const out = docs(execFileSync('kubectl', ['kustomize', path.join(dir, 'examples')], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }));
      const image = 'registry.example.com/mesh/istiod-vault-agent:0.1.0';
      checkAgentDeployment(deployments(out)[0]!, { ...KUSTOMIZE_EXPECT('native'), image });
      const cm = out.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'istiod-vault-agent')!;
      expect(cm.metadata.namespace).toBe('istio-system');
      expect(Object.keys(cm.data)).toEqual(expect.arrayContaining(['VAULT_ADDR', 'AUTH_METHOD', 'AUTH_MOUNT', 'AUTH_ROLE', 'PKI_SIGN_PATH', 'CLUSTER_NAME']));
      const known = SETTINGS.map((x) => x.env);
      for (const k of Object.keys(cm.data)) expect(known, `ConfigMap key ${k}`).toContain(k);
      // The ConfigMap must not set what the manifests own.
      expect(cm.data).not.toHaveProperty('CERT_DIR');
      expect(cm.data).not.toHaveProperty('SA_TOKEN_PATH');
      expect(cm.data).not.toHaveProperty('METRICS_ADDR');
      expect(cm.data).not.toHaveProperty('CERT_DNS_SANS');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
