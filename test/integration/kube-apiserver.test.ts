/**
 * A real Kubernetes API server (tools/kube's kube-apiserver + etcd): OpenBao's kubernetes auth reviews
 * the agent's TokenRequest token through the real TokenReview API (a reviewer service account bound to
 * system:auth-delegator), a token of another service account is refused, and server-side apply works.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupKubernetesAuth } from '../../src/dev/configure.js';
import { DEV_POLICY } from '../../src/dev/dev-environment.js';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { goTool } from '../helpers/go-tools.js';
import { SA_ISSUER, startKubeCluster, type KubeCluster } from '../helpers/kube-cluster.js';
import { useOpenBao } from '../helpers/openbao.js';

const bao = useOpenBao();
const haveTools = goTool('kube-apiserver') !== '' && goTool('etcd') !== '';
let cluster: KubeCluster | undefined;
let work: string;

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-kube-'));
  if (!haveTools) return;
  cluster = await startKubeCluster();
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
  await fs.rm(work, { recursive: true, force: true });
}, 30_000);

const kube = () => cluster!;

describe.skipIf(!haveTools)('real kube-apiserver', () => {
  it('serves RBAC, TokenRequest and TokenReview', async () => {
    await kube().kubectl('create', 'namespace', 'review-check');
    await kube().kubectl('-n', 'review-check', 'create', 'serviceaccount', 'app');
    const token = await kube().createToken('review-check', 'app', SA_ISSUER, 600);
    const review = await kube().request('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token },
    });
    expect(review.status).toBe(201);
    const status = (review.body as { status: { authenticated: boolean; user: { username: string } } }).status;
    expect(status.authenticated).toBe(true);
    expect(status.user.username).toBe('system:serviceaccount:review-check:app');
    expect(await kube().kubectl('get', 'clusterrole', 'system:auth-delegator', '-o', 'name')).toBe('clusterrole.rbac.authorization.k8s.io/system:auth-delegator\n');
  });

  it('kubectl apply --server-side stores a Deployment as applied', async () => {
    await kube().kubectl('create', 'namespace', 'apply-check');
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'istiod', namespace: 'apply-check', labels: { app: 'istiod' } },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'istiod' } },
        template: {
          metadata: { labels: { app: 'istiod' } },
          spec: {
            volumes: [{ name: 'cacerts', emptyDir: { medium: 'Memory' } }],
            containers: [{ name: 'discovery', image: 'docker.io/istio/pilot:1.30.3', env: [{ name: 'ROOT_CA_DIR', value: '/etc/cacerts' }], volumeMounts: [{ name: 'cacerts', mountPath: '/etc/cacerts' }] }],
          },
        },
      },
    };
    const out = await kube().kubectlWithInput(JSON.stringify(deployment), 'apply', '--server-side', '--field-manager=ivagent-test', '-f', '-');
    expect(out).toMatch(/deployment.apps\/istiod serverside-applied/);
    const stored = JSON.parse(await kube().kubectl('-n', 'apply-check', 'get', 'deployment', 'istiod', '-o', 'json', '--show-managed-fields')) as {
      metadata: { managedFields: { manager: string; operation: string }[] };
      spec: { template: { spec: { volumes: unknown[]; containers: { env: unknown[] }[] } } };
    };
    expect(stored.spec.template.spec.volumes).toEqual([{ name: 'cacerts', emptyDir: { medium: 'Memory' } }]);
    expect(stored.spec.template.spec.containers[0]!.env).toEqual([{ name: 'ROOT_CA_DIR', value: '/etc/cacerts' }]);
    expect(stored.metadata.managedFields).toContainEqual(expect.objectContaining({ manager: 'ivagent-test', operation: 'Apply' }));
  });

  describe.skipIf(!bao.available)('OpenBao kubernetes auth against it', () => {
    const mount = 'kubernetes-real';
    beforeAll(async () => {
      await kube().kubectl('create', 'namespace', 'istio-system');
      await kube().kubectl('-n', 'istio-system', 'create', 'serviceaccount', 'istiod');
      await kube().kubectl('-n', 'istio-system', 'create', 'serviceaccount', 'other');
      await kube().kubectl('create', 'namespace', 'vault');
      await kube().kubectl('-n', 'vault', 'create', 'serviceaccount', 'token-reviewer');
      await kube().kubectl('create', 'clusterrolebinding', 'vault-token-reviewer', '--clusterrole=system:auth-delegator', '--serviceaccount=vault:token-reviewer');
      await setupKubernetesAuth(bao.get().api, {
        mount,
        role: 'istiod',
        policy: DEV_POLICY,
        sa: { namespace: 'istio-system', name: 'istiod' },
        audience: 'vault',
        kubernetesHost: kube().url,
        kubernetesCaPem: kube().caPem,
        tokenReviewerJwt: await kube().createToken('vault', 'token-reviewer', SA_ISSUER, 3600),
      });
    });

    const initWith = async (sa: string) => {
      const tokenFile = path.join(work, `${sa}.token`);
      await fs.writeFile(tokenFile, await kube().createToken('istio-system', sa, 'vault', 600), { mode: 0o600 });
      const certDir = await fs.mkdtemp(path.join(work, 'certs-'));
      const run = await runAgent(['init'], cleanEnv({
        VAULT_ADDR: bao.get().server.addr, AUTH_METHOD: 'kubernetes', AUTH_MOUNT: mount, AUTH_ROLE: 'istiod', SA_TOKEN_PATH: tokenFile,
        CERT_DIR: certDir, KEY_TYPE: 'ec', CERT_TTL: '1h', INIT_TIMEOUT: '20s',
      }));
      return { run, certDir };
    };

    it('init logs in with a TokenRequest token of istiod and publishes a bundle', async () => {
      const { run, certDir } = await initWith('istiod');
      expect(run.code, run.stdout + run.stderr).toBe(0);
      expect((await fs.readdir(certDir)).sort()).toEqual(expect.arrayContaining(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']));
    });

    it('a token of another service account is refused with a 403', async () => {
      const { run } = await initWith('other');
      expect(run.code).toBe(1);
      const fail = run.lines.find((l) => l.msg.startsWith('init failed'));
      expect(fail?.msg).toMatch(new RegExp(`auth/${mount}/login: HTTP 403`));
      expect(fail?.reason).toBe('vault_denied');
    });
  });
});
