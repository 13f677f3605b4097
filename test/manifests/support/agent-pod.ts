/**
 * What a patched istiod Deployment must look like, whichever way it was produced (kustomize component,
 * Helm post-renderer, or the chart's own values), and the check that nothing else changed.
 */
import path from 'node:path';
import { expect } from 'vitest';
import pkg from '../../../package.json' with { type: 'json' };
import { SETTINGS } from '../../../src/config/settings.js';
import { deployments, key, type Obj, type Variant } from './render.js';

export const AGENT_IMAGE = `istiod-vault-agent:${pkg.version}`;
export const CONFIGMAP = 'istiod-vault-agent';
export const TOKEN_VOLUME = 'istiod-vault-agent-token';
export const METRICS_PORT = 15099;

export const SECURITY_CONTEXT = {
  runAsUser: 1337,
  runAsGroup: 1337,
  runAsNonRoot: true,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

/** Environment entries of our containers that are not agent settings: the downward API, for CERT_DNS_SANS. */
export const DOWNWARD_ENV = {
  POD_NAMESPACE: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
  POD_SERVICE_ACCOUNT: { fieldRef: { apiVersion: 'v1', fieldPath: 'spec.serviceAccountName' } },
};
/** istiod's Service is named like its service account (istiod, istiod-<rev>), in istiod's namespace. */
export const CERT_DNS_SANS = '$(POD_SERVICE_ACCOUNT).$(POD_NAMESPACE).svc';
export const VAULT_CA = { volume: 'istiod-vault-agent-vault-ca', configMap: 'istiod-vault-agent-vault-ca', mountPath: '/var/run/secrets/istiod-vault-agent/vault-ca' };
export const APPROLE = { volume: 'istiod-vault-agent-approle', secret: 'istiod-vault-agent-approle', mountPath: '/var/run/secrets/istiod-vault-agent/approle' };

export interface Expect {
  variant: Variant;
  /** No fixed runAsUser/runAsGroup (the platform assigns one UID to the pod). */
  anyUid?: boolean;
  /** Name of the memory emptyDir holding the bundle. */
  cacertsVolume: string;
  /** Where our containers mount it (their CERT_DIR). */
  agentCertDir: string;
  /** Where discovery mounts it (its ROOT_CA_DIR). */
  istiodCertDir: string;
  image?: string;
}

export const KUSTOMIZE_EXPECT = (variant: Variant): Expect => ({ variant, cacertsVolume: 'cacerts', agentCertDir: '/etc/cacerts', istiodCertDir: '/etc/cacerts' });

function byName<T extends { name: string }>(list: T[] | undefined, name: string): T | undefined {
  return (list ?? []).find((x) => x.name === name);
}

function envOf(c: Obj): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const e of (c.env ?? []) as Obj[]) {
    expect(env, `${c.name}: env ${e.name} appears twice`).not.toHaveProperty(e.name);
    env[e.name] = e.value;
  }
  return env;
}

function probe(p: Obj | undefined, pathName: string): void {
  expect(p, `probe on ${pathName}`).toBeDefined();
  expect(p!.httpGet).toEqual({ path: pathName, port: METRICS_PORT });
}

function checkAgentContainer(c: Obj, e: Expect, tokenMountPath: string): void {
  expect(c.image).toBe(e.image ?? AGENT_IMAGE);
  expect(c.command, 'the image ENTRYPOINT runs the agent; only args are set').toBeUndefined();
  expect(c.envFrom).toEqual([{ configMapRef: { name: CONFIGMAP } }]);
  const env = envOf(c);
  for (const name of Object.keys(env)) expect([...SETTINGS.map((s) => s.env), ...Object.keys(DOWNWARD_ENV)], `${c.name}: env ${name} is an agent setting`).toContain(name);
  expect(env.CERT_DIR).toBe(e.agentCertDir);
  expect(env.SA_TOKEN_PATH).toBe(path.posix.join(tokenMountPath, 'token'));
  // CERT_DNS_SANS from the downward API, its parts defined before it (Kubernetes expands $(VAR) only then).
  const names = (c.env as Obj[]).map((x) => x.name as string);
  expect(env.CERT_DNS_SANS).toBe(CERT_DNS_SANS);
  for (const [name, valueFrom] of Object.entries(DOWNWARD_ENV)) {
    expect((c.env as Obj[]).find((x) => x.name === name), `${c.name}: ${name}`).toEqual({ name, valueFrom });
    expect(names.indexOf(name)).toBeLessThan(names.indexOf('CERT_DNS_SANS'));
  }
  const { runAsUser: _u, runAsGroup: _g, ...anyUid } = SECURITY_CONTEXT;
  expect(c.securityContext).toEqual(e.anyUid ? anyUid : SECURITY_CONTEXT);
  expect(c.resources?.requests?.cpu).toBeDefined();
  expect(c.resources?.requests?.memory).toBeDefined();
  expect(c.resources?.limits?.memory).toBeDefined();
  const mounts = c.volumeMounts as Obj[];
  const certMount = mounts.find((m) => m.name === e.cacertsVolume);
  expect(certMount, `${c.name} mounts ${e.cacertsVolume}`).toBeDefined();
  expect(certMount!.mountPath).toBe(e.agentCertDir);
  expect(certMount!.readOnly ?? false, 'our containers write the bundle').toBe(false);
  expect(mounts.find((m) => m.name === TOKEN_VOLUME)).toEqual({ name: TOKEN_VOLUME, mountPath: tokenMountPath, readOnly: true });
  expect(mounts.find((m) => m.name === VAULT_CA.volume)).toEqual({ name: VAULT_CA.volume, mountPath: VAULT_CA.mountPath, readOnly: true });
  expect(mounts.find((m) => m.name === APPROLE.volume)).toEqual({ name: APPROLE.volume, mountPath: APPROLE.mountPath, readOnly: true });
  expect(c.readinessProbe, `${c.name}: a readinessProbe would take istiod out of its Service with the agent`).toBeUndefined();
}

/** Asserts every property of the agent wiring on one patched istiod Deployment. */
export function checkAgentDeployment(dep: Obj, e: Expect): void {
  const pod = dep.spec.template.spec as Obj;
  const volumes = pod.volumes as Obj[];
  const containers = pod.containers as Obj[];
  const inits = (pod.initContainers ?? []) as Obj[];

  // Names are unique and every mount refers to an existing volume (the API server would reject it).
  const volNames = volumes.map((v) => v.name as string);
  expect(new Set(volNames).size).toBe(volNames.length);
  const cNames = [...containers, ...inits].map((c) => c.name as string);
  expect(new Set(cNames).size).toBe(cNames.length);
  for (const c of [...containers, ...inits]) {
    for (const m of (c.volumeMounts ?? []) as Obj[]) expect(volNames, `${c.name} mounts ${m.name}`).toContain(m.name);
    const paths = ((c.volumeMounts ?? []) as Obj[]).map((m) => m.mountPath as string);
    expect(new Set(paths).size, `${c.name}: duplicate mountPath`).toBe(paths.length);
  }

  // The bundle lives in memory only: an emptyDir and nothing else (no Secret source left behind).
  const cacerts = byName(volumes as { name: string }[], e.cacertsVolume) as Obj;
  expect(Object.keys(cacerts).sort()).toEqual(['emptyDir', 'name']);
  expect(cacerts.emptyDir.medium).toBe('Memory');
  expect(cacerts.emptyDir.sizeLimit).toMatch(/^\d+(Ki|Mi)$/);

  // Projected token for Vault: audience vault, short-lived.
  const token = byName(volumes as { name: string }[], TOKEN_VOLUME) as Obj;
  expect(token.projected.sources).toHaveLength(1);
  const sat = token.projected.sources[0].serviceAccountToken;
  expect(sat.audience).toBe('vault');
  expect(sat.expirationSeconds).toBeGreaterThanOrEqual(600);
  expect(sat.expirationSeconds).toBeLessThanOrEqual(3600);
  expect(sat.path).toBe('token');

  // Optional inputs: Vault's CA (ConfigMap) and the AppRole secret-id (Secret); the pod starts without them.
  expect(byName(volumes as { name: string }[], VAULT_CA.volume)).toEqual({ name: VAULT_CA.volume, configMap: { name: VAULT_CA.configMap, optional: true } });
  expect(byName(volumes as { name: string }[], APPROLE.volume)).toEqual({ name: APPROLE.volume, secret: { secretName: APPROLE.secret, optional: true } });

  // discovery: absolute ROOT_CA_DIR at our volume, mounted read-only.
  const discovery = byName(containers as { name: string }[], 'discovery') as Obj;
  expect(discovery).toBeDefined();
  const denv = envOf(discovery);
  expect(denv.ROOT_CA_DIR).toBe(e.istiodCertDir);
  expect(path.posix.isAbsolute(denv.ROOT_CA_DIR!)).toBe(true);
  expect(denv.AUTO_RELOAD_PLUGIN_CERTS).toBe('true');
  const dmount = (discovery.volumeMounts as Obj[]).find((m) => m.mountPath === e.istiodCertDir);
  expect(dmount).toEqual({ name: e.cacertsVolume, mountPath: e.istiodCertDir, readOnly: true });
  expect((discovery.volumeMounts as Obj[]).some((m) => m.name === TOKEN_VOLUME), 'discovery needs no Vault token').toBe(false);

  const agentContainers = [...containers, ...inits].filter((c) => String(c.name).startsWith('istiod-vault-agent'));
  if (e.variant === 'classic') {
    expect(agentContainers.map((c) => c.name).sort()).toEqual(['istiod-vault-agent', 'istiod-vault-agent-init']);
    const init = byName(inits as { name: string }[], 'istiod-vault-agent-init') as Obj;
    expect(init.args).toEqual(['init']);
    expect(init.restartPolicy).toBeUndefined();
    const side = byName(containers as { name: string }[], 'istiod-vault-agent') as Obj;
    expect(side.args).toEqual(['sidecar']);
    expect(containers[0]!.name, 'discovery stays the first (default) container').toBe('discovery');
    expect(side.ports).toEqual([{ name: 'agent-metrics', containerPort: METRICS_PORT, protocol: 'TCP' }]);
    probe(side.livenessProbe, '/healthz');
    expect(envOf(side).METRICS_ADDR, 'the probes need the metrics server on 15099').toBe(`:${METRICS_PORT}`);
    for (const c of [init, side]) checkAgentContainer(c, e, tokenMountOf(c));
  } else {
    expect(agentContainers.map((c) => c.name)).toEqual(['istiod-vault-agent']);
    const native = byName(inits as { name: string }[], 'istiod-vault-agent') as Obj;
    expect(native, 'the native sidecar is an init container').toBeDefined();
    expect(native.restartPolicy).toBe('Always');
    expect(native.args).toEqual(['run']);
    expect(native.ports).toEqual([{ name: 'agent-metrics', containerPort: METRICS_PORT, protocol: 'TCP' }]);
    probe(native.startupProbe, '/readyz');
    // The startupProbe must outlast INIT_TIMEOUT (5m by default): istiod waits for it.
    expect(native.startupProbe.periodSeconds * native.startupProbe.failureThreshold).toBeGreaterThanOrEqual(300);
    probe(native.livenessProbe, '/healthz');
    expect(envOf(native).METRICS_ADDR, 'the probes need the metrics server on 15099').toBe(`:${METRICS_PORT}`);
    checkAgentContainer(native, e, tokenMountOf(native));
  }
}

function tokenMountOf(c: Obj): string {
  const m = ((c.volumeMounts ?? []) as Obj[]).find((x) => x.name === TOKEN_VOLUME);
  expect(m, `${c.name} mounts the token`).toBeDefined();
  return m!.mountPath as string;
}

/** Sorts lists of named things (env, volumes, mounts, containers) so that order does not matter. */
function normalize(v: unknown): unknown {
  if (Array.isArray(v)) {
    const items = v.map(normalize);
    const sortKey = (x: unknown) => (x && typeof x === 'object' ? ((x as Obj).name ?? (x as Obj).mountPath) : undefined);
    if (items.every((x) => typeof sortKey(x) === 'string')) {
      return [...items].sort((a, b) => String(sortKey(a)).localeCompare(String(sortKey(b))) || String((a as Obj).mountPath).localeCompare(String((b as Obj).mountPath)));
    }
    return items;
  }
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  return v;
}

/** Undoes exactly what our patch adds, so the rest can be compared with the chart's original. */
function withoutAgent(patched: Obj, original: Obj): Obj {
  const d = structuredClone(patched);
  const pod = d.spec.template.spec;
  const ours = (c: Obj) => !String(c.name).startsWith('istiod-vault-agent');
  pod.containers = pod.containers.filter(ours);
  if (pod.initContainers) {
    pod.initContainers = pod.initContainers.filter(ours);
    if (!original.spec.template.spec.initContainers && pod.initContainers.length === 0) delete pod.initContainers;
  }
  const origVolumes = original.spec.template.spec.volumes as Obj[];
  pod.volumes = (pod.volumes as Obj[])
    .filter((v) => v.name !== TOKEN_VOLUME && !String(v.name).startsWith('istiod-vault-agent'))
    .map((v) => origVolumes.find((o) => o.name === v.name && v.name === 'cacerts') ?? v);
  const annotations = d.spec.template.metadata.annotations;
  if (annotations && !original.spec.template.metadata.annotations?.['kubectl.kubernetes.io/default-container']) {
    delete annotations['kubectl.kubernetes.io/default-container'];
  }
  const origDiscovery = (original.spec.template.spec.containers as Obj[]).find((c) => c.name === 'discovery')!;
  const discovery = (pod.containers as Obj[]).find((c) => c.name === 'discovery')!;
  const had = new Set(((origDiscovery.env ?? []) as Obj[]).map((e) => e.name));
  discovery.env = (discovery.env as Obj[]).filter((e) => had.has(e.name) || !['ROOT_CA_DIR', 'AUTO_RELOAD_PLUGIN_CERTS'].includes(e.name));
  for (const e of discovery.env as Obj[]) {
    // A value the chart had for our two variables is overridden on purpose.
    if (['ROOT_CA_DIR', 'AUTO_RELOAD_PLUGIN_CERTS'].includes(e.name)) Object.assign(e, (origDiscovery.env as Obj[]).find((o) => o.name === e.name));
  }
  discovery.volumeMounts = (discovery.volumeMounts as Obj[]).filter((m) => !String(m.name).startsWith('istiod-vault-agent'));
  return d;
}

/**
 * Every input document comes out unchanged (deep-equal) except the istiod Deployments, which differ
 * only by the agent wiring; no document is added or lost.
 */
export function checkOnlyIstiodChanged(input: Obj[], output: Obj[]): void {
  expect(output.map(key).sort()).toEqual(input.map(key).sort());
  const outByKey = new Map(output.map((d) => [key(d), d]));
  for (const doc of input) {
    const out = outByKey.get(key(doc))!;
    if (doc.kind === 'Deployment' && doc.metadata?.labels?.app === 'istiod') {
      expect(out).not.toEqual(doc);
      expect(normalize(withoutAgent(out, doc))).toEqual(normalize(doc));
    } else {
      expect(out, key(doc)).toEqual(doc);
    }
  }
  expect(deployments(output).length).toBe(deployments(input).length);
}
