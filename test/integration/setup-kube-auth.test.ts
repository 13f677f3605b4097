/**
 * manifests/vault/setup.sh with kubernetes auth against a real Kubernetes API server (kube-apiserver +
 * etcd) and a real OpenBao: a reviewer service account bound to system:auth-delegator, istiod-canary in
 * mesh-cp, tokens from the TokenRequest API (`kubectl create token ... --audience vault`); the printed
 * settings log the agent in through the real TokenReview. Then each reason a login ends in a plain
 * "permission denied" (HTTP 403) with a real API server behind it: no reviewer token, a reviewer without
 * system:auth-delegator, a reviewer whose service account is gone, istiod's service account re-created
 * after its token was issued, and an API server Vault cannot reach. And jwt auth with the API server's
 * own JWKS endpoint, for a Vault that cannot call TokenReview.
 */
import fs from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { goTool } from '../helpers/go-tools.js';
import { startKubeCluster, type KubeCluster } from '../helpers/kube-cluster.js';
import { useOpenBao } from '../helpers/openbao.js';
import { runSetup } from './support/vault-setup.js';

const bao = useOpenBao();
const haveKube = goTool('kube-apiserver') !== '' && goTool('etcd') !== '';
let cluster: KubeCluster | undefined;
const kube = () => cluster!;
let work = '';

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-setup-kube-'));
  if (!haveKube || !bao.available) return;
  cluster = await startKubeCluster();
  await kube().kubectl('create', 'namespace', 'mesh-cp');
  await kube().kubectl('-n', 'mesh-cp', 'create', 'serviceaccount', 'istiod-canary');
  await kube().kubectl('create', 'namespace', 'vault');
  // The reviewer Vault calls TokenReview as (manifests/vault/examples/two-clusters.sh makes the same).
  await kube().kubectl('-n', 'vault', 'create', 'serviceaccount', 'token-reviewer');
  await kube().kubectl('create', 'clusterrolebinding', 'vault-token-reviewer', '--clusterrole=system:auth-delegator', '--serviceaccount=vault:token-reviewer');
  // One without the binding.
  await kube().kubectl('-n', 'vault', 'create', 'serviceaccount', 'unbound-reviewer');
}, 180_000);
afterAll(async () => {
  await cluster?.stop();
  await fs.rm(work, { recursive: true, force: true });
}, 60_000);

/** `kubectl create token` (the TokenRequest API), written to a file. */
async function token(ns: string, sa: string, audience: string, file: string, duration = '1h'): Promise<string> {
  const t = (await kube().kubectl('-n', ns, 'create', 'token', sa, `--audience=${audience}`, `--duration=${duration}`)).trim();
  const p = path.join(work, file);
  await fs.writeFile(p, t, { mode: 0o600 });
  return p;
}

async function setup(cluster: string, extra: string[]): Promise<Record<string, string>> {
  const res = await runSetup(bao.get(), [
    '--cluster', cluster,
    '--kube-host', kube().url,
    '--kube-ca-file', kube().caFile,
    '--namespace', 'mesh-cp',
    '--revision', 'canary',
    '--pki-mount', 'kube-pki',
    '--root-key-type', 'ec',
    ...extra,
  ]);
  expect(res.code, res.stderr).toBe(0);
  return res.settings;
}

async function init(settings: Record<string, string>, tokenFile: string, name: string) {
  const certDir = path.join(work, `certs-${name}`);
  await fs.mkdir(certDir, { recursive: true });
  const run = await runAgent(['init'], cleanEnv({ ...settings, SA_TOKEN_PATH: tokenFile, CERT_DIR: certDir, KEY_TYPE: 'ec', INIT_TIMEOUT: '20s' }));
  return { run, certDir, failure: run.lines.find((l) => l.level === 'error' && /^init failed/.test(l.msg)) };
}

describe.skipIf(!haveKube || !bao.available)('setup.sh with a real API server', () => {
  it('configures kubernetes auth whose TokenReview the API server answers; istiod-canary in mesh-cp gets its intermediate', async () => {
    const settings = await setup('realk8s', ['--token-reviewer-jwt-file', await token('vault', 'token-reviewer', 'https://kubernetes.default.svc.cluster.local', 'reviewer.jwt')]);
    const { run, certDir } = await init(settings, await token('mesh-cp', 'istiod-canary', 'vault', 'canary.jwt', '10m'), 'ok');
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect((await fs.readdir(certDir)).sort()).toEqual(expect.arrayContaining(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']));
  });

  it('--auth jwt with the API server\'s JWKS (a Vault that cannot call TokenReview): TokenRequest tokens of istiod-canary log in, others are refused', async () => {
    // What a cluster with public service-account issuer discovery allows (kubernetes docs): anonymous reads.
    await kube().kubectl('create', 'clusterrolebinding', 'public-issuer-discovery', '--clusterrole=system:service-account-issuer-discovery', '--group=system:unauthenticated');
    const res = await runSetup(bao.get(), [
      '--cluster', 'realjwt', '--auth', 'jwt',
      '--jwks-url', `${kube().url}/openid/v1/jwks`, '--jwks-ca-file', kube().caFile,
      '--jwt-issuer', 'https://kubernetes.default.svc.cluster.local',
      '--namespace', 'mesh-cp', '--revision', 'canary', '--pki-mount', 'kube-pki', '--root-key-type', 'ec',
    ]);
    expect(res.code, res.stderr).toBe(0);
    const ok = await init(res.settings, await token('mesh-cp', 'istiod-canary', 'vault', 'jwt-canary.jwt', '10m'), 'jwt-ok');
    expect(ok.run.code, ok.run.stdout).toBe(0);
    await kube().kubectl('-n', 'mesh-cp', 'create', 'serviceaccount', 'intruder');
    const bad = await init(res.settings, await token('mesh-cp', 'intruder', 'vault', 'jwt-intruder.jwt', '10m'), 'jwt-intruder');
    expect(bad.run.code).toBe(1);
    expect(bad.failure?.msg).toMatch(/auth\/jwt-realjwt-mesh-auth\/login: HTTP (400|403)/);
  });

  const denied = (f: { failure?: { msg: string; reason?: unknown } }, mount: string) => {
    expect(f.failure?.msg).toMatch(new RegExp(`auth/${mount}/login: HTTP 403`));
    expect(f.failure?.reason).toBe('vault_denied');
  };

  it('403: no reviewer token (Vault sends istiod\'s own token, audience vault, which the API server refuses)', async () => {
    const settings = await setup('noreviewer', []);
    const r = await init(settings, await token('mesh-cp', 'istiod-canary', 'vault', 'canary-noreviewer.jwt', '10m'), 'noreviewer');
    expect(r.run.code).toBe(1);
    denied(r, settings.AUTH_MOUNT!);
  });

  it('403: a reviewer without system:auth-delegator', async () => {
    const settings = await setup('unbound', ['--token-reviewer-jwt-file', await token('vault', 'unbound-reviewer', 'https://kubernetes.default.svc.cluster.local', 'unbound.jwt')]);
    const r = await init(settings, await token('mesh-cp', 'istiod-canary', 'vault', 'canary-unbound.jwt', '10m'), 'unbound');
    expect(r.run.code).toBe(1);
    denied(r, settings.AUTH_MOUNT!);
  });

  it('403: a reviewer token whose service account is gone (as good as expired)', async () => {
    await kube().kubectl('-n', 'vault', 'create', 'serviceaccount', 'doomed-reviewer');
    await kube().kubectl('create', 'clusterrolebinding', 'doomed-reviewer', '--clusterrole=system:auth-delegator', '--serviceaccount=vault:doomed-reviewer');
    const settings = await setup('gone', ['--token-reviewer-jwt-file', await token('vault', 'doomed-reviewer', 'https://kubernetes.default.svc.cluster.local', 'doomed.jwt')]);
    await kube().kubectl('-n', 'vault', 'delete', 'serviceaccount', 'doomed-reviewer');
    const r = await init(settings, await token('mesh-cp', 'istiod-canary', 'vault', 'canary-gone.jwt', '10m'), 'gone');
    expect(r.run.code).toBe(1);
    denied(r, settings.AUTH_MOUNT!);
  });

  it('403: istiod\'s service account re-created after its token was issued (the uid no longer matches)', async () => {
    const settings = await setup('realk8s', ['--token-reviewer-jwt-file', await token('vault', 'token-reviewer', 'https://kubernetes.default.svc.cluster.local', 'reviewer2.jwt')]);
    const stale = await token('mesh-cp', 'istiod-canary', 'vault', 'canary-stale.jwt', '10m');
    await kube().kubectl('-n', 'mesh-cp', 'delete', 'serviceaccount', 'istiod-canary');
    await kube().kubectl('-n', 'mesh-cp', 'create', 'serviceaccount', 'istiod-canary');
    const r = await init(settings, stale, 'recreated');
    expect(r.run.code).toBe(1);
    denied(r, settings.AUTH_MOUNT!);
    // A fresh token of the new service account works again.
    const fresh = await init(settings, await token('mesh-cp', 'istiod-canary', 'vault', 'canary-fresh.jwt', '10m'), 'fresh');
    expect(fresh.run.code, fresh.run.stdout).toBe(0);
  });

  it('403: an API server Vault cannot reach', async () => {
    // A port nothing listens on.
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    const res = await runSetup(bao.get(), ['--cluster', 'unreachable', '--kube-host', `https://127.0.0.1:${port}`, '--kube-ca-file', kube().caFile, '--token-reviewer-jwt-file', await token('vault', 'token-reviewer', 'https://kubernetes.default.svc.cluster.local', 'reviewer-unreachable.jwt'), '--namespace', 'mesh-cp', '--revision', 'canary', '--pki-mount', 'kube-pki', '--root-key-type', 'ec']);
    expect(res.code, res.stderr).toBe(0);
    const r = await init(res.settings, await token('mesh-cp', 'istiod-canary', 'vault', 'canary-unreachable.jwt', '10m'), 'unreachable');
    expect(r.run.code).toBe(1);
    // OpenBao answers this with a plain 403 "permission denied" too: its TokenReview call failed.
    denied(r, res.settings.AUTH_MOUNT!);
  });
});
