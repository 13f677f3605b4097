/**
 * manifests/vault/setup.sh against a real OpenBao, with kubernetes auth whose TokenReview goes to a
 * stand-in API server: it is idempotent (a second run keeps the root and changes nothing that matters),
 * the printed settings work for the agent, a login as another service account is refused, and the
 * token a login yields can sign intermediates at the mount and do nothing else.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { useOpenBao } from '../helpers/openbao.js';
import { requireCommand } from '../helpers/tools.js';
import { runSetup, setupArgs, startFakeCluster, type FakeCluster, type SetupResult } from './support/vault-setup.js';

const bao = useOpenBao();
const haveOpenssl = requireCommand('openssl', 'apt-get install openssl');

const MOUNT = 'mesh-pki';
const AUTH = 'kube-cluster1-mesh-auth';
const POLICY = 'istiod-vault-agent-mesh-pki';

let dir = '';
let cluster: FakeCluster;
let first: SetupResult;

function openssl(args: string[], cwd = dir): string {
  return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function get(p: string): Promise<{ status: number; body: unknown }> {
  return bao.get().api.request('GET', p);
}

async function issuers(mount: string): Promise<string[]> {
  const res = await bao.get().api.request('LIST', `${mount}/issuers`);
  return ((res.body as { data?: { keys?: string[] } })?.data?.keys ?? []).sort();
}

async function rootPem(mount: string): Promise<string> {
  const res = await get(`${mount}/cert/ca`);
  expect(res.status).toBe(200);
  return (res.body as { data: { certificate: string } }).data.certificate;
}

/** The `path "..." { capabilities = [...] }` rules of a policy, normalised. */
function rules(hcl: string): string[] {
  return [...hcl.matchAll(/path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}/g)].map((m) => `${m[1]} ${m[2]!.replace(/[\s"]/g, '')}`).sort();
}

describe.skipIf(!bao.available)('manifests/vault/setup.sh', () => {
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-setup-'));
    // Vault only needs some PEM certificate as the API server's CA (the stand-in speaks plain http).
    cluster = await startFakeCluster({ name: 'cluster1', dir, caPem: bao.get().rootPem, key: bao.get().jwtKey });
    first = await runSetup(bao.get(), setupArgs(cluster));
  });
  afterAll(async () => {
    await cluster?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('configures the mount, root, policies, auth and role, and prints the agent settings', async () => {
    expect(first.code, first.stderr).toBe(0);
    expect(first.configMap).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istiod-vault-agent', namespace: 'istio-system' } });
    expect(first.settings).toEqual({
      VAULT_ADDR: bao.get().server.addr,
      AUTH_METHOD: 'kubernetes',
      AUTH_MOUNT: AUTH,
      AUTH_ROLE: 'istiod',
      PKI_SIGN_PATH: `${MOUNT}/root/sign-intermediate`,
      CLUSTER_NAME: 'cluster1',
      CERT_TTL: '720h',
    });
    const mount = (await get(`sys/mounts/${MOUNT}`)).body as { data: { type: string; config: { max_lease_ttl: number } } };
    expect(mount.data.type).toBe('pki');
    expect(mount.data.config.max_lease_ttl).toBe(87600 * 3600);
    expect(await issuers(MOUNT)).toHaveLength(1);

    const signing = (await get(`sys/policies/acl/${POLICY}`)).body as { data: { policy: string } };
    expect(rules(signing.data.policy)).toEqual(
      [
        `${MOUNT}/root/sign-intermediate update`,
        `${MOUNT}/issuer/+/sign-intermediate update`,
        `${MOUNT}/cert/ca read`,
        `${MOUNT}/cert/ca_chain read`,
        `${MOUNT}/issuer/+/json read`,
      ].sort(),
    );
    const tokenSelf = (await get(`sys/policies/acl/${POLICY}-token`)).body as { data: { policy: string } };
    expect(rules(tokenSelf.data.policy)).toEqual(['auth/token/lookup-self read', 'auth/token/renew-self update', 'auth/token/revoke-self update']);

    const authCfg = (await get(`auth/${AUTH}/config`)).body as { data: Record<string, unknown> };
    expect(authCfg.data.kubernetes_host).toBe(cluster.review.url);
    expect(authCfg.data.disable_local_ca_jwt).toBe(true);
    const role = (await get(`auth/${AUTH}/role/istiod`)).body as { data: Record<string, unknown> };
    expect(role.data).toMatchObject({
      bound_service_account_names: ['istiod'],
      bound_service_account_namespaces: ['istio-system'],
      audience: 'vault',
      token_policies: [POLICY, `${POLICY}-token`],
      token_no_default_policy: true,
    });
  });

  it('is idempotent: a second run keeps the root and the settings', async () => {
    const before = { root: await rootPem(MOUNT), issuers: await issuers(MOUNT), auth: ((await get('sys/auth')).body as { data: Record<string, { accessor: string }> }).data[`${AUTH}/`]!.accessor };
    const again = await runSetup(bao.get(), setupArgs(cluster));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/reusing the pki mount/);
    expect(again.stderr).toMatch(/reusing the existing root of mesh-pki \(not regenerated\)/);
    expect(again.stderr).toMatch(/reusing kubernetes auth/);
    expect(again.stdout).toBe(first.stdout);
    expect(await rootPem(MOUNT)).toBe(before.root);
    expect(await issuers(MOUNT)).toEqual(before.issuers);
    // The auth mount was not re-created (same accessor: existing logins and roles stay).
    expect(((await get('sys/auth')).body as { data: Record<string, { accessor: string }> }).data[`${AUTH}/`]!.accessor).toBe(before.auth);
  });

  it('gives the agent, with exactly the printed settings, an intermediate under the root', async () => {
    const certDir = path.join(dir, 'certs-ok');
    await fs.mkdir(certDir);
    const token = await cluster.writeToken(path.join(dir, 'istiod.jwt'));
    const run = await runAgent(['init'], cleanEnv({ ...first.settings, SA_TOKEN_PATH: token, CERT_DIR: certDir, KEY_TYPE: 'ec' }));
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(await fs.readFile(path.join(certDir, 'root-cert.pem'), 'utf8')).toBe((await rootPem(MOUNT)).trim() + '\n');
    if (haveOpenssl) {
      expect(openssl(['verify', '-CAfile', 'root-cert.pem', '-untrusted', 'cert-chain.pem', 'ca-cert.pem'], certDir).trim()).toBe('ca-cert.pem: OK');
      expect(openssl(['x509', '-in', 'ca-cert.pem', '-noout', '-subject'], certDir)).toMatch(/L\s*=\s*cluster1/);
    }
    // Vault asked the stand-in API server, with the reviewer token from setup.sh, for audience vault.
    const ok = cluster.review.reviews.filter((r) => r.authenticated);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(ok.at(-1)).toMatchObject({ username: 'system:serviceaccount:istio-system:istiod', audiences: ['vault'] });
    expect(ok.at(-1)!.authorization).toBe(`Bearer ${await fs.readFile(cluster.reviewerJwtFile, 'utf8')}`);
  });

  it.each([
    ['another service account', { namespace: 'istio-system', name: 'default' }, 'vault'],
    ['istiod of another namespace', { namespace: 'evil', name: 'istiod' }, 'vault'],
    ['a token for another audience', { namespace: 'istio-system', name: 'istiod' }, 'istio-ca'],
  ])('refuses %s: init exits 1 naming the 403', async (_what, sa, audience) => {
    const token = await cluster.writeToken(path.join(dir, `bad-${sa.namespace}-${sa.name}-${audience}.jwt`), sa, audience);
    const certDir = path.join(dir, `certs-bad-${sa.name}-${audience}`);
    await fs.mkdir(certDir);
    const run = await runAgent(['init'], cleanEnv({ ...first.settings, SA_TOKEN_PATH: token, CERT_DIR: certDir, INIT_TIMEOUT: '20s' }));
    expect(run.code).toBe(1);
    const failure = run.lines.find((l) => l.level === 'error' && /^init failed/.test(l.msg));
    expect(failure?.msg, run.stdout).toMatch(/logging in with kubernetes auth .* HTTP 403/);
    expect(failure?.reason).toBe('vault_denied');
    await expect(fs.access(path.join(certDir, 'ca-cert.pem'))).rejects.toThrow();
  });

  it('yields a token that can sign at the mount and do nothing else', async () => {
    const api = bao.get().api;
    const jwt = await fs.readFile(await cluster.writeToken(path.join(dir, 'probe.jwt')), 'utf8');
    const login = await api.request('POST', `auth/${AUTH}/login`, { role: 'istiod', jwt }, null);
    expect(login.status, JSON.stringify(login.body)).toBe(200);
    const auth = (login.body as { auth: { client_token: string; policies: string[] } }).auth;
    expect(auth.policies.sort()).toEqual([POLICY, `${POLICY}-token`].sort());
    const as = (method: string, p: string, body?: unknown) => api.request(method, p, body, auth.client_token);

    // Allowed: sign an intermediate at the mount, read its CA, manage the token itself.
    if (haveOpenssl) {
      openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'probe.key', '-subj', '/CN=probe', '-out', 'probe.csr']);
      const csr = await fs.readFile(path.join(dir, 'probe.csr'), 'utf8');
      const signed = await as('POST', `${MOUNT}/root/sign-intermediate`, { csr, common_name: 'probe', ttl: '1h' });
      expect(signed.status, JSON.stringify(signed.body)).toBe(200);
    }
    expect((await as('GET', `${MOUNT}/cert/ca`)).status).toBe(200);
    expect((await as('GET', 'auth/token/lookup-self')).status).toBe(200);

    // Denied: everything else, including what Vault's `default` policy would have allowed. (A PKI
    // mount's CA certificate is public in Vault and OpenBao: readable with any token or none.)
    const denied: [string, string, unknown?][] = [
      ['GET', 'sys/mounts'],
      ['GET', 'sys/policies/acl'],
      ['GET', 'secret/data/anything'],
      ['POST', 'secret/data/anything', { data: { a: 'b' } }],
      ['POST', 'pki/root/sign-intermediate', { csr: 'x' }],
      ['POST', `${MOUNT}/root/generate/internal`, { common_name: 'rogue root' }],
      ['POST', `${MOUNT}/issue/anything`, { common_name: 'x' }],
      ['POST', `${MOUNT}/roles/anything`, {}],
      ['GET', 'cubbyhole/anything'],
      ['POST', 'sys/wrapping/wrap', { a: 'b' }],
      ['POST', `auth/${AUTH}/role/istiod`, { audience: 'other' }],
      ['POST', 'auth/token/create', {}],
    ];
    for (const [method, p, body] of denied) {
      const res = await as(method, p, body);
      expect(res.status, `${method} ${p}: ${JSON.stringify(res.body)}`).toBe(403);
    }
    expect((await as('POST', 'auth/token/revoke-self')).status).toBe(204);
  });

  it('imports a root from a PEM bundle into a new mount, and a second run keeps it', async () => {
    if (!haveOpenssl) return;
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'imported.key', '-out', 'imported.crt', '-subj', '/CN=Imported Mesh Root', '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    const bundle = path.join(dir, 'imported-bundle.pem');
    await fs.writeFile(bundle, (await fs.readFile(path.join(dir, 'imported.crt'), 'utf8')) + (await fs.readFile(path.join(dir, 'imported.key'), 'utf8')), { mode: 0o600 });
    const args = setupArgs(cluster, 'imported-pki', ['--root-bundle', bundle, '--auth-mount', 'kube-imported-mesh-auth']);
    const one = await runSetup(bao.get(), args);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stderr).toMatch(/importing the root/);
    const cert = await fs.readFile(path.join(dir, 'imported.crt'), 'utf8');
    expect((await rootPem('imported-pki')).trim()).toBe(cert.trim());
    const two = await runSetup(bao.get(), args);
    expect(two.code, two.stderr).toBe(0);
    expect(two.stderr).toMatch(/reusing the existing root/);
    expect(await issuers('imported-pki')).toHaveLength(1);
    expect(two.settings.PKI_SIGN_PATH).toBe('imported-pki/root/sign-intermediate');
  });

  it('refuses to replace an existing root with another bundle', async () => {
    if (!haveOpenssl) return;
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'other.key', '-out', 'other.crt', '-subj', '/CN=Other Root', '-days', '30']);
    const bundle = path.join(dir, 'other-bundle.pem');
    await fs.writeFile(bundle, (await fs.readFile(path.join(dir, 'other.crt'), 'utf8')) + (await fs.readFile(path.join(dir, 'other.key'), 'utf8')), { mode: 0o600 });
    const before = await rootPem(MOUNT);
    const res = await runSetup(bao.get(), setupArgs(cluster, MOUNT, ['--root-bundle', bundle]));
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/already holds another root/);
    expect(res.stdout).toBe('');
    expect(await rootPem(MOUNT)).toBe(before);
    expect(await issuers(MOUNT)).toHaveLength(1);
  });

  it.each([
    ['no --cluster', ['--kube-host', 'https://k8s.example:6443', '--kube-ca-file', '/dev/null'], /--cluster is required/],
    ['no --kube-host', ['--cluster', 'c9'], /--kube-host is required/],
    ['an unknown flag', ['--cluster', 'c9', '--bogus', 'x'], /unknown option --bogus/],
    ['a CA file that is not PEM', ['--cluster', 'c9', '--kube-host', 'https://k8s.example:6443', '--kube-ca-file', '/dev/null'], /holds no PEM certificate/],
  ])('rejects %s with a message and changes nothing', async (_what, args, message) => {
    const mountsBefore = Object.keys(((await get('sys/mounts')).body as { data: object }).data).sort();
    const res = await runSetup(bao.get(), args);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(message);
    expect(res.stdout).toBe('');
    expect(Object.keys(((await get('sys/mounts')).body as { data: object }).data).sort()).toEqual(mountsBefore);
  });
});
