/**
 * Inputs mounted from Secrets/ConfigMaps change under a running agent (kubelet's ..data swap): the
 * Vault CA bundle, the AppRole secret-id, extra trust roots. And Vault's own root changes (a root
 * rotation): the agent refuses to publish and says so, naming both roots.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setupAppRole, signerPolicy } from '../../src/dev/configure.js';
import { DEV_POLICY } from '../../src/dev/dev-environment.js';
import { freePort } from '../../src/dev/dev-server.js';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { cleanEnv, runAgent, startAgent, type AgentRun } from '../helpers/agent-process.js';
import { kubeletWrite } from '../helpers/kubelet-volume.js';
import { httpGet, sample } from '../helpers/metrics-text.js';
import { waitFor } from '../helpers/wait.js';
import { useOpenBao } from '../helpers/openbao.js';
import { makeRoot } from '../helpers/test-pki.js';

let work: string;
let dir: string;
const agents: AgentRun[] = [];
beforeEach(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-inputs-'));
  dir = path.join(work, 'certs');
  await fs.mkdir(dir);
});
afterEach(async () => {
  for (const a of agents.splice(0)) {
    a.kill('SIGKILL');
    await a.exit;
  }
  await fs.rm(work, { recursive: true, force: true });
});

function start(env: Record<string, string>, mode = 'run'): AgentRun {
  const a = startAgent([mode], cleanEnv({ CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', ...env }));
  agents.push(a);
  return a;
}
const published = (a: AgentRun) => a.lines.filter((l) => l.msg === 'published a new intermediate').length;

describe('mounted inputs that change', () => {
  const tlsBao = useOpenBao({ tls: true });

  it.skipIf(!tlsBao.available)('VAULT_CACERT: a kubelet update to the CA bundle is used from the next request', async () => {
    const caDir = path.join(work, 'vault-ca');
    const wrongCa = (await makeRoot('CN=Not Vault CA')).pem;
    await kubeletWrite(caDir, { 'ca.crt': tlsBao.get().server.tlsCaPem! });
    const env = { ...tlsBao.get().env, VAULT_CACERT: path.join(caDir, 'ca.crt') };
    expect((await runAgent(['init'], cleanEnv({ CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', ...env }))).code).toBe(0);
    // The sidecar starts while the mounted bundle is wrong (Vault's CA being rotated)...
    await kubeletWrite(caDir, { 'ca.crt': wrongCa });
    const a = start(env, 'sidecar');
    await a.waitFor((l) => l.msg === 'adopted the bundle on disk');
    a.kill('SIGHUP');
    await a.waitFor((l) => l.msg.startsWith('issuance failed') && /TLS verification of VAULT_ADDR .* failed/.test(l.msg));
    // ...then kubelet delivers the right one.
    const from = a.lines.length;
    await kubeletWrite(caDir, { 'ca.crt': tlsBao.get().server.tlsCaPem! });
    await a.waitFor((l) => l.setting === 'VAULT_CACERT' && /changed on disk/.test(l.msg), 10_000, from);
    a.kill('SIGHUP');
    await a.waitFor((l) => l.msg === 'published a new intermediate', 30_000, from);
  });
});

describe('mounted inputs and root changes (plain HTTP Vault)', () => {
  const bao = useOpenBao();

  it.skipIf(!bao.available)('APPROLE_SECRET_ID_FILE: a rotated secret-id is picked up for the next login', async () => {
    const api = bao.get().api;
    const first = await setupAppRole(api, { mount: 'approle', role: 'istiod', policy: DEV_POLICY });
    const secretDir = path.join(work, 'approle');
    await kubeletWrite(secretDir, { 'secret-id': first.secretId });
    const a = start({ VAULT_ADDR: bao.get().server.addr, AUTH_METHOD: 'approle', APPROLE_ROLE_ID: first.roleId, APPROLE_SECRET_ID_FILE: path.join(secretDir, 'secret-id') });
    await a.waitFor((l) => l.msg === 'published a new intermediate');
    // Operator rotates the secret-id: a new one is mounted, the old one destroyed, tokens revoked.
    const second = ((await api.call('POST', 'auth/approle/role/istiod/secret-id', {})) as { data: { secret_id: string } }).data.secret_id;
    await kubeletWrite(secretDir, { 'secret-id': second });
    await api.call('POST', 'auth/approle/role/istiod/secret-id/destroy', { secret_id: first.secretId });
    await api.call('POST', 'sys/leases/revoke-prefix/auth/approle', {});
    await a.waitFor((l) => l.setting === 'APPROLE_SECRET_ID_FILE' && /changed on disk/.test(l.msg), 10_000);
    a.kill('SIGHUP');
    await waitFor(() => published(a) === 2, { what: 'a second publish', timeoutMs: 30_000 });
    expect(a.stdout).not.toContain(second);
    expect(a.stdout).not.toContain(first.secretId);
  });

  it.skipIf(!bao.available)('EXTRA_TRUST_ROOTS_FILE: appended to root-cert.pem at first issuance; a later change waits for a restart instead of breaking istiod\'s reload', async () => {
    const extraDir = path.join(work, 'extra');
    const oldRoot = await makeRoot('CN=Previous Mesh Root');
    await kubeletWrite(extraDir, { 'roots.pem': oldRoot.pem });
    const a = start({ ...bao.get().env, EXTRA_TRUST_ROOTS_FILE: path.join(extraDir, 'roots.pem') });
    await a.waitFor((l) => l.msg === 'published a new intermediate');
    const rootBytes = await fs.readFile(path.join(dir, 'root-cert.pem'), 'utf8');
    expect(certsFromPem(rootBytes, 'root').map((c) => c.subject)).toEqual(['CN=Dev Mesh Root CA', 'CN=Previous Mesh Root']);
    await kubeletWrite(extraDir, { 'roots.pem': (await makeRoot('CN=Another Root')).pem });
    await a.waitFor((l) => l.setting === 'EXTRA_TRUST_ROOTS_FILE' && /changed on disk/.test(l.msg), 10_000);
    a.kill('SIGHUP');
    // istiod runs without ISTIO_MULTIROOT_MESH here: the change waits for its restart, and the agent says so.
    const held = await a.waitFor((l) => l.restartRequired === true && /EXTRA_TRUST_ROOTS_FILE/.test(JSON.stringify(l.notes)), 30_000);
    expect(held.level).toBe('warn');
    await waitFor(() => published(a) === 2, { what: 'a second publish', timeoutMs: 30_000 });
    expect(await fs.readFile(path.join(dir, 'root-cert.pem'), 'utf8')).toBe(rootBytes);
  });

  it.skipIf(!bao.available)('ROOT_ROTATION=off and Vault\'s root rotated: refuses to publish, names both roots, counts root_changed, keeps the generation', async () => {
    const port = await freePort();
    // Its own PKI mount, so rotating this root does not disturb other tests sharing the server.
    const api = bao.get().api;
    await api.call('POST', 'sys/mounts/rotating-pki', { type: 'pki', config: { max_lease_ttl: '87600h' } });
    await api.call('POST', 'rotating-pki/root/generate/internal', { common_name: 'Mesh Root 2026', issuer_name: 'r2026', key_type: 'ec', ttl: '87600h' });
    await api.call('PUT', `sys/policies/acl/${DEV_POLICY}`, { policy: `path "pki/root/sign-intermediate" { capabilities = ["update"] }\npath "rotating-pki/root/sign-intermediate" { capabilities = ["update"] }\n` });
    const a = start({ ...bao.get().env, PKI_SIGN_PATH: 'rotating-pki/root/sign-intermediate', ROOT_ROTATION: 'off', METRICS_ADDR: `127.0.0.1:${port}` });
    await a.waitFor((l) => l.msg === 'published a new intermediate');
    const target = await fs.readlink(path.join(dir, '..data'));
    const rotated = (await api.call('POST', 'rotating-pki/root/rotate/internal', { common_name: 'Mesh Root 2027', issuer_name: 'r2027', key_type: 'ec', ttl: '87600h' })) as { data: { issuer_id: string } };
    await api.call('POST', 'rotating-pki/config/issuers', { default: rotated.data.issuer_id });
    a.kill('SIGHUP');
    const err = await a.waitFor((l) => l.reason === 'root_changed' && l.level === 'error', 30_000);
    // Not retryable: one error line, with the cause and what the agent keeps.
    expect(err.msg).toMatch(/keeping the current bundle; retrying in /);
    expect(err.msg).toMatch(/Vault's root "CN=Mesh Root 2027" \(SHA-256 [0-9A-F:]+\) is not the root istiod trusts in root-cert.pem \("CN=Mesh Root 2026" SHA-256 [0-9A-F:]+\)/);
    expect(await fs.readlink(path.join(dir, '..data'))).toBe(target);
    const m = (await httpGet(`http://127.0.0.1:${port}/metrics`)).text;
    expect(sample(m, 'istiod_vault_agent_issuances_total', { result: 'failure', reason: 'root_changed' })).toBe(1);
    expect(sample(m, 'istiod_vault_agent_ready')).toBe(1);
    await api.call('PUT', `sys/policies/acl/${DEV_POLICY}`, { policy: signerPolicy('pki') });
  });
});
