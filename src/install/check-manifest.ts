/**
 * `check-manifest`: is every istiod in a rendered manifest wired to istiod-vault-agent so that istiod can
 * never silently fall back to its self-signed CA? The traps it catches are real install paths that render
 * without an error: the istiod chart before 1.24 drops `pilot.initContainers` but keeps the volumes and
 * ROOT_CA_DIR; the Sail Operator prunes initContainers; an IstioOperator overlay that names `istiod` does
 * nothing to `istiod-<rev>`. Pure: objects in, lines out.
 */
import path from 'node:path';
import { SETTINGS } from '../config/settings.js';
import type { KubeObject } from './manifest-input.js';

/** The projected-token audience a Vault kubernetes/jwt role created by setup.sh expects. */
export const DEFAULT_TOKEN_AUDIENCE = 'vault';
const ISTIOD_CONTAINER = 'discovery';
const AGENT_COMMANDS = new Set(['init', 'sidecar', 'run']);

export interface CheckManifestOptions {
  /** Audience the agent's projected token must carry. */
  audience: string;
}

export interface ManifestReport {
  ok: boolean;
  /** One line per problem, each naming the Deployment (`<namespace>/<name>: ...`). */
  problems: string[];
  /** One line per sound istiod Deployment, saying how the agent runs. */
  sound: string[];
}

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
}
function list(v: unknown): Obj[] {
  return Array.isArray(v) ? v.map(obj).filter((x): x is Obj => x !== undefined) : [];
}
function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function settingDefault(env: string): string {
  return SETTINGS.find((s) => s.env === env)!.default!;
}

/** The value Kubernetes gives `name` in this container: the LAST literal entry wins; undefined when unset or from valueFrom. */
function envValue(c: Obj, name: string): { set: boolean; value: string | undefined } {
  const entries = list(c.env).filter((e) => e.name === name);
  if (entries.length === 0) return { set: false, value: undefined };
  return { set: true, value: str(entries.at(-1)!.value) };
}

function normalizeDir(p: string): string {
  return path.posix.normalize(p).replace(/(.)\/$/, '$1');
}

interface Container {
  c: Obj;
  name: string;
  kind: 'container' | 'init container';
}

/** Where container `c` mounts `volume`, if it does. */
function mountOf(c: Obj, volume: string): Obj | undefined {
  return list(c.volumeMounts).find((m) => m.name === volume);
}

function runAsUser(c: Obj, pod: Obj): number | undefined {
  const own = obj(c.securityContext)?.runAsUser;
  if (typeof own === 'number') return own;
  const podLevel = obj(pod.securityContext)?.runAsUser;
  return typeof podLevel === 'number' ? podLevel : undefined;
}

function imageTagOrDigest(image: string): string | undefined {
  if (image.includes('@')) return image.slice(image.indexOf('@') + 1);
  const last = image.slice(image.lastIndexOf('/') + 1);
  return last.includes(':') ? last.slice(last.indexOf(':') + 1) : undefined;
}

function httpProbe(p: unknown): { path: string | undefined; port: unknown } | undefined {
  const get = obj(obj(p)?.httpGet);
  return get ? { path: str(get.path), port: get.port } : undefined;
}

/** `<namespace>/<name>` (the namespace is left out when the manifest has none). */
function deploymentName(d: Obj): string {
  const meta = obj(d.metadata) ?? {};
  const ns = str(meta.namespace);
  return `${ns ? `${ns}/` : ''}Deployment ${str(meta.name) ?? '<unnamed>'}`;
}

/** Kubernetes objects that are istiod: a Deployment with a container named `discovery`. */
export function istiodDeployments(objects: readonly KubeObject[]): Obj[] {
  return objects.filter((o) => o.kind === 'Deployment' && list(obj(obj(obj(o.spec)?.template)?.spec)?.containers).some((c) => c.name === ISTIOD_CONTAINER));
}

/**
 * Checks every istiod Deployment in `objects`. A manifest without any istiod is a problem too: it is
 * what a check in CI should never be given by mistake.
 */
export function checkManifest(objects: readonly KubeObject[], opts: CheckManifestOptions): ManifestReport {
  const problems: string[] = [];
  const sound: string[] = [];
  const istiods = istiodDeployments(objects);
  if (istiods.length === 0) {
    problems.push('no istiod Deployment (a Deployment with a container named "discovery") in the input: nothing was checked');
  }
  for (const d of istiods) {
    const found = checkDeployment(d, opts);
    const name = deploymentName(d);
    if (found.problems.length) problems.push(...found.problems.map((p) => `${name}: ${p}`));
    else sound.push(`${name}: ok (${found.summary})`);
  }
  return { ok: problems.length === 0, problems, sound };
}

function checkDeployment(d: Obj, opts: CheckManifestOptions): { problems: string[]; summary: string } {
  const problems: string[] = [];
  const pod = obj(obj(obj(d.spec)?.template)?.spec) ?? {};
  const containers: Container[] = [
    ...list(pod.initContainers).map((c) => ({ c, name: str(c.name) ?? '?', kind: 'init container' as const })),
    ...list(pod.containers).map((c) => ({ c, name: str(c.name) ?? '?', kind: 'container' as const })),
  ];
  const discovery = containers.find((x) => x.kind === 'container' && x.name === ISTIOD_CONTAINER)!.c;
  const volumes = list(pod.volumes);
  const namespace = str(obj(d.metadata)?.namespace);

  // Readiness of istiod must never depend on the agent: an expired intermediate or a Vault outage would
  // take xDS, injection and validation out of service with it.
  const dProbe = httpProbe(discovery.readinessProbe);
  const agentPorts = new Set<unknown>([15099, 'agent-metrics']);
  if (dProbe && agentPorts.has(dProbe.port)) {
    problems.push(`discovery's readinessProbe asks the agent (port ${String(dProbe.port)}): a Vault outage or an expired intermediate would take istiod out of its Service`);
  }

  // ROOT_CA_DIR: where istiod reads the bundle.
  const root = envValue(discovery, 'ROOT_CA_DIR');
  const candidates = containers.filter((x) => x.name !== ISTIOD_CONTAINER && looksLikeAgent(x.c));
  if (!root.set) {
    if (candidates.length === 0) {
      problems.push(
        'no istiod-vault-agent and no ROOT_CA_DIR: istiod runs on its self-signed CA (or the cacerts Secret). An IstioOperator overlay matches by exact name: with a revision the Deployment is istiod-<rev>, and an overlay naming "istiod" does nothing to it',
      );
    } else {
      problems.push('discovery has no ROOT_CA_DIR: istiod reads the RELATIVE ./etc/cacerts, not the agent\'s volume; set ROOT_CA_DIR to the absolute path where discovery mounts it');
    }
    return { problems, summary: '' };
  }
  if (root.value === undefined) {
    problems.push('discovery\'s ROOT_CA_DIR is not a literal value (valueFrom): cannot check where istiod reads its CA');
    return { problems, summary: '' };
  }
  if (!path.posix.isAbsolute(root.value)) {
    problems.push(`discovery's ROOT_CA_DIR "${root.value}" is relative: istiod resolves it against its working directory; use an absolute path`);
    return { problems, summary: '' };
  }
  const rootDir = normalizeDir(root.value);
  const dMount = list(discovery.volumeMounts).find((m) => typeof m.mountPath === 'string' && normalizeDir(m.mountPath) === rootDir);
  if (!dMount) {
    problems.push(`discovery's ROOT_CA_DIR ${rootDir} is not a mounted volume: istiod finds an empty directory and falls back to its self-signed CA`);
    return { problems, summary: '' };
  }
  const volName = str(dMount.name) ?? '?';
  if (str(dMount.subPath) || str(dMount.subPathExpr)) {
    problems.push(`discovery mounts ${volName} at ROOT_CA_DIR with a subPath: a subPath mount never sees the agent's atomic swaps (istiod would keep the first bundle)`);
  }
  const vol = volumes.find((v) => v.name === volName);
  if (!vol) {
    problems.push(`discovery mounts volume ${volName} at ROOT_CA_DIR, but the pod has no such volume`);
    return { problems, summary: '' };
  }
  const sources = Object.keys(vol).filter((k) => k !== 'name');
  if (sources.length === 1 && obj(vol.secret)) {
    problems.push(`volume ${volName} at ROOT_CA_DIR is still the cacerts Secret (${str(obj(vol.secret)!.secretName) ?? '?'}): istiod reads the Secret (or, when it is absent, an empty dir: self-signed fallback), not the agent's memory emptyDir`);
  } else if (sources.length !== 1 || !obj(vol.emptyDir)) {
    problems.push(`volume ${volName} at ROOT_CA_DIR must be exactly an emptyDir with medium: Memory (found: ${sources.join(', ') || 'no source'}): the CA key must stay in memory`);
  } else if (obj(vol.emptyDir)!.medium !== 'Memory') {
    problems.push(`volume ${volName} at ROOT_CA_DIR is an emptyDir on the node's disk: set medium: Memory so the CA key never touches a disk`);
  }

  // The agent: the containers (other than discovery) that mount the same volume.
  const writers = containers.filter((x) => x.name !== ISTIOD_CONTAINER && mountOf(x.c, volName));
  const agents = writers.filter((x) => looksLikeAgent(x.c));
  if (agents.length === 0) {
    const hint = volName.startsWith('istiod-vault-agent') || volumes.some((v) => v.name === 'istiod-vault-agent-token')
      ? ' (the agent\'s volumes are there but its container is not: the istiod chart before Istio 1.24 silently drops pilot.initContainers, and the Sail Operator prunes them; use the post-renderer, kustomize or istioctl path)'
      : ' (nothing of the agent is in this Deployment: an IstioOperator overlay matches by exact name, and with a revision the Deployment is istiod-<rev>)';
    problems.push(`ROOT_CA_DIR ${rootDir} is set but no istiod-vault-agent container mounts volume ${volName}: istiod finds an empty directory and falls back to its self-signed CA${hint}`);
    return { problems, summary: '' };
  }
  const byCommand = (cmd: string) => agents.filter((x) => firstArg(x.c) === cmd);
  const natives = byCommand('run');
  const inits = byCommand('init');
  const sidecars = byCommand('sidecar');
  let layout: string;
  if (natives.length) {
    const n = natives[0]!;
    layout = 'native sidecar';
    if (n.kind !== 'init container') problems.push(`${n.name} runs "run" as a regular container: discovery can start before a bundle exists (use an init container with restartPolicy: Always and a startupProbe on /readyz)`);
    else if (n.c.restartPolicy !== 'Always') problems.push(`init container ${n.name} runs "run" without restartPolicy: Always: it never exits, so the pod stays in Init forever (Kubernetes < 1.29 drops the field: use the classic variant there)`);
    const sp = httpProbe(n.c.startupProbe);
    if (!sp || sp.path !== '/readyz') problems.push(`native sidecar ${n.name} has no startupProbe on /readyz: discovery can start before a bundle is published and then runs self-signed until restarted`);
    if (natives.length > 1 || inits.length || sidecars.length) problems.push(`more than one agent writes volume ${volName} (${agents.map((a) => a.name).join(', ')}): keep one variant`);
  } else {
    layout = 'init container + sidecar';
    if (inits.length === 0) problems.push(`no init container runs "init": discovery can start before a bundle exists and then runs self-signed until restarted`);
    for (const i of inits) if (i.kind !== 'init container') problems.push(`${i.name} runs "init" as a regular container: it must be an init container so the bundle exists before discovery starts`);
    if (sidecars.length === 0) problems.push(`no sidecar runs "sidecar" or "run": nothing renews the intermediate, which then expires`);
    for (const s of sidecars) if (s.kind !== 'container') problems.push(`${s.name} runs "sidecar" as an init container: it never exits, so the pod stays in Init forever`);
  }
  for (const w of writers.filter((x) => !looksLikeAgent(x.c))) {
    if (!mountOf(w.c, volName)!.readOnly) problems.push(`${w.kind} ${w.name} also mounts ${volName} writable: only the agent should write the bundle`);
  }

  const certDirDefault = settingDefault('CERT_DIR');
  const tokenPathDefault = settingDefault('SA_TOKEN_PATH');
  const images = new Set<string>();
  for (const a of agents) {
    const m = mountOf(a.c, volName)!;
    const mountPath = normalizeDir(str(m.mountPath) ?? '');
    if (m.readOnly === true) problems.push(`${a.name} mounts ${volName} read-only: it cannot write the bundle`);
    if (str(m.subPath) || str(m.subPathExpr)) problems.push(`${a.name} mounts ${volName} with a subPath: istiod would not see what it writes`);
    const certDir = envValue(a.c, 'CERT_DIR');
    const effective = certDir.set ? certDir.value : certDirDefault;
    if (effective === undefined) problems.push(`${a.name}: CERT_DIR is not a literal value: cannot check where the agent writes`);
    else if (normalizeDir(effective) !== mountPath) problems.push(`${a.name} writes to CERT_DIR ${effective}${certDir.set ? '' : ' (the default)'} but mounts ${volName} at ${mountPath}: the bundle never reaches istiod`);
    else if (normalizeDir(effective) !== rootDir) problems.push(`${a.name}'s CERT_DIR ${effective} differs from discovery's ROOT_CA_DIR ${rootDir}: mount the volume at the same path in both`);

    // The token the agent logs in with.
    const tokenPath = envValue(a.c, 'SA_TOKEN_PATH');
    const tp = tokenPath.set ? tokenPath.value : tokenPathDefault;
    if (tp) {
      const tm = list(a.c.volumeMounts).find((x) => typeof x.mountPath === 'string' && normalizeDir(x.mountPath) === path.posix.dirname(tp));
      const tv = tm ? volumes.find((v) => v.name === tm.name) : undefined;
      const sat = tv ? list(obj(tv.projected)?.sources).map((s) => obj(s.serviceAccountToken)).find((s) => s && s.path === path.posix.basename(tp)) : undefined;
      if (tokenPath.set && !tm) problems.push(`${a.name}: SA_TOKEN_PATH ${tp} is in no mounted volume: the agent cannot log in`);
      if (sat && sat.audience !== opts.audience) problems.push(`${a.name}'s projected token has audience "${str(sat.audience) ?? '(the API server\'s)'}", the Vault role expects "${opts.audience}": every login would be refused with 403`);
    }

    if (a.c.readinessProbe) {
      problems.push(`${a.name} has a readinessProbe: the pod's readiness (and so istiod's place in its Service) would follow the agent; an expired intermediate or a Vault outage would stop xDS, injection and validation. Use liveness (and, native, startup) probes only`);
    }

    const image = str(a.c.image);
    if (!image) problems.push(`${a.name} has no image`);
    else {
      images.add(image);
      const tag = imageTagOrDigest(image);
      if (!tag || tag === 'latest') problems.push(`${a.name}'s image ${image} names no version: pin a tag or digest so you know which agent runs`);
    }

    const agentUid = runAsUser(a.c, pod);
    const istiodUid = runAsUser(discovery, pod);
    if (agentUid !== undefined && istiodUid !== undefined && agentUid !== istiodUid) {
      problems.push(`${a.name} runs as UID ${agentUid}, discovery as ${istiodUid}: istiod cannot read ca-key.pem (mode 0600); run both as the same UID`);
    }

    // CERT_DNS_SANS written literally for another namespace than the Deployment's.
    const sans = envValue(a.c, 'CERT_DNS_SANS');
    if (namespace && sans.value && !sans.value.includes('$(')) {
      for (const san of sans.value.split(',').map((s) => s.trim())) {
        const m = /^[^.]+\.([^.]+)\.svc(\.|$)/.exec(san);
        if (m && m[1] !== namespace) problems.push(`${a.name}: CERT_DNS_SANS names ${san}, but istiod runs in namespace ${namespace}`);
      }
    }
  }

  const summary = `${layout}, ${[...images].join(', ')}, ROOT_CA_DIR ${rootDir} on ${volName} (emptyDir, Memory)`;
  return { problems, summary };
}

/** The first argument (our command), from args or after the binary in command. */
function firstArg(c: Obj): string | undefined {
  const args = Array.isArray(c.args) ? c.args.map(String) : [];
  return args.find((a) => AGENT_COMMANDS.has(a));
}

/** An agent container: its image or name says istiod-vault-agent, and it runs one of our commands. */
function looksLikeAgent(c: Obj): boolean {
  const named = /istiod-vault-agent/.test(`${str(c.image) ?? ''} ${str(c.name) ?? ''}`);
  return named && firstArg(c) !== undefined;
}
