/**
 * Reading a rendered manifest for `check-manifest`: multi-document YAML or JSON (what `helm template`,
 * `istioctl manifest generate`, `kubectl kustomize` and `kubectl get -o yaml` print), `List` objects
 * flattened. The YAML parser is loaded only here, on demand, so `init`/`sidecar`/`run` never load it.
 */

/** The input cannot be read or parsed: `check-manifest` exits 2. */
export class ManifestInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ManifestInputError';
  }
}

export type KubeObject = Record<string, unknown>;

/**
 * Every Kubernetes object in `text`, in order; items of a `List` (any kind ending in `List`) take its
 * place. Throws ManifestInputError on a YAML error or when no object is found.
 */
export async function parseManifest(text: string, source: string): Promise<KubeObject[]> {
  const { parseAllDocuments } = await import('yaml');
  const out: KubeObject[] = [];
  const add = (v: unknown) => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) return;
    const o = v as KubeObject;
    if (typeof o.kind === 'string' && o.kind.endsWith('List') && Array.isArray(o.items)) o.items.forEach(add);
    else out.push(o);
  };
  for (const doc of parseAllDocuments(text, { uniqueKeys: false })) {
    if (doc.errors.length) {
      const e = doc.errors[0]!;
      throw new ManifestInputError(`while reading ${source}: not valid YAML: ${e.message.split('\n')[0]}`);
    }
    add(doc.toJS({ maxAliasCount: 1000 }));
  }
  if (out.length === 0) throw new ManifestInputError(`while reading ${source}: no Kubernetes object in it (expected the output of helm template, istioctl manifest generate or kubectl kustomize)`);
  return out;
}
