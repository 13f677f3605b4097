/**
 * Issue 11, layout (a): the Vault Agent Injector layout, set up as its users do. A KV v1 mount per
 * cluster holding one secret with the four PEMs (`kv put ... ca_key=@ca-key.pem ...`) made from a real
 * intermediate (`pki_int/intermediate/generate/exported`, signed by `pki/root/sign-intermediate`,
 * imported with `pki_int/intermediate/set-signed`), a per-cluster auth mount (jwt at
 * auth/kubernetes-cluster1), and a role with exactly the policy of docs/migrate/vault-agent-injector-kv.md.
 * The built agent (`run`, BUNDLE_SOURCE=kv-bundle) publishes a verified bundle; the secret is then renewed
 * out of band and the running agent publishes it without restart; then a broken write (a key that does
 * not match; a bundle under another root) is refused, the reason logged and counted once, and the
 * published files stay byte-identical. Also: `init` publishes a stored bundle that is already due, with a
 * warning; the policy lets the agent read its secret and nothing else.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/dev/dev-server.js';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { verifyBundle } from '../../src/pki/verify.js';
import { readCertDir } from '../../src/store/cert-dir-reader.js';
import { cleanEnv, runAgent, startAgent, type LogLine } from '../helpers/agent-process.js';
import { httpGet, sample } from '../helpers/metrics-text.js';
import { useOpenBao } from '../helpers/openbao.js';
import { requireCommand } from '../helpers/tools.js';
import { bao, clusterAuth, expectRefused, exportedIntermediate, loginAs, policyFromDoc, snapshot, statusWith, type MadeIntermediate } from './support/layouts.js';

const openbao = useOpenBao();
const haveOpenssl = requireCommand('openssl', 'apt-get install openssl');

const KV_MOUNT = 'kubernetes-cluster1-secrets';
const SECRET = `${KV_MOUNT}/istiod-service/certs`;
const AUTH_MOUNT = 'kubernetes-cluster1';
const ROLE = 'istiod';
const POLICY = 'istiod-kv-bundle';
const GUIDE = 'docs/migrate/vault-agent-injector-kv.md';

let work: string;
let made = 0;
/** Every intermediate made, to check that none of their keys reached a log. */
const made_: MadeIntermediate[] = [];

/** The base64 body of a PEM key (what would show if it leaked, whatever the framing). */
const keyBody = (pem: string) => pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('').slice(0, 64);

/** A renewed intermediate, as the out-of-band job makes it. */
async function intermediate(o: { signer?: string; ttl?: string } = {}): Promise<MadeIntermediate> {
  const n = ++made;
  const int = await exportedIntermediate(openbao.get(), { mount: o.signer === 'pki-other' ? 'pki_int_other' : 'pki_int', signer: o.signer ?? 'pki', ttl: o.ttl ?? '2h', cn: `Cluster1 Intermediate ${n}`, dir: path.join(work, `int-${n}`) });
  made_.push(int);
  return int;
}

/** `vault kv put` of the bundle, exactly as the injector layout's users write it. */
async function kvPut(files: { dir: string }, keyFrom?: { dir: string }): Promise<void> {
  const key = keyFrom ? path.join(keyFrom.dir, 'ca-key.pem') : 'ca-key.pem';
  await bao(openbao.get(), ['kv', 'put', SECRET, `ca_key=@${key}`, 'ca_cert=@ca-cert.pem', 'cert_chain=@cert-chain.pem', 'root_cert=@root-cert.pem'], files.dir);
}

function agentEnv(certDir: string, extra: Record<string, string> = {}): Record<string, string> {
  const env = openbao.get();
  return cleanEnv({
    VAULT_ADDR: env.server.addr,
    AUTH_METHOD: 'jwt',
    AUTH_MOUNT,
    AUTH_ROLE: ROLE,
    SA_TOKEN_PATH: env.saTokenPath,
    BUNDLE_SOURCE: 'kv-bundle',
    KV_BUNDLE_PATH: SECRET,
    BUNDLE_POLL_INTERVAL: '1s',
    CERT_DIR: certDir,
    LOG_LEVEL: 'debug',
    ...extra,
  });
}

async function certDir(name: string): Promise<string> {
  const dir = path.join(work, name);
  // The pod's emptyDir exists before the agent starts.
  await fs.mkdir(dir);
  return dir;
}

describe.skipIf(!openbao.available)('layout: a KV v1 bundle per cluster (Vault Agent Injector)', () => {
  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-kv-layout-'));
    const env = openbao.get();
    await bao(env, ['secrets', 'enable', `-path=${KV_MOUNT}`, '-version=1', 'kv']);
    for (const m of ['pki_int', 'pki_int_other']) {
      await bao(env, ['secrets', 'enable', `-path=${m}`, 'pki']);
      await bao(env, ['secrets', 'tune', '-max-lease-ttl=8760h', m]);
    }
    // Another root, for the "chain to another root" step.
    await bao(env, ['secrets', 'enable', '-path=pki-other', 'pki']);
    await bao(env, ['write', 'pki-other/root/generate/internal', 'common_name=Another Root', 'key_type=ec', 'ttl=8760h']);
    await fs.writeFile(path.join(work, 'policy.hcl'), await policyFromDoc(GUIDE));
    await bao(env, ['policy', 'write', POLICY, 'policy.hcl'], work);
    await clusterAuth(env, AUTH_MOUNT, ROLE, POLICY);
  });
  afterAll(async () => {
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('publishes the stored bundle verified, follows an out-of-band renewal without restart, and refuses broken writes once, keeping the files', async () => {
    const first = await intermediate();
    await kvPut(first);
    const dir = await certDir('run');
    const port = await freePort();
    const agent = startAgent(['run'], agentEnv(dir, { METRICS_ADDR: `127.0.0.1:${port}` }));
    const metrics = async () => (await httpGet(`http://127.0.0.1:${port}/metrics`)).text;
    try {
      // 1. The stored bundle, verified and published.
      const published = (serial: string) => (l: LogLine) => l.msg === 'published the bundle from its source' && l.serial === serial;
      await agent.waitFor(published(first.serial));
      const out = await readCertDir(dir);
      expect(out.state).toBe('present');
      if (out.state !== 'present') return;
      const v = verifyBundle(out.bundle.files, { now: Date.now() });
      expect(v.intermediate.serial).toBe(first.serial);
      expect(out.bundle.files.caKey).toBe(await fs.readFile(path.join(first.dir, 'ca-key.pem'), 'utf8'));
      expect(certsFromPem(out.bundle.files.rootCert, 'root')[0]!.der.equals(certsFromPem(openbao.get().rootPem, 'root')[0]!.der)).toBe(true);
      if (haveOpenssl) expect(execFileSync('openssl', ['verify', '-CAfile', 'root-cert.pem', '-untrusted', 'cert-chain.pem', 'ca-cert.pem'], { cwd: dir, encoding: 'utf8' }).trim()).toBe('ca-cert.pem: OK');
      const m1 = await metrics();
      expect(sample(m1, 'istiod_vault_agent_cert_expiration_timestamp_seconds', { cert: 'intermediate' })).toBe(v.intermediate.notAfter / 1000);
      expect(sample(m1, 'istiod_vault_agent_ready')).toBe(1);
      const rootBytes = out.bundle.files.rootCert;

      // 2. Renewed out of band: a new intermediate written to the same secret; published without restart.
      const renewed = await intermediate();
      await kvPut(renewed);
      await agent.waitFor(published(renewed.serial));
      const now = await snapshot(dir);
      expect(verifyBundle({ caKey: now.files['ca-key.pem']!, caCert: now.files['ca-cert.pem']!, certChain: now.files['cert-chain.pem']!, rootCert: now.files['root-cert.pem']! }, { now: Date.now() }).intermediate.serial).toBe(renewed.serial);
      expect(now.files['root-cert.pem']).toBe(rootBytes);
      expect(now.files['ca-key.pem']).toBe(await fs.readFile(path.join(renewed.dir, 'ca-key.pem'), 'utf8'));
      expect(agent.child.exitCode).toBeNull();
      const m2 = await metrics();
      expect(sample(m2, 'istiod_vault_agent_issuances_total', { result: 'success' })).toBe(2);
      expect(sample(m2, 'istiod_vault_agent_cert_expiration_timestamp_seconds', { cert: 'intermediate' })).toBe(certsFromPem(renewed.cert, 'r')[0]!.notAfter / 1000);

      // 3a. A key that does not match: refused, said once, counted once, files byte-identical.
      const other = await intermediate();
      let from = agent.lines.length;
      await kvPut(renewed, other);
      const codeIs = (code: string) => (l: LogLine) => (l.err as { code?: string } | undefined)?.code === code;
      await expectRefused({ agent, dir, kept: now, from, isRefusal: codeIs('KEY_MISMATCH'), metrics, reason: 'verification_failed', before: 0, once: true });

      // 3b. A consistent bundle under another root: refused as a root change, files byte-identical.
      const foreign = await intermediate({ signer: 'pki-other' });
      from = agent.lines.length;
      await kvPut(foreign);
      await expectRefused({ agent, dir, kept: now, from, isRefusal: codeIs('ROOT_CHANGED'), metrics, reason: 'root_changed', before: 0, once: true });
      expect(agent.lines.filter((l) => l.msg === 'published the bundle from its source')).toHaveLength(2);
    } finally {
      agent.kill();
      expect((await agent.exit).code).toBe(0);
    }
    // No key that went through the agent, nor its Vault token, is in its output.
    for (const k of made_) expect(agent.stdout + agent.stderr).not.toContain(keyBody(k.key));
    expect(agent.stdout).not.toMatch(/"(client_token|token)":"s\./);
  });

  it('init publishes a stored bundle that is already due (it is all there is) and warns loudly', async () => {
    // 60 s left of a 90 s life (Vault backdates notBefore 30 s): due at once with RENEW_BEFORE=1h.
    const due = await intermediate({ ttl: '60s' });
    await kvPut(due);
    const dir = await certDir('init-due');
    const run = await runAgent(['init'], agentEnv(dir, { RENEW_BEFORE: '1h' }));
    expect(run.code, run.stdout.slice(-2000)).toBe(0);
    const warn = run.lines.find((l) => /^the bundle stored in Vault is already due for renewal/.test(l.msg));
    expect(warn?.level).toBe('warn');
    expect(warn?.serial).toBe(due.serial);
    const s = await snapshot(dir);
    expect(s.files['ca-cert.pem']).toBe(certsFromPem(due.cert, 'due')[0]!.pem);
  });

  it("the guide's policy lets the agent read its secret and nothing else", async () => {
    const env = openbao.get();
    await kvPut(await intermediate());
    const token = await loginAs(env, AUTH_MOUNT, ROLE);
    expect(await statusWith(env, token, 'GET', SECRET)).toBe(200);
    // Found with the least-privilege policy alone: how the agent tells KV v1 from v2.
    expect(await statusWith(env, token, 'GET', `sys/internal/ui/mounts/${SECRET}`)).toBe(200);
    for (const [method, p] of [
      ['GET', `${KV_MOUNT}/istiod-service/other`],
      ['LIST', `${KV_MOUNT}/istiod-service`],
      ['GET', 'secret/data/istioca'],
      ['POST', 'pki/root/sign-intermediate'],
      ['POST', 'pki_int/intermediate/generate/exported'],
      ['GET', 'sys/mounts'],
    ] as const) {
      expect(await statusWith(env, token, method, p, method === 'POST' ? { common_name: 'x' } : undefined), `${method} ${p}`).toBe(403);
    }
    // And the agent runs with it: shown by the test above (the role has this policy only, no default).
  });
});
