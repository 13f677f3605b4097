/**
 * The IstioOperator overlays (manifests/istioctl) through a real `istioctl manifest generate` (istioctl
 * built by scripts/go-tools.sh from the istio.io/istio that tools/istio pins; its charts are Istio master): classic and
 * native, for the default install, a revision (overlay renamed to istiod-<rev>, as the overlay's header
 * says), another namespace, and both. Each render passes check-manifest, carries the complete agent
 * wiring, and runs the very same agent containers and volumes as the kustomize component applied to the
 * same render without the overlay. An overlay left at `istiod` for a revision does nothing, and the
 * check then fails naming istiod-<rev>.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { checkManifest } from '../../src/install/check-manifest.js';
import { goTool } from '../helpers/go-tools.js';
import { requireCommand } from '../helpers/tools.js';
import { checkAgentDeployment, KUSTOMIZE_EXPECT } from './support/agent-pod.js';
import { expectSound, type Render } from './support/istio-releases.js';
import { deployments, docs, kustomize, REPO, type Obj, type Variant } from './support/render.js';

const istioctl = goTool('istioctl');
const haveKubectl = requireCommand('kubectl', 'kubectl >= 1.27 (kustomize v5)');
const OVERLAY = (v: Variant) => readFileSync(path.join(REPO, 'manifests/istioctl', `${v}.yaml`), 'utf8');

/** The user's IstioOperator for each install shape. */
const INSTALLS: Record<Render, { revision?: string; namespace?: string }> = {
  default: {},
  canary: { revision: 'canary' },
  ns: { namespace: 'mesh-cp' },
  canaryns: { revision: 'canary', namespace: 'mesh-cp' },
};

describe.skipIf(!istioctl)('istioctl manifest generate with the IstioOperator overlays', () => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'ivagent-istioctl-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  function operator(render: Render): string {
    const { revision, namespace } = INSTALLS[render];
    const spec: Obj = {};
    if (revision) spec.revision = revision;
    if (namespace) spec.values = { global: { istioNamespace: namespace } };
    const file = path.join(work, `operator-${render}.yaml`);
    writeFileSync(file, YAML.stringify({ apiVersion: 'install.istio.io/v1alpha1', kind: 'IstioOperator', spec }));
    return file;
  }

  /** The overlay file as a user would adapt it for `render` (renamed to istiod-<rev> with a revision, when `rename`). */
  function overlay(variant: Variant, render: Render, rename = true): string {
    const rev = INSTALLS[render].revision;
    let text = OVERLAY(variant);
    if (rev && rename) {
      // Exactly the command docs/install/istioctl.md gives for a revision.
      const doc = readFileSync(path.join(REPO, 'docs/install/istioctl.md'), 'utf8');
      const script = /^sed '([^']+)' manifests\/istioctl\/native\.yaml > native-canary\.yaml$/m.exec(doc)![1]!.replace(/canary/g, rev);
      const res = spawnSync('sed', [script], { input: text, encoding: 'utf8' });
      expect(res.status, res.stderr).toBe(0);
      expect(res.stdout).not.toBe(text);
      text = res.stdout;
    }
    const file = path.join(work, `${variant}-${render}-${rename}.yaml`);
    writeFileSync(file, text);
    return file;
  }

  function generate(files: string[]): Obj[] {
    const res = spawnSync(istioctl, ['manifest', 'generate', ...files.flatMap((f) => ['-f', f])], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, cwd: work, env: { PATH: process.env.PATH ?? '', HOME: work } });
    expect(res.status, res.stderr).toBe(0);
    return docs(res.stdout);
  }

  const istiodOf = (all: Obj[]) => deployments(all).filter((d) => d.metadata.labels?.app === 'istiod');

  const CASES = (['classic', 'native'] as Variant[]).flatMap((v) => (Object.keys(INSTALLS) as Render[]).map((r) => [v, r] as const));

  it.each(CASES)('%s overlay, %s install: sound, and the same agent as the kustomize component', async (variant, render) => {
    const out = generate([operator(render), overlay(variant, render)]);
    const istiod = istiodOf(out);
    expect(istiod).toHaveLength(1);
    expectSound(istiod, render);
    const dep = istiod[0]!;
    checkAgentDeployment(dep, KUSTOMIZE_EXPECT(variant));

    // One source of truth: the kustomize component on the same render without the overlay.
    if (!haveKubectl) return;
    const plain = istiodOf(generate([operator(render)]));
    const viaKustomize = deployments(docs(await kustomize(YAML.stringify(plain[0]), variant)))[0]!;
    const agentParts = (d: Obj) => {
      const pod = d.spec.template.spec;
      const ours = (c: Obj) => String(c.name).startsWith('istiod-vault-agent');
      const byName = (a: Obj, b: Obj) => String(a.name).localeCompare(String(b.name));
      const env = Object.fromEntries(((pod.containers as Obj[]).find((c) => c.name === 'discovery')!.env as Obj[]).map((e) => [e.name, e]));
      return {
        containers: (pod.containers as Obj[]).filter(ours),
        initContainers: ((pod.initContainers ?? []) as Obj[]).filter(ours),
        volumes: [...(pod.volumes as Obj[])].sort(byName),
        discoveryEnv: { ROOT_CA_DIR: env.ROOT_CA_DIR, AUTO_RELOAD_PLUGIN_CERTS: env.AUTO_RELOAD_PLUGIN_CERTS },
        annotation: d.spec.template.metadata.annotations['kubectl.kubernetes.io/default-container'],
      };
    };
    expect(agentParts(dep)).toEqual(agentParts(viaKustomize));
  });

  it.each(['classic', 'native'] as Variant[])('%s overlay left at "istiod" for revision canary does nothing, and the check fails', (variant) => {
    const out = generate([operator('canary'), overlay(variant, 'canary', false)]);
    const r = checkManifest(out, { audience: 'vault' });
    expect(r.ok).toBe(false);
    expect(r.problems.length).toBeGreaterThan(0);
    for (const p of r.problems) expect(p).toMatch(/^istio-system\/Deployment istiod-canary: /);
    expect(r.problems.join('\n')).toMatch(/still the cacerts Secret/);
    expect(r.problems.join('\n')).toMatch(/an IstioOperator overlay matches by exact name, and with a revision the Deployment is istiod-<rev>/);
    // k8s.env followed the revision; the overlay did not.
    const dep = istiodOf(out)[0]!;
    expect((dep.spec.template.spec.initContainers ?? []) as Obj[]).toEqual([]);
  });
});
