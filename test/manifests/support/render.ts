/**
 * Rendering helpers for the manifest tests: the istiod fixtures (real chart output, see
 * test/fixtures/istiod/README.md), kustomize builds with our components, and YAML document access.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';

const exec = promisify(execFile);

export const REPO = path.resolve(import.meta.dirname, '../../..');
export const KUSTOMIZE_DIR = path.join(REPO, 'manifests/kustomize');
export const HELM_DIR = path.join(REPO, 'manifests/helm');
export const POST_RENDERER = path.join(HELM_DIR, 'post-renderer.sh');
export const FIXTURES = path.resolve(REPO, 'test/fixtures/istiod');

export type Variant = 'classic' | 'native';
export type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export function fixture(name: string): string {
  return readFileSync(path.join(FIXTURES, name), 'utf8');
}

/** All non-empty documents of a multi-document YAML text, as plain objects. Throws on a YAML error. */
export function docs(text: string): Obj[] {
  const out: Obj[] = [];
  for (const d of YAML.parseAllDocuments(text)) {
    if (d.errors.length) throw new Error(`YAML error: ${d.errors[0]!.message}`);
    const js = d.toJS() as Obj | null;
    if (js && typeof js === 'object') out.push(js);
  }
  return out;
}

export function key(o: Obj): string {
  return `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
}

export function deployments(all: Obj[]): Obj[] {
  return all.filter((d) => d.kind === 'Deployment');
}

/**
 * A copy of the fixture whose istiod Deployment looks like a revisioned install (`istiod-<rev>`, rev
 * labels, as the chart renders `--set revision=<rev>`); all other documents are dropped.
 */
export function revisioned(text: string, rev: string): string {
  const dep = structuredClone(deployments(docs(text))[0]!);
  dep.metadata.name = `istiod-${rev}`;
  dep.metadata.labels['istio.io/rev'] = rev;
  dep.spec.selector.matchLabels = { app: 'istiod', 'istio.io/rev': rev };
  const podLabels = dep.spec.template.metadata.labels;
  podLabels['istio.io/rev'] = rev;
  podLabels.istio = 'istiod';
  dep.spec.template.spec.serviceAccountName = `istiod-${rev}`;
  const env = dep.spec.template.spec.containers[0].env as { name: string; value?: string }[];
  env.find((e) => e.name === 'REVISION')!.value = rev;
  return YAML.stringify(dep);
}

/**
 * Builds `input` with our component `variant` (a folder under manifests/kustomize: classic, native,
 * openshift/classic, openshift/native) through `kubectl kustomize`; returns the output YAML.
 */
export async function kustomize(input: string, variant: Variant | `openshift/${Variant}`): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-kustomize-'));
  try {
    await fs.writeFile(path.join(dir, 'istiod.yaml'), input);
    // kustomize accepts components outside the build root, but only by relative path.
    const component = path.relative(dir, path.join(KUSTOMIZE_DIR, variant));
    await fs.writeFile(
      path.join(dir, 'kustomization.yaml'),
      YAML.stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: ['istiod.yaml'], components: [component] }),
    );
    const { stdout } = await exec('kubectl', ['kustomize', dir], { maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
