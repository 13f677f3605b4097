/**
 * The kustomize components on every Istio release we have real chart output for (1.20.0 to 1.30.3;
 * default install, revision, another namespace, both): classic, native, and their OpenShift variants
 * without fixed UIDs. Each result passes check-manifest, carries the complete agent wiring, and differs
 * from the chart's output only in istiod's Deployment.
 */
import { describe, it } from 'vitest';
import { requireCommand } from '../helpers/tools.js';
import { checkAgentDeployment, checkOnlyIstiodChanged, KUSTOMIZE_EXPECT } from './support/agent-pod.js';
import { chartRender, expectSound, MATRIX } from './support/istio-releases.js';
import { deployments, docs, kustomize, type Variant } from './support/render.js';

const haveKubectl = requireCommand('kubectl', 'kubectl >= 1.27 (kustomize v5)');
const COMPONENTS = ['classic', 'native', 'openshift/classic', 'openshift/native'] as const;

describe.skipIf(!haveKubectl)('kustomize components on every release', () => {
  it.each(MATRIX.flatMap(([rel, r]) => COMPONENTS.map((c) => [rel, r, c] as const)))('%s %s with %s', async (release, render, component) => {
    const input = chartRender(release, render);
    const out = docs(await kustomize(input, component));
    expectSound(out, render);
    const variant = component.replace('openshift/', '') as Variant;
    checkAgentDeployment(deployments(out)[0]!, { ...KUSTOMIZE_EXPECT(variant), anyUid: component.startsWith('openshift/') });
    checkOnlyIstiodChanged(docs(input), out);
  });
});
