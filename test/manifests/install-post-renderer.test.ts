/**
 * manifests/helm/post-renderer.sh on every Istio release we have real chart output for (default install,
 * revision, another namespace, both), classic and native, and the OpenShift variants: the output passes
 * check-manifest and changes only istiod. The script runs check-manifest itself and fails the render
 * loudly when it does not pass; how it finds the agent's CLI (PATH, IVA_AGENT_CLI, the repository's
 * bundle) and that a missing CLI is an error unless IVA_CHECK=off.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { BUNDLE } from '../helpers/agent-process.js';
import { requireCommand } from '../helpers/tools.js';
import { checkAgentDeployment, checkOnlyIstiodChanged, KUSTOMIZE_EXPECT } from './support/agent-pod.js';
import { chartRender, expectSound, MATRIX, RELEASES } from './support/istio-releases.js';
import { deployments, docs, POST_RENDERER, REPO, type Variant } from './support/render.js';

const haveKubectl = requireCommand('kubectl', 'kubectl >= 1.27 (kustomize v5)');
/** PATH without any istiod-vault-agent binary: the script then uses the repository's dist bundle. */
const PATH = process.env.PATH ?? '/usr/bin:/bin';

function postRender(input: string, args: string[], env: Record<string, string> = {}, script = POST_RENDERER): SpawnSyncReturns<string> {
  return spawnSync(script, args, { input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { PATH, HOME: os.tmpdir(), ...env } });
}

const CASES = [
  ...MATRIX.flatMap(([rel, r]) => (['classic', 'native'] as Variant[]).map((v) => [rel, r, v, ''] as const)),
  ...RELEASES.flatMap((rel) => (['classic', 'native'] as Variant[]).map((v) => [rel, 'canaryns', v, 'openshift'] as const)),
];

describe.skipIf(!haveKubectl)('post-renderer on every release', () => {
  it.each(CASES)('%s %s, %s %s', (release, render, variant, platform) => {
    const input = chartRender(release, render);
    const res = postRender(input, platform ? [variant, platform] : [variant]);
    expect(res.status, res.stderr).toBe(0);
    expect(res.stderr).toBe('');
    const out = docs(res.stdout);
    expectSound(out, render);
    checkAgentDeployment(deployments(out)[0]!, { ...KUSTOMIZE_EXPECT(variant), anyUid: platform === 'openshift' });
    checkOnlyIstiodChanged(docs(input), out);
  });
});

describe.skipIf(!haveKubectl)('post-renderer: the check-manifest step', () => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'ivagent-postcheck-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** istiod whose pod runs as UID 1000650000 (a hardened chart values file, or the platform's range). */
  function fixedPodUid(): string {
    const all = docs(chartRender('1.30.3', 'default'));
    deployments(all)[0]!.spec.template.spec.securityContext = { runAsUser: 1000650000, runAsNonRoot: true };
    return all.map((d) => YAML.stringify(d)).join('---\n');
  }

  it('fails the render loudly when the patched istiod fails the check (agent and istiod under different UIDs)', () => {
    const res = postRender(fixedPodUid(), ['classic']);
    expect(res.status).not.toBe(0);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(/istio-system\/Deployment istiod: istiod-vault-agent-init runs as UID 1337, discovery as 1000650000: istiod cannot read ca-key\.pem/);
    expect(res.stderr).toMatch(/the patched manifest fails istiod-vault-agent check-manifest \(see above\); nothing was rendered/);
  });

  it('the OpenShift variant (no fixed UIDs) renders that same istiod', () => {
    const res = postRender(fixedPodUid(), ['classic', 'openshift']);
    expect(res.status, res.stderr).toBe(0);
    checkAgentDeployment(deployments(docs(res.stdout))[0]!, { ...KUSTOMIZE_EXPECT('classic'), anyUid: true });
  });

  it('runs the CLI named by IVA_AGENT_CLI', () => {
    const log = path.join(work, 'cli-called');
    const wrapper = path.join(work, 'agent-cli');
    writeFileSync(wrapper, `#!/bin/sh\necho "$@" > ${log}\nexec "${process.execPath}" "${BUNDLE}" "$@"\n`);
    chmodSync(wrapper, 0o755);
    const res = postRender(chartRender('1.24.0', 'ns'), ['native'], { IVA_AGENT_CLI: wrapper });
    expect(res.status, res.stderr).toBe(0);
    expect(readFileSync(log, 'utf8').trim()).toBe('check-manifest -');
  });

  it('refuses to render without the agent\'s CLI, unless IVA_CHECK=off', () => {
    // A copy of manifests/ with no dist/ bundle beside it, and no istiod-vault-agent on PATH.
    const copy = path.join(work, 'repo');
    mkdirSync(copy);
    cpSync(path.join(REPO, 'manifests'), path.join(copy, 'manifests'), { recursive: true });
    const script = path.join(copy, 'manifests/helm/post-renderer.sh');
    const input = chartRender('1.24.0', 'default');
    const refused = postRender(input, ['native'], {}, script);
    expect(refused.status).not.toBe(0);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/cannot check the patched manifest: put istiod-vault-agent on PATH, set IVA_AGENT_CLI .* or IVA_CHECK=off/);
    const unchecked = postRender(input, ['native'], { IVA_CHECK: 'off' }, script);
    expect(unchecked.status, unchecked.stderr).toBe(0);
    expectSound(docs(unchecked.stdout), 'default');
  });

  it('rejects an unknown platform', () => {
    const res = postRender(chartRender('1.24.0', 'default'), ['native', 'gke']);
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(/IVA_PLATFORM must be empty or openshift \(got "gke"\)/);
  });
});
