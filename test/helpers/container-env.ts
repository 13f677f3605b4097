/**
 * The environment Kubernetes gives a container, computed from its spec the way kubelet does: `envFrom`
 * ConfigMaps first, then `env` in order (a later entry wins); `valueFrom.fieldRef` from the pod's
 * metadata/spec; `$(VAR)` expanded from the variables defined before it (`$$` escapes, an undefined
 * reference stays as written). Lets tests run the agent with exactly what a manifest would give it.
 */
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface PodFacts {
  name?: string;
  namespace: string;
  serviceAccountName: string;
  labels?: Record<string, string>;
}

/** Kubernetes' $(VAR) expansion (k8s.io/kubernetes third_party/forked/golang/expansion). */
export function expandVars(value: string, defined: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name: string | undefined) => {
    if (all === '$$') return '$';
    return name !== undefined && name in defined ? defined[name]! : all;
  });
}

function fieldRef(path: string, pod: PodFacts): string {
  if (path === 'metadata.namespace') return pod.namespace;
  if (path === 'metadata.name') return pod.name ?? 'istiod-0';
  if (path === 'spec.serviceAccountName') return pod.serviceAccountName;
  const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
  if (label) return pod.labels?.[label[1]!] ?? '';
  throw new Error(`fieldRef ${path} is not supported by this test helper`);
}

/** The container's environment, given the ConfigMaps its envFrom names (by name) and the pod's facts. */
export function containerEnv(container: Obj, configMaps: Record<string, Record<string, string>>, pod: PodFacts): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of (container.envFrom ?? []) as Obj[]) {
    const name = from.configMapRef?.name as string | undefined;
    if (!name) throw new Error('only configMapRef envFrom is supported by this test helper');
    const data = configMaps[name];
    if (!data) throw new Error(`envFrom names ConfigMap ${name}, which the test did not provide (the pod would not start)`);
    Object.assign(env, data);
  }
  for (const e of (container.env ?? []) as Obj[]) {
    if (e.valueFrom) {
      if (!e.valueFrom.fieldRef) throw new Error(`${e.name}: only fieldRef is supported by this test helper`);
      env[e.name] = fieldRef(e.valueFrom.fieldRef.fieldPath, pod);
    } else {
      env[e.name] = expandVars(String(e.value ?? ''), env);
    }
  }
  return env;
}
