/**
 * The rules of `check-manifest` (src/install/check-manifest.ts), one broken Deployment at a time: each
 * trap is built from a sound Deployment by the one edit a real install path makes (or forgets), and must
 * yield a problem line naming the Deployment and the cause. The sound Deployments of every install path
 * over every chart release are in test/manifests/install-paths.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { checkManifest, istiodDeployments } from '../../src/install/check-manifest.js';
import { ManifestInputError, parseManifest } from '../../src/install/manifest-input.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const AGENT_ENV = [
  { name: 'CERT_DIR', value: '/etc/cacerts' },
  { name: 'SA_TOKEN_PATH', value: '/var/run/secrets/vault/token' },
];
const MOUNTS = [
  { name: 'cacerts', mountPath: '/etc/cacerts' },
  { name: 'istiod-vault-agent-token', mountPath: '/var/run/secrets/vault', readOnly: true },
];
const SC = { runAsUser: 1337, runAsGroup: 1337, runAsNonRoot: true };
const probe = (p: string) => ({ httpGet: { path: p, port: 15099 }, periodSeconds: 2, failureThreshold: 180 });

/** A sound istiod with the agent as a native sidecar (what the native kustomize component renders). */
function nativeIstiod(name = 'istiod', namespace = 'istio-system'): Obj {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace, labels: { app: 'istiod' } },
    spec: {
      template: {
        spec: {
          initContainers: [
            { name: 'istiod-vault-agent', image: 'registry.example/istiod-vault-agent:0.1.0', restartPolicy: 'Always', args: ['run'], env: structuredClone(AGENT_ENV), startupProbe: probe('/readyz'), livenessProbe: probe('/healthz'), volumeMounts: structuredClone(MOUNTS), securityContext: { ...SC } },
          ],
          containers: [
            {
              name: 'discovery',
              image: 'pilot:1.30.3',
              readinessProbe: { httpGet: { path: '/ready', port: 8080 } },
              env: [{ name: 'ROOT_CA_DIR', value: '/etc/cacerts' }],
              volumeMounts: [{ name: 'cacerts', mountPath: '/etc/cacerts', readOnly: true }],
            },
          ],
          volumes: [
            { name: 'cacerts', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
            { name: 'istiod-vault-agent-token', projected: { sources: [{ serviceAccountToken: { audience: 'vault', expirationSeconds: 600, path: 'token' } }] } },
          ],
        },
      },
    },
  };
}

/** The same with an init container and a sidecar container (the classic component). */
function classicIstiod(): Obj {
  const d = nativeIstiod();
  const pod = d.spec.template.spec;
  const native = pod.initContainers[0];
  pod.initContainers = [{ ...structuredClone(native), name: 'istiod-vault-agent-init', args: ['init'], restartPolicy: undefined, startupProbe: undefined, livenessProbe: undefined }];
  pod.containers.push({ ...structuredClone(native), args: ['sidecar'], restartPolicy: undefined, startupProbe: undefined });
  return d;
}

const podOf = (d: Obj) => d.spec.template.spec;
const agentOf = (d: Obj) => podOf(d).initContainers[0];
const discoveryOf = (d: Obj) => podOf(d).containers[0];
const run = (...docs: Obj[]) => checkManifest(docs, { audience: 'vault' });

describe('check-manifest: sound manifests', () => {
  it.each([
    ['native sidecar', nativeIstiod],
    ['init container + sidecar', classicIstiod],
  ])('passes the %s layout with one ok line', (layout, make) => {
    const r = run(make());
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.sound).toEqual([`istio-system/Deployment istiod: ok (${layout}, registry.example/istiod-vault-agent:0.1.0, ROOT_CA_DIR /etc/cacerts on cacerts (emptyDir, Memory))`]);
  });

  it('checks every istiod, any name or namespace, and ignores other objects', () => {
    const other = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: { template: { spec: { containers: [{ name: 'web' }] } } } };
    const r = run(nativeIstiod(), nativeIstiod('istiod-canary', 'mesh-cp'), other, { kind: 'Service', metadata: { name: 'istiod' } });
    expect(r.ok).toBe(true);
    expect(r.sound.map((l) => l.split(':')[0])).toEqual(['istio-system/Deployment istiod', 'mesh-cp/Deployment istiod-canary']);
  });

  it('accepts CERT_DIR left at its default when it equals the mount, and UIDs left to the platform', () => {
    const d = nativeIstiod();
    agentOf(d).env = agentOf(d).env.filter((e: Obj) => e.name !== 'CERT_DIR');
    delete agentOf(d).securityContext.runAsUser;
    expect(run(d).problems).toEqual([]);
  });
});

/** Each case: how a sound Deployment is broken, and what the problem line must say. */
const TRAPS: [string, () => Obj, RegExp][] = [
  [
    'the Istio < 1.24 values file: volumes and ROOT_CA_DIR kept, initContainers dropped',
    () => {
      const d = nativeIstiod();
      delete podOf(d).initContainers;
      return d;
    },
    /ROOT_CA_DIR \/etc\/cacerts is set but no istiod-vault-agent container mounts volume cacerts: .*self-signed CA \(the agent's volumes are there but its container is not: the istiod chart before Istio 1\.24 silently drops pilot\.initContainers, and the Sail Operator prunes them/,
  ],
  [
    'an IstioOperator overlay that missed istiod-<rev> by name (chart default left untouched)',
    () => {
      const d = nativeIstiod('istiod-canary');
      delete podOf(d).initContainers;
      discoveryOf(d).env = [];
      podOf(d).volumes = [{ name: 'cacerts', secret: { secretName: 'cacerts', optional: true } }];
      return d;
    },
    /istio-system\/Deployment istiod-canary: no istiod-vault-agent and no ROOT_CA_DIR: .*overlay naming "istiod" does nothing/,
  ],
  [
    'the cacerts Secret still at ROOT_CA_DIR (env set by k8s.env, overlay missed)',
    () => {
      const d = nativeIstiod();
      delete podOf(d).initContainers;
      podOf(d).volumes[0] = { name: 'cacerts', secret: { secretName: 'cacerts', optional: true } };
      return d;
    },
    /volume cacerts at ROOT_CA_DIR is still the cacerts Secret \(cacerts\)/,
  ],
  [
    'a merge that added emptyDir but left the Secret source',
    () => {
      const d = nativeIstiod();
      podOf(d).volumes[0].secret = { secretName: 'cacerts', optional: true };
      return d;
    },
    /must be exactly an emptyDir with medium: Memory \(found: emptyDir, secret\)/,
  ],
  [
    'an emptyDir on disk',
    () => {
      const d = nativeIstiod();
      podOf(d).volumes[0].emptyDir = {};
      return d;
    },
    /is an emptyDir on the node's disk: set medium: Memory/,
  ],
  [
    'ROOT_CA_DIR relative',
    () => {
      const d = nativeIstiod();
      discoveryOf(d).env[0].value = './etc/cacerts';
      return d;
    },
    /ROOT_CA_DIR "\.\/etc\/cacerts" is relative/,
  ],
  [
    'ROOT_CA_DIR unset while the agent is there',
    () => {
      const d = nativeIstiod();
      discoveryOf(d).env = [];
      return d;
    },
    /discovery has no ROOT_CA_DIR: istiod reads the RELATIVE \.\/etc\/cacerts/,
  ],
  [
    'ROOT_CA_DIR pointing at no mount',
    () => {
      const d = nativeIstiod();
      discoveryOf(d).env[0].value = '/var/run/elsewhere';
      return d;
    },
    /ROOT_CA_DIR \/var\/run\/elsewhere is not a mounted volume/,
  ],
  [
    'the agent writing to another CERT_DIR than it mounts',
    () => {
      const d = nativeIstiod();
      agentOf(d).env[0].value = '/tmp/cacerts';
      return d;
    },
    /istiod-vault-agent writes to CERT_DIR \/tmp\/cacerts but mounts cacerts at \/etc\/cacerts: the bundle never reaches istiod/,
  ],
  [
    'the agent mounting the volume at another path than istiod',
    () => {
      const d = nativeIstiod();
      agentOf(d).env[0].value = '/certs';
      agentOf(d).volumeMounts[0].mountPath = '/certs';
      return d;
    },
    /CERT_DIR \/certs differs from discovery's ROOT_CA_DIR \/etc\/cacerts/,
  ],
  [
    'the agent mounting the volume read-only',
    () => {
      const d = nativeIstiod();
      agentOf(d).volumeMounts[0].readOnly = true;
      return d;
    },
    /mounts cacerts read-only: it cannot write the bundle/,
  ],
  [
    'a native sidecar without restartPolicy (Kubernetes < 1.29 dropped it)',
    () => {
      const d = nativeIstiod();
      delete agentOf(d).restartPolicy;
      return d;
    },
    /runs "run" without restartPolicy: Always: it never exits, so the pod stays in Init forever/,
  ],
  [
    'a native sidecar without a startupProbe',
    () => {
      const d = nativeIstiod();
      delete agentOf(d).startupProbe;
      return d;
    },
    /has no startupProbe on \/readyz: discovery can start before a bundle is published/,
  ],
  [
    'classic without its init container',
    () => {
      const d = classicIstiod();
      delete podOf(d).initContainers;
      return d;
    },
    /no init container runs "init"/,
  ],
  [
    'classic without its sidecar',
    () => {
      const d = classicIstiod();
      podOf(d).containers.pop();
      return d;
    },
    /no sidecar runs "sidecar" or "run": nothing renews the intermediate/,
  ],
  [
    'a readinessProbe on the agent',
    () => {
      const d = nativeIstiod();
      agentOf(d).readinessProbe = probe('/readyz');
      return d;
    },
    /istiod-vault-agent has a readinessProbe: .*istiod's place in its Service/,
  ],
  [
    'istiod\'s readiness wired to the agent\'s port',
    () => {
      const d = nativeIstiod();
      discoveryOf(d).readinessProbe = { httpGet: { path: '/readyz', port: 'agent-metrics' } };
      return d;
    },
    /discovery's readinessProbe asks the agent \(port agent-metrics\)/,
  ],
  [
    'a token for another audience than the Vault role expects',
    () => {
      const d = nativeIstiod();
      podOf(d).volumes[1].projected.sources[0].serviceAccountToken.audience = 'istio-ca';
      return d;
    },
    /projected token has audience "istio-ca", the Vault role expects "vault"/,
  ],
  [
    'SA_TOKEN_PATH in no mounted volume',
    () => {
      const d = nativeIstiod();
      agentOf(d).env[1].value = '/var/run/secrets/other/token';
      return d;
    },
    /SA_TOKEN_PATH \/var\/run\/secrets\/other\/token is in no mounted volume/,
  ],
  [
    'an image without a version',
    () => {
      const d = nativeIstiod();
      agentOf(d).image = 'registry.example:5000/istiod-vault-agent';
      return d;
    },
    /image registry\.example:5000\/istiod-vault-agent names no version/,
  ],
  [
    'an image at :latest',
    () => {
      const d = nativeIstiod();
      agentOf(d).image = 'istiod-vault-agent:latest';
      return d;
    },
    /names no version/,
  ],
  [
    'the agent and istiod under different UIDs',
    () => {
      const d = nativeIstiod();
      podOf(d).securityContext = { runAsUser: 1000650000 };
      return d;
    },
    /runs as UID 1337, discovery as 1000650000: istiod cannot read ca-key\.pem/,
  ],
  [
    'CERT_DNS_SANS written for istio-system in another namespace',
    () => {
      const d = nativeIstiod('istiod', 'mesh-cp');
      agentOf(d).env.push({ name: 'CERT_DNS_SANS', value: 'istiod.istio-system.svc' });
      return d;
    },
    /CERT_DNS_SANS names istiod\.istio-system\.svc, but istiod runs in namespace mesh-cp/,
  ],
  [
    'two agents writing the same volume',
    () => {
      const d = nativeIstiod();
      podOf(d).containers.push({ ...structuredClone(agentOf(d)), name: 'istiod-vault-agent-2', args: ['sidecar'], restartPolicy: undefined });
      return d;
    },
    /more than one agent writes volume cacerts/,
  ],
  [
    'a subPath mount in discovery',
    () => {
      const d = nativeIstiod();
      discoveryOf(d).volumeMounts[0].subPath = 'x';
      return d;
    },
    /with a subPath: a subPath mount never sees the agent's atomic swaps/,
  ],
];

describe('check-manifest: traps', () => {
  it.each(TRAPS)('flags %s', (_name, make, message) => {
    const r = run(make());
    expect(r.ok).toBe(false);
    expect(r.sound).toEqual([]);
    expect(r.problems.some((p) => message.test(p)), r.problems.join('\n')).toBe(true);
    for (const p of r.problems) expect(p).toMatch(/^[a-z-]+\/Deployment istiod(-canary)?: /);
  });

  it('reports a leftover cacerts Secret once, as the Secret, not also as a wrong volume type', () => {
    const d = nativeIstiod();
    podOf(d).volumes[0] = { name: 'cacerts', secret: { secretName: 'cacerts', optional: true } };
    const r = run(d);
    expect(r.problems.filter((p) => /volume cacerts at ROOT_CA_DIR/.test(p))).toHaveLength(1);
  });

  it('fails when the input has no istiod at all', () => {
    const r = run({ kind: 'ConfigMap', metadata: { name: 'x' } });
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual(['no istiod Deployment (a Deployment with a container named "discovery") in the input: nothing was checked']);
  });

  it('reports a sound and a broken revision side by side', () => {
    const broken = nativeIstiod('istiod-canary');
    delete podOf(broken).initContainers;
    const r = run(nativeIstiod(), broken);
    expect(r.ok).toBe(false);
    expect(r.sound).toHaveLength(1);
    expect(r.problems.every((p) => p.startsWith('istio-system/Deployment istiod-canary: '))).toBe(true);
  });
});

describe('check-manifest input', () => {
  it('reads multi-document YAML, JSON and List objects', async () => {
    const d = nativeIstiod();
    const yaml = `---\n# Source: x\n${JSON.stringify({ kind: 'ConfigMap', metadata: { name: 'a' } })}\n---\n${JSON.stringify(d)}\n---\n`;
    expect(istiodDeployments(await parseManifest(yaml, 'x'))).toHaveLength(1);
    const list = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [d, nativeIstiod('istiod-canary')] });
    expect(istiodDeployments(await parseManifest(list, 'x'))).toHaveLength(2);
  });

  it.each([
    ['empty input', ''],
    ['only comments', '# nothing\n---\n'],
    ['broken YAML', 'kind: Deployment\n  metadata: : :\n'],
  ])('rejects %s as unreadable', async (_name, text) => {
    await expect(parseManifest(text, 'in.yaml')).rejects.toThrow(ManifestInputError);
  });
});
