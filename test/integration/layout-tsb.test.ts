/**
 * Issue 11, layout (b): Tetrate TSB's Vault guide, set up as its users do: a root at `pki`, an
 * intermediate at `istioca` made with `istioca/intermediate/generate/exported`, signed by
 * `pki/root/sign-intermediate` and imported with `istioca/intermediate/set-signed`, its key copied to KV v2
 * `secret/istioca` (field `ca-key.pem`), a per-cluster auth mount, and a role with exactly the policy of
 * docs/migrate/tetrate-tsb.md. The built agent runs with BUNDLE_SOURCE=tsb alone (the guide's paths),
 * publishes a verified bundle, polls the KV secret by its version (metadata, no key), publishes an
 * out-of-band renewal without restart, and refuses broken changes (a key that does not match; an
 * intermediate under another root) with the files kept byte-identical.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/dev/dev-server.js';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { verifyBundle } from '../../src/pki/verify.js';
import { cleanEnv, startAgent, type LogLine } from '../helpers/agent-process.js';
import { httpGet, sample } from '../helpers/metrics-text.js';
import { useOpenBao } from '../helpers/openbao.js';
import { bao, clusterAuth, expectRefused, exportedIntermediate, loginAs, policyFromDoc, snapshot, statusWith, type MadeIntermediate } from './support/layouts.js';

const openbao = useOpenBao();

const AUTH_MOUNT = 'kubernetes-cluster2';
const ROLE = 'istiod';
const POLICY = 'istiod-tsb';
const GUIDE = 'docs/migrate/tetrate-tsb.md';

let work: string;
let made = 0;
/** Every key written to KV, to check that none reached a log. */
const keys: string[] = [];

/**
 * The guide's renewal: a new exported intermediate at istioca, signed by `signer`, imported (with its
 * issuer, as `ca_chain` then holds the whole chain), made the default issuer (cert/ca follows the default
 * on a multi-issuer mount), then the key copied to KV. Returns once both halves are written.
 */
async function renewAtIstioca(o: { signer?: string; keyFrom?: MadeIntermediate } = {}): Promise<MadeIntermediate> {
  const env = openbao.get();
  const n = ++made;
  const int = await exportedIntermediate(env, { mount: 'istioca', signer: o.signer ?? 'pki', ttl: '2h', cn: `Intermediate Authority ${n}`, dir: path.join(work, `int-${n}`), importChain: true });
  keys.push(int.key);
  await bao(env, ['write', 'istioca/config/issuers', `default=${int.issuerId}`]);
  await bao(env, ['kv', 'put', 'secret/istioca', `ca-key.pem=@${path.join((o.keyFrom ?? int).dir, 'ca-key.pem')}`]);
  return int;
}

describe.skipIf(!openbao.available)("layout: Tetrate TSB's key in KV v2, certificates from PKI", () => {
  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-tsb-layout-'));
    const env = openbao.get();
    const mounts = await bao(env, ['secrets', 'list', '-format=json']);
    if (!('secret/' in (JSON.parse(mounts) as Record<string, unknown>))) await bao(env, ['secrets', 'enable', '-path=secret', '-version=2', 'kv']);
    await bao(env, ['secrets', 'enable', '--path', 'istioca', 'pki']);
    await bao(env, ['secrets', 'tune', '-max-lease-ttl=43800h', 'istioca']);
    await bao(env, ['secrets', 'enable', '-path=pki-other', 'pki']);
    await bao(env, ['write', 'pki-other/root/generate/internal', 'common_name=Another Root', 'key_type=ec', 'ttl=8760h']);
    await fs.writeFile(path.join(work, 'policy.hcl'), await policyFromDoc(GUIDE));
    await bao(env, ['policy', 'write', POLICY, 'policy.hcl'], work);
    await clusterAuth(env, AUTH_MOUNT, ROLE, POLICY);
  });
  afterAll(async () => {
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('publishes a verified bundle with BUNDLE_SOURCE=tsb alone, follows a renewal without restart, refuses broken changes', async () => {
    const env = openbao.get();
    const first = await renewAtIstioca();
    const dir = path.join(work, 'cacerts');
    await fs.mkdir(dir);
    const port = await freePort();
    const agent = startAgent(['run'], cleanEnv({
      VAULT_ADDR: env.server.addr, AUTH_METHOD: 'jwt', AUTH_MOUNT, AUTH_ROLE: ROLE, SA_TOKEN_PATH: env.saTokenPath,
      BUNDLE_SOURCE: 'tsb', BUNDLE_POLL_INTERVAL: '1s', CERT_DIR: dir, LOG_LEVEL: 'debug', METRICS_ADDR: `127.0.0.1:${port}`,
    }));
    const metrics = async () => (await httpGet(`http://127.0.0.1:${port}/metrics`)).text;
    const failures = async (reason: string) => sample(await metrics(), 'istiod_vault_agent_issuances_total', { result: 'failure', reason }) ?? 0;
    const published = (serial: string) => (l: LogLine) => l.msg === 'published the bundle from its source' && l.serial === serial;
    try {
      // 1. Published and verified; the root is pki/cert/ca's, the chain istioca/cert/ca_chain's.
      await agent.waitFor(published(first.serial));
      const s1 = await snapshot(dir);
      const v = verifyBundle({ caKey: s1.files['ca-key.pem']!, caCert: s1.files['ca-cert.pem']!, certChain: s1.files['cert-chain.pem']!, rootCert: s1.files['root-cert.pem']! }, { now: Date.now() });
      expect(v.intermediate.serial).toBe(first.serial);
      expect(v.anchor.der.equals(certsFromPem(env.rootPem, 'root')[0]!.der)).toBe(true);
      expect(s1.files['ca-key.pem']).toBe(await fs.readFile(path.join(first.dir, 'ca-key.pem'), 'utf8'));
      // The KV v2 secret is polled by its version: the key is not read again while nothing changes.
      await agent.waitFor((l) => l.msg === 'polled the bundle source' && l.changed === false && (l.checked as { path: string; by: string }[]).some((c) => c.path === 'secret/istioca' && c.by === 'version'));
      expect(agent.lines.filter((l) => l.step === 'read')).toHaveLength(1);

      // 2. Renewed out of band (the guide's steps); published without restart, root bytes kept.
      const renewed = await renewAtIstioca();
      await agent.waitFor(published(renewed.serial));
      const s2 = await snapshot(dir);
      expect(s2.files['root-cert.pem']).toBe(s1.files['root-cert.pem']);
      expect(s2.files['ca-key.pem']).toBe(await fs.readFile(path.join(renewed.dir, 'ca-key.pem'), 'utf8'));
      expect(agent.child.exitCode).toBeNull();

      // 3a. A key that does not match (a single KV write): refused once, files kept.
      const stray = await exportedIntermediate(env, { mount: 'istioca', signer: 'pki', ttl: '2h', cn: 'Stray', dir: path.join(work, 'stray') });
      keys.push(stray.key);
      let before = await failures('verification_failed');
      let from = agent.lines.length;
      await bao(env, ['kv', 'put', 'secret/istioca', `ca-key.pem=@${path.join(stray.dir, 'ca-key.pem')}`]);
      const codeIs = (code: string) => (l: LogLine) => (l.err as { code?: string } | undefined)?.code === code;
      await expectRefused({ agent, dir, kept: s2, from, isRefusal: codeIs('KEY_MISMATCH'), metrics, reason: 'verification_failed', before, once: true });

      // 3b. An intermediate under another root (PKI and KV both changed: halfway states are refused too).
      before = await failures('verification_failed');
      from = agent.lines.length;
      await renewAtIstioca({ signer: 'pki-other' });
      const last = await expectRefused({ agent, dir, kept: s2, from, isRefusal: codeIs('WRONG_ROOT'), metrics, reason: 'verification_failed', before, once: false });
      expect(last.msg).toMatch(/ends at the root "CN=Another Root" .* which is not in root-cert\.pem \(pki\/cert\/ca#certificate\)/);
      expect(agent.lines.filter((l) => l.msg === 'published the bundle from its source')).toHaveLength(2);
    } finally {
      agent.kill();
      expect((await agent.exit).code).toBe(0);
    }
    // No key that went through KV, nor the agent's Vault token, is in its output.
    for (const k of keys) expect(agent.stdout + agent.stderr).not.toContain(k.split('\n').filter((l) => l && !l.startsWith('-----')).join('').slice(0, 64));
    expect(agent.stdout).not.toMatch(/"(client_token|token)":"s\./);
  });

  it("the guide's policy covers the agent's reads and nothing else", async () => {
    const env = openbao.get();
    const token = await loginAs(env, AUTH_MOUNT, ROLE);
    for (const p of ['secret/data/istioca', 'secret/metadata/istioca', 'istioca/cert/ca', 'istioca/cert/ca_chain', 'pki/cert/ca', 'sys/internal/ui/mounts/secret/istioca']) {
      expect(await statusWith(env, token, 'GET', p), p).toBe(200);
    }
    for (const [method, p] of [
      ['GET', 'secret/data/other'],
      ['LIST', 'secret/metadata'],
      ['GET', 'istioca/issuer/default'],
      ['POST', 'istioca/intermediate/generate/exported'],
      ['POST', 'pki/root/sign-intermediate'],
      ['POST', 'secret/data/istioca'],
    ] as const) {
      expect(await statusWith(env, token, method, p, method === 'POST' ? { common_name: 'x', data: { k: 'v' } } : undefined), `${method} ${p}`).toBe(403);
    }
  });
});
