/**
 * `init` through every auth method against a real OpenBao, and its failure modes: denied login, missing
 * policy, Vault down, TLS trust. Each failure must exit with the documented code and a message a person
 * can act on (the Vault path, the status, what to check).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, setupAppRole, setupKubernetesAuth, writePolicy } from '../../src/dev/configure.js';
import { serviceAccountJwt } from '../../src/dev/jwt.js';
import { DEV_POLICY } from '../../src/dev/dev-environment.js';
import { freePort } from '../../src/dev/dev-server.js';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { useOpenBao } from '../helpers/openbao.js';
import { DUMMY_CA_PEM, startTokenReviewServer, type TokenReviewServer } from '../helpers/tokenreview-server.js';
import { waitFor } from '../helpers/wait.js';

const bao = useOpenBao();
let work: string;
let tokenReview: TokenReviewServer;

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-auth-'));
  if (!bao.available) return;
  tokenReview = await startTokenReviewServer({ publicKey: bao.get().jwtKey.publicKeyPem });
});
afterAll(async () => {
  await tokenReview?.close();
  await fs.rm(work, { recursive: true, force: true });
});

async function certDir(): Promise<string> {
  return fs.mkdtemp(path.join(work, 'certs-'));
}

async function writeSaToken(name: string, sa = { namespace: 'istio-system', name: 'istiod' }, audience = 'vault'): Promise<string> {
  const file = path.join(work, name);
  await fs.writeFile(file, serviceAccountJwt(bao.get().jwtKey.privateKey, sa, { audience }));
  return file;
}

const base = () => ({ VAULT_ADDR: bao.get().server.addr, KEY_TYPE: 'ec', CERT_TTL: '1h', INIT_TIMEOUT: '20s' });

describe.skipIf(!bao.available)('init: auth methods', () => {
  beforeAll(async () => {
    await setupKubernetesAuth(bao.get().api, {
      mount: 'kube-c1-mesh-auth',
      role: 'istiod',
      policy: DEV_POLICY,
      sa: { namespace: 'istio-system', name: 'istiod' },
      kubernetesHost: tokenReview.url,
      kubernetesCaPem: DUMMY_CA_PEM,
    });
  });

  it('kubernetes auth at a per-cluster mount, via a TokenReview', async () => {
    const dir = await certDir();
    const before = tokenReview.reviews.length;
    const run = await runAgent(['init'], cleanEnv({ ...base(), AUTH_METHOD: 'kubernetes', AUTH_MOUNT: 'kube-c1-mesh-auth', AUTH_ROLE: 'istiod', SA_TOKEN_PATH: await writeSaToken('k8s-token'), CERT_DIR: dir }));
    expect(run.code, run.stdout).toBe(0);
    expect(tokenReview.reviews.length).toBe(before + 1);
    expect((await fs.readdir(dir)).sort()).toContain('ca-key.pem');
  });

  it('kubernetes auth: a login as another service account is refused with exit 1 and a message naming the path and the 403', async () => {
    const run = await runAgent(['init'], cleanEnv({ ...base(), AUTH_METHOD: 'kubernetes', AUTH_MOUNT: 'kube-c1-mesh-auth', AUTH_ROLE: 'istiod', SA_TOKEN_PATH: await writeSaToken('other-token', { namespace: 'default', name: 'attacker' }), CERT_DIR: await certDir() }));
    expect(run.code).toBe(1);
    const fail = run.lines.find((l) => l.msg.startsWith('init failed'));
    expect(fail?.msg).toMatch(/auth\/kube-c1-mesh-auth\/login: HTTP 403: service account name not authorized \(likely causes: role "istiod"/);
    expect(fail?.reason).toBe('vault_denied');
  });

  it('kubernetes auth: a TokenReview outage (Vault answers 403) is retried quickly before it is reported', async () => {
    tokenReview.mode = 'error';
    const before = tokenReview.reviews.length;
    const dir = await certDir();
    const token = await writeSaToken('k8s-token-2');
    const run = runAgent(['init'], cleanEnv({ ...base(), AUTH_METHOD: 'kubernetes', AUTH_MOUNT: 'kube-c1-mesh-auth', AUTH_ROLE: 'istiod', SA_TOKEN_PATH: token, CERT_DIR: dir }));
    // Heal the "API server" once the first review failed, during the quick retries.
    await waitFor(() => tokenReview.reviews.length > before, { what: 'a first TokenReview', timeoutMs: 30_000, intervalMs: 10 });
    tokenReview.mode = 'ok';
    const res = await run;
    expect(res.code, res.stdout).toBe(0);
    expect(tokenReview.reviews.length).toBeGreaterThanOrEqual(before + 2);
  });

  it('jwt auth with the wrong role exits 1 naming the path', async () => {
    const run = await runAgent(['init'], cleanEnv({ ...base(), ...bao.get().env, AUTH_ROLE: 'no-such-role', CERT_DIR: await certDir() }));
    expect(run.code).toBe(1);
    expect(run.lines.find((l) => l.msg.startsWith('init failed'))?.msg).toMatch(/auth\/jwt\/login: HTTP 400: role "no-such-role" could not be found/);
  });

  it('approle auth, with the secret-id read from a file', async () => {
    const { roleId, secretId } = await setupAppRole(bao.get().api, { mount: 'approle', role: 'istiod', policy: DEV_POLICY });
    const secretFile = path.join(work, 'secret-id');
    await fs.writeFile(secretFile, `${secretId}\n`);
    const run = await runAgent(['init'], cleanEnv({ ...base(), AUTH_METHOD: 'approle', APPROLE_ROLE_ID: roleId, APPROLE_SECRET_ID_FILE: secretFile, CERT_DIR: await certDir() }));
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).not.toContain(secretId);
  });

  it('token auth', async () => {
    const token = await createToken(bao.get().api, DEV_POLICY);
    const run = await runAgent(['init'], cleanEnv({ ...base(), AUTH_METHOD: 'token', VAULT_TOKEN: token, CERT_DIR: await certDir() }));
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).not.toContain(token);
  });

  it('a token whose policy lacks the signing path exits 1 naming the path, the 403 and the policy to check', async () => {
    await writePolicy(bao.get().api, 'read-only-ca', 'path "pki/cert/ca" { capabilities = ["read"] }\n');
    const token = await createToken(bao.get().api, 'read-only-ca');
    const run = await runAgent(['init'], cleanEnv({ ...base(), AUTH_METHOD: 'token', VAULT_TOKEN: token, CERT_DIR: await certDir() }));
    expect(run.code).toBe(1);
    expect(run.lines.find((l) => l.msg.startsWith('init failed'))?.msg).toMatch(/pki\/root\/sign-intermediate: HTTP 403: .*permission denied.*policy must grant "update" on pki\/root\/sign-intermediate/);
  });

  it('a wrong PKI mount is reported as such, without retrying', async () => {
    const run = await runAgent(['init'], cleanEnv({ ...base(), ...bao.get().env, PKI_SIGN_PATH: 'nope/root/sign-intermediate', CERT_DIR: await certDir() }));
    expect(run.code).toBe(1);
    // The first call to the mount is the (unauthenticated) issuer list: Vault's 403 for an unknown mount.
    expect(run.lines.find((l) => l.msg.startsWith('init failed'))?.msg).toMatch(/nope\/issuers: HTTP 403: .*check that "nope" in PKI_SIGN_PATH is the PKI mount/);
  });
});

describe.skipIf(!bao.available)('init: Vault unavailable and bad settings', () => {
  it('retries while Vault is down and exits 1 at INIT_TIMEOUT with the last reason', async () => {
    const port = await freePort();
    const start = Date.now();
    const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, VAULT_ADDR: `http://127.0.0.1:${port}`, INIT_TIMEOUT: '4s', CERT_DIR: await certDir() }));
    const took = Date.now() - start;
    expect(run.code).toBe(1);
    expect(took).toBeGreaterThan(2000);
    const retries = run.lines.filter((l) => /^issuance failed: .*; retrying in /.test(l.msg));
    expect(retries.length).toBeGreaterThanOrEqual(2);
    // Retries are warnings; only the final failure is an error, once.
    for (const r of retries) expect(r.level).toBe('warn');
    expect(run.lines.filter((l) => l.level === 'error')).toHaveLength(1);
    const last = run.lines.find((l) => /giving up after INIT_TIMEOUT/.test(l.msg));
    expect(last?.msg).toMatch(/ECONNREFUSED.*nothing listens at VAULT_ADDR/);
    expect(last?.reason).toBe('vault_unreachable');
  });

  it.each([
    [{ CERT_TTL: '30x' }, 'CERT_TTL: "30x" is not a duration (use 90s, 15m, 720h)'],
    [{ VAULT_ADDR: 'vault:8200' }, 'VAULT_ADDR: "vault:8200" must start with http:// or https://'],
    [{ AUTH_METHOD: 'kerberos' }, 'AUTH_METHOD: "kerberos" is not one of kubernetes, jwt, approle, token'],
  ])('bad settings %o exit 2 with one line naming the setting, before touching anything', async (bad, line) => {
    const dir = await certDir();
    const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, CERT_DIR: dir, ...bad }));
    expect(run.code).toBe(2);
    expect(run.stderr.trim()).toBe(line);
    expect(run.stdout).toBe('');
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('an unreadable or empty service-account token is bad configuration (exit 2 naming SA_TOKEN_PATH), found before Vault is called', async () => {
    const empty = path.join(work, 'empty-token');
    await fs.writeFile(empty, '\n');
    for (const [file, text] of [[path.join(work, 'missing'), /^SA_TOKEN_PATH: cannot read .*missing \(ENOENT\); check the projected service-account token volume$/], [empty, /^SA_TOKEN_PATH: cannot read .*empty-token \(empty\)/]] as const) {
      const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, VAULT_ADDR: 'http://127.0.0.1:1', SA_TOKEN_PATH: file, CERT_DIR: await certDir() }));
      expect(run.code).toBe(2);
      expect(run.stderr.trim()).toMatch(text);
      // Not one request was attempted: the address above refuses connections, and nothing says so.
      expect(run.stdout).not.toMatch(/ECONNREFUSED/);
    }
  });
});

describe.skipIf(!bao.available)('init: TLS to Vault', () => {
  const tlsBao = useOpenBao({ tls: true });

  it('VAULT_SKIP_VERIFY=false against an untrusted certificate fails verification', async () => {
    const run = await runAgent(['init'], cleanEnv({ ...tlsBao.get().env, VAULT_SKIP_VERIFY: 'false', CERT_DIR: await certDir() }));
    expect(run.code).toBe(1);
    const fail = run.lines.find((l) => l.msg.startsWith('init failed'));
    expect(fail?.msg).toMatch(/TLS verification of VAULT_ADDR \(https:\/\/127\.0\.0\.1:\d+\) failed .*set VAULT_CACERT/);
  });

  it('VAULT_CACERT makes it work', async () => {
    const ca = path.join(work, 'vault-ca.pem');
    await fs.writeFile(ca, tlsBao.get().server.tlsCaPem!);
    const run = await runAgent(['init'], cleanEnv({ ...tlsBao.get().env, VAULT_CACERT: ca, CERT_DIR: await certDir() }));
    expect(run.code, run.stdout).toBe(0);
  });

  it('an unreadable VAULT_CACERT is a configuration error (exit 2)', async () => {
    const run = await runAgent(['init'], cleanEnv({ ...tlsBao.get().env, VAULT_CACERT: path.join(work, 'nope.pem'), CERT_DIR: await certDir() }));
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^VAULT_CACERT: cannot read .*nope.pem/);
  });
});
