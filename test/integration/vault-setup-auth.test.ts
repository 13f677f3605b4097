/**
 * manifests/vault/setup.sh beyond the default install, against a real OpenBao: a revision and another
 * namespace (the role binds istiod-<rev> in that namespace, the printed settings land there, and the
 * agent, with the environment the manifests give it, gets an intermediate named for that Service); jwt
 * auth for a Vault that cannot reach the API server, with the cluster's public key, OIDC discovery URL or
 * JWKS URL (a small server stands in for the API server's discovery endpoints; OpenBao fetches and checks
 * the keys itself); approle, whose secret-id goes from Vault to a file without passing the script; and
 * Vault's CA for the agent against an OpenBao with a TLS listener. Every run logs the agent in for real.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { serviceAccountJwt, signJwt, type ServiceAccountRef } from '../../src/dev/jwt.js';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { containerEnv } from '../helpers/container-env.js';
import { kubeletWrite } from '../helpers/kubelet-volume.js';
import { useOpenBao } from '../helpers/openbao.js';
import { vaultBin } from '../helpers/tools.js';
import { runSetup, setupArgs, startFakeCluster, type FakeCluster, type SetupResult } from './support/vault-setup.js';

const bao = useOpenBao();
let dir = '';

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-setup-auth-'));
});
afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

/** The native sidecar's container from the kustomize component: the env Kubernetes would give it. */
async function podEnv(settings: Record<string, string>, pod: { namespace: string; serviceAccountName: string }): Promise<Record<string, string>> {
  const c = (YAML.parse(await fs.readFile('manifests/kustomize/native/native-sidecar.yaml', 'utf8')) as { spec: { template: { spec: { initContainers: Record<string, unknown>[] } } } }).spec.template.spec.initContainers[0]!;
  return containerEnv(c, { 'istiod-vault-agent': settings }, pod);
}

async function init(env: Record<string, string>, name: string): Promise<{ code: number | null; out: string; certDir: string }> {
  const certDir = path.join(dir, `certs-${name}`);
  await fs.mkdir(certDir, { recursive: true });
  const run = await runAgent(['init'], cleanEnv({ ...env, CERT_DIR: certDir, KEY_TYPE: 'ec', INIT_TIMEOUT: '20s', METRICS_ADDR: '' }));
  return { code: run.code, out: run.stdout + run.stderr, certDir };
}

const sanOf = async (certDir: string) => new X509Certificate(await fs.readFile(path.join(certDir, 'ca-cert.pem'))).subjectAltName;

describe.skipIf(!bao.available)('setup.sh: namespace and revision', () => {
  let cluster: FakeCluster;
  let res: SetupResult;
  beforeAll(async () => {
    cluster = await startFakeCluster({ name: 'rev', dir, caPem: bao.get().rootPem, key: bao.get().jwtKey });
    res = await runSetup(bao.get(), setupArgs(cluster, 'rev-pki', ['--namespace', 'mesh-cp', '--revision', 'canary']));
  });
  afterAll(() => cluster?.close());

  it('binds istiod-<rev> in that namespace and says what it derived', async () => {
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain("istiod's service account(s): system:serviceaccount:mesh-cp:istiod-canary (derived from --revision canary)");
    expect(res.stderr).toContain('each istiod derives CERT_DNS_SANS from its pod (<service account>.<namespace>.svc): istiod-canary.mesh-cp.svc');
    expect(res.configMap).toMatchObject({ metadata: { name: 'istiod-vault-agent', namespace: 'mesh-cp' } });
    const role = (await bao.get().api.request('GET', 'auth/kube-rev-mesh-auth/role/istiod')).body as { data: Record<string, unknown> };
    expect(role.data).toMatchObject({ bound_service_account_names: ['istiod-canary'], bound_service_account_namespaces: ['mesh-cp'], audience: 'vault' });
  });

  it('gives istiod-canary in mesh-cp, run with the manifest\'s env, an intermediate for its own Service', async () => {
    const sa: ServiceAccountRef = { namespace: 'mesh-cp', name: 'istiod-canary' };
    const env = await podEnv(res.settings, { namespace: sa.namespace, serviceAccountName: sa.name });
    const run = await init({ ...env, SA_TOKEN_PATH: await cluster.writeToken(path.join(dir, 'canary.jwt'), sa) }, 'canary');
    expect(run.code, run.out).toBe(0);
    expect(await sanOf(run.certDir)).toBe('DNS:istiod-canary.mesh-cp.svc');
  });

  it.each([
    ['the default revision\'s istiod', { namespace: 'mesh-cp', name: 'istiod' }],
    ['istiod-canary of istio-system', { namespace: 'istio-system', name: 'istiod-canary' }],
  ])('refuses %s with 403', async (_n, sa) => {
    const run = await init({ ...res.settings, SA_TOKEN_PATH: await cluster.writeToken(path.join(dir, `${sa.namespace}-${sa.name}.jwt`), sa) }, `${sa.namespace}-${sa.name}`);
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/HTTP 403/);
  });

  it('binds several revisions at once (default,canary), and refuses --revision with --service-account', async () => {
    const both = await runSetup(bao.get(), setupArgs(cluster, 'rev-pki', ['--namespace', 'mesh-cp', '--revision', 'default,canary', '--role', 'both']));
    expect(both.code, both.stderr).toBe(0);
    const role = (await bao.get().api.request('GET', 'auth/kube-rev-mesh-auth/role/both')).body as { data: Record<string, unknown> };
    expect(role.data.bound_service_account_names).toEqual(['istiod', 'istiod-canary']);
    const clash = await runSetup(bao.get(), setupArgs(cluster, 'rev-pki', ['--revision', 'canary', '--service-account', 'istiod']));
    expect(clash.code).not.toBe(0);
    expect(clash.stderr).toMatch(/give --revision or --service-account, not both/);
  });
});

/** Serves what an API server serves for service-account issuer discovery: the OIDC document and the JWKS. */
async function startDiscovery(publicKeyPem: string): Promise<{ url: string; hits: string[]; close(): Promise<void> }> {
  const { createPublicKey } = await import('node:crypto');
  const jwk = { ...createPublicKey(publicKeyPem).export({ format: 'jwk' }), kid: 'dev', use: 'sig', alg: 'RS256' };
  const hits: string[] = [];
  let url = '';
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    const json = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.url === '/.well-known/openid-configuration') {
      json({ issuer: url, jwks_uri: `${url}/openid/v1/jwks`, response_types_supported: ['id_token'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'] });
    } else if (req.url === '/openid/v1/jwks') json({ keys: [jwk] });
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, hits, close: () => new Promise((r) => server.close(() => r())) };
}

describe.skipIf(!bao.available)('setup.sh --auth jwt', () => {
  let discovery: Awaited<ReturnType<typeof startDiscovery>>;
  let keyFile = '';
  beforeAll(async () => {
    discovery = await startDiscovery(bao.get().jwtKey.publicKeyPem);
    keyFile = path.join(dir, 'sa-signing.pub');
    await fs.writeFile(keyFile, bao.get().jwtKey.publicKeyPem);
  });
  afterAll(() => discovery?.close());

  /** A projected token as the cluster's issuer would mint it (iss = the discovery URL, like a real cluster). */
  async function token(name: string, sa: ServiceAccountRef, audience = 'vault'): Promise<string> {
    const file = path.join(dir, `jwt-${name}.jwt`);
    const now = Math.floor(Date.now() / 1000);
    const jwt = signJwt(bao.get().jwtKey.privateKey, { iss: discovery.url, sub: `system:serviceaccount:${sa.namespace}:${sa.name}`, aud: [audience], iat: now, nbf: now, exp: now + 600 });
    await fs.writeFile(file, jwt, { mode: 0o600 });
    return file;
  }

  const SOURCES: [string, () => string[], string][] = [
    ['the cluster\'s public key', () => ['--jwt-public-key-file', keyFile], 'jwt_validation_pubkeys'],
    ['its OIDC discovery URL', () => ['--oidc-discovery-url', discovery.url], 'oidc_discovery_url'],
    ['its JWKS URL', () => ['--jwks-url', `${discovery.url}/openid/v1/jwks`], 'jwks_url'],
  ];

  it.each(SOURCES)('with %s: istiod logs in, other service accounts and audiences are refused', async (what, args, field) => {
    const cluster = `jwt${SOURCES.findIndex((s) => s[0] === what)}`;
    const res = await runSetup(bao.get(), ['--cluster', cluster, '--auth', 'jwt', ...args(), '--pki-mount', 'jwt-pki', '--root-key-type', 'ec']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.settings).toMatchObject({ AUTH_METHOD: 'jwt', AUTH_MOUNT: `jwt-${cluster}-mesh-auth`, AUTH_ROLE: 'istiod' });
    const cfg = (await bao.get().api.request('GET', `auth/jwt-${cluster}-mesh-auth/config`)).body as { data: Record<string, unknown> };
    expect(cfg.data[field]).toBeTruthy();
    const role = (await bao.get().api.request('GET', `auth/jwt-${cluster}-mesh-auth/role/istiod`)).body as { data: Record<string, unknown> };
    expect(role.data).toMatchObject({ role_type: 'jwt', user_claim: 'sub', bound_audiences: ['vault'], bound_subject: 'system:serviceaccount:istio-system:istiod', token_no_default_policy: true });

    const ok = await init({ ...res.settings, SA_TOKEN_PATH: await token(`${cluster}-ok`, { namespace: 'istio-system', name: 'istiod' }) }, `${cluster}-ok`);
    expect(ok.code, ok.out).toBe(0);
    for (const [name, sa, aud] of [
      ['other-sa', { namespace: 'istio-system', name: 'default' }, 'vault'],
      ['other-aud', { namespace: 'istio-system', name: 'istiod' }, 'istio-ca'],
    ] as const) {
      const bad = await init({ ...res.settings, SA_TOKEN_PATH: await token(`${cluster}-${name}`, sa, aud) }, `${cluster}-${name}`);
      expect(bad.code, `${name}: ${bad.out}`).toBe(1);
      expect(bad.out).toMatch(/logging in with jwt auth .*HTTP (400|403)/);
    }
  });

  it('OpenBao fetched the keys from the discovery endpoints itself', () => {
    expect(discovery.hits).toContain('/.well-known/openid-configuration');
    expect(discovery.hits).toContain('/openid/v1/jwks');
  });

  it('binds several revisions through bound_claims, and checks the issuer when given', async () => {
    const res = await runSetup(bao.get(), ['--cluster', 'jwtmulti', '--auth', 'jwt', '--jwt-public-key-file', keyFile, '--jwt-issuer', discovery.url, '--revision', 'default,canary', '--pki-mount', 'jwt-pki', '--root-key-type', 'ec']);
    expect(res.code, res.stderr).toBe(0);
    const role = (await bao.get().api.request('GET', 'auth/jwt-jwtmulti-mesh-auth/role/istiod')).body as { data: Record<string, unknown> };
    expect(role.data.bound_claims).toEqual({ sub: ['system:serviceaccount:istio-system:istiod', 'system:serviceaccount:istio-system:istiod-canary'] });
    for (const name of ['istiod', 'istiod-canary']) {
      const run = await init({ ...res.settings, SA_TOKEN_PATH: await token(`multi-${name}`, { namespace: 'istio-system', name }) }, `multi-${name}`);
      expect(run.code, run.out).toBe(0);
    }
    // Same key and subject, another issuer: refused by bound_issuer.
    const foreign = path.join(dir, 'foreign-iss.jwt');
    await fs.writeFile(foreign, serviceAccountJwt(bao.get().jwtKey.privateKey, { namespace: 'istio-system', name: 'istiod' }));
    const run = await init({ ...res.settings, SA_TOKEN_PATH: foreign }, 'multi-foreign');
    expect(run.code).toBe(1);
  });
});

describe.skipIf(!bao.available)('setup.sh --auth approle', () => {
  it('prints the role_id and how to store a secret-id, which then logs the agent in', async () => {
    const res = await runSetup(bao.get(), ['--cluster', 'ar', '--auth', 'approle', '--namespace', 'mesh-cp', '--pki-mount', 'ar-pki', '--root-key-type', 'ec']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.settings).toMatchObject({ AUTH_METHOD: 'approle', AUTH_MOUNT: 'approle-ar-mesh-auth', APPROLE_SECRET_ID_FILE: '/var/run/secrets/istiod-vault-agent/approle/secret-id' });
    expect(res.settings.APPROLE_ROLE_ID).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.settings).not.toHaveProperty('AUTH_ROLE');

    // The printed command, with kubectl's part replaced by a file (the Secret's key secret-id).
    const line = res.stderr.split('\n').find((l) => /write -f -field=secret_id/.test(l))!;
    const command = line.replace(/^setup\.sh:\s+/, '');
    const [vaultPart, kubectlPart] = command.split(' | ');
    expect(kubectlPart).toBe('kubectl -n mesh-cp create secret generic istiod-vault-agent-approle --from-file=secret-id=/dev/stdin');
    const args = vaultPart!.split(' ').slice(1);
    const secretFile = path.join(dir, 'secret-id');
    const out = spawnSync(vaultBin(), args, { env: { PATH: process.env.PATH ?? '', HOME: dir, VAULT_ADDR: bao.get().server.addr, VAULT_TOKEN: bao.get().server.rootToken }, encoding: 'utf8' });
    expect(out.status, out.stderr).toBe(0);
    await fs.writeFile(secretFile, out.stdout, { mode: 0o600 });
    const secretId = out.stdout.trim();
    expect(secretId).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.stdout + res.stderr).not.toContain(secretId);

    const run = await init({ ...res.settings, APPROLE_SECRET_ID_FILE: secretFile }, 'approle');
    expect(run.code, run.out).toBe(0);
    expect(run.out).not.toContain(secretId);
  });
});

describe('setup.sh usage: what each method requires', () => {
  const help = spawnSync('bash', ['manifests/vault/setup.sh', '--help'], { encoding: 'utf8' }).stdout;
  const usage = help.split('\n\n')[0]!.split('\n');

  it('has one usage line per method', () => {
    expect(usage.map((l) => /--auth (\w+)/.exec(l)?.[1])).toEqual(['kubernetes', 'jwt', 'approle']);
  });

  // Without a server: validation happens before the CLI is looked for.
  const run = (args: string[]) => spawnSync('bash', ['manifests/vault/setup.sh', ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', VAULT_ADDR: '', HOME: os.tmpdir() } });

  it.each([
    ['kubernetes without --kube-host', ['--cluster', 'c'], /--kube-host is required with --auth kubernetes/],
    ['kubernetes without --kube-ca-file', ['--cluster', 'c', '--kube-host', 'https://k:6443'], /--kube-ca-file is required with --auth kubernetes \(the API server's CA; or --vault-in-cluster\)/],
    ['jwt without a key source', ['--cluster', 'c', '--auth', 'jwt'], /--auth jwt needs exactly one of --oidc-discovery-url, --jwks-url, --jwt-public-key-file \(got 0\)/],
    ['jwt with two key sources', ['--cluster', 'c', '--auth', 'jwt', '--jwks-url', 'https://a/jwks', '--oidc-discovery-url', 'https://a'], /exactly one of .* \(got 2\)/],
    ['jwt with a kubernetes option', ['--cluster', 'c', '--auth', 'jwt', '--jwks-url', 'https://a/jwks', '--kube-host', 'https://k:6443'], /--kube-host applies to --auth kubernetes only \(this run: --auth jwt\)/],
    ['approle with a jwt option', ['--cluster', 'c', '--auth', 'approle', '--jwks-url', 'https://a/jwks'], /--jwks-url applies to --auth jwt only/],
    ['kubernetes with an approle option', ['--cluster', 'c', '--kube-host', 'https://k:6443', '--vault-in-cluster', '--secret-id-ttl', '1h'], /--secret-id-ttl applies to --auth approle only/],
    ['an unknown method', ['--cluster', 'c', '--auth', 'ldap'], /--auth must be kubernetes, jwt or approle \(got "ldap"\)/],
    ['a bad revision', ['--cluster', 'c', '--auth', 'approle', '--revision', 'Canary!'], /--revision: "Canary!" is not a revision name/],
  ])('%s is refused before anything is changed', (_name, args, message) => {
    const res = run(args);
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(message);
    expect(res.stdout).toBe('');
  });

  it.each([
    ['kubernetes', ['--cluster', 'c', '--kube-host', 'https://k:6443', '--vault-in-cluster']],
    ['jwt', ['--cluster', 'c', '--auth', 'jwt', '--jwks-url', 'https://a/jwks']],
    ['approle', ['--cluster', 'c', '--auth', 'approle']],
  ])('%s with exactly what its usage line requires passes validation', (_name, args) => {
    // It gets as far as needing Vault: the next thing after validation.
    const res = run(args);
    expect(res.stderr).toMatch(/VAULT_ADDR is not set|neither bao nor vault is on PATH/);
  });
});

describe.skipIf(!bao.available)('setup.sh with a TLS Vault: VAULT_CACERT for the agent', () => {
  const tls = useOpenBao({ tls: true });

  it('prints Vault\'s CA as the vault-ca ConfigMap; mounted where the manifests mount it, the agent trusts Vault with it', async () => {
    const caFile = path.join(dir, 'vault-tls-ca.pem');
    await fs.writeFile(caFile, tls.get().server.tlsCaPem!);
    const cluster = await startFakeCluster({ name: 'tls', dir, caPem: tls.get().rootPem, key: tls.get().jwtKey });
    try {
      const res = await runSetup(tls.get(), setupArgs(cluster, 'tls-pki'), { VAULT_CACERT: caFile });
      expect(res.code, res.stderr).toBe(0);
      expect(res.settings.VAULT_CACERT).toBe('/var/run/secrets/istiod-vault-agent/vault-ca/ca.pem');
      expect(res.vaultCa).toMatchObject({ metadata: { name: 'istiod-vault-agent-vault-ca', namespace: 'istio-system' } });
      expect(res.vaultCa!.data['ca.pem']!.trim()).toBe(tls.get().server.tlsCaPem!.trim());

      // The ConfigMap as kubelet projects it into the volume; VAULT_CACERT at the same key in it.
      const volume = path.join(dir, 'vault-ca-volume');
      await kubeletWrite(volume, res.vaultCa!.data);
      const token = await cluster.writeToken(path.join(dir, 'tls.jwt'));
      const trusted = await init({ ...res.settings, VAULT_CACERT: path.join(volume, path.basename(res.settings.VAULT_CACERT!)), SA_TOKEN_PATH: token }, 'tls-ok');
      expect(trusted.code, trusted.out).toBe(0);
      const untrusted = await init({ ...res.settings, VAULT_CACERT: undefined as unknown as string, SA_TOKEN_PATH: token, INIT_TIMEOUT: '5s' }, 'tls-no-ca');
      expect(untrusted.code).toBe(1);
      expect(untrusted.out).toMatch(/TLS verification of VAULT_ADDR .* failed .*set VAULT_CACERT/);
    } finally {
      await cluster.close();
    }
  });

  it('prints no CA when none is given (AGENT_VAULT_CA_FILE empty)', async () => {
    const cluster = await startFakeCluster({ name: 'tls2', dir, caPem: tls.get().rootPem, key: tls.get().jwtKey });
    try {
      const caFile = path.join(dir, 'vault-tls-ca2.pem');
      await fs.writeFile(caFile, tls.get().server.tlsCaPem!);
      const res = await runSetup(tls.get(), setupArgs(cluster, 'tls-pki'), { VAULT_CACERT: caFile, AGENT_VAULT_CA_FILE: '' });
      expect(res.code, res.stderr).toBe(0);
      expect(res.settings).not.toHaveProperty('VAULT_CACERT');
      expect(res.documents).toHaveLength(1);
    } finally {
      await cluster.close();
    }
  });
});
