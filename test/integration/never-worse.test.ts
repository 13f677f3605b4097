/**
 * istiod is never left worse off, against a real OpenBao (issue 9, points 4-7 and the token warning):
 * a mount whose max TTL grants tiny lifetimes is refused, not published and not hammered; a CERT_DIR
 * that cannot take the files is found before Vault signs; init keeps a due-but-valid bundle when Vault
 * hangs longer than INIT_TIMEOUT; once the intermediate has expired, the agent is back within seconds
 * of Vault; and a VAULT_TOKEN that will run out before the next renewal is called out at start.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_POLICY } from '../../src/dev/dev-environment.js';
import { createToken, setupPki, signerPolicy, writePolicy } from '../../src/dev/configure.js';
import { cleanEnv, runAgent, startAgent } from '../helpers/agent-process.js';
import { useOpenBao } from '../helpers/openbao.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';
import { startFaultProxy } from '../evidence/support/fault-proxy.js';

const bao = useOpenBao();
let work: string;

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-never-worse-'));
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

const certDir = () => fs.mkdtemp(path.join(work, 'certs-'));

/** Serial numbers of every certificate the PKI mount has stored (each sign-intermediate adds one). */
async function storedCerts(mount: string): Promise<number> {
  const res = await bao.get().api.request('LIST', `${mount}/certs`);
  return res.status === 404 ? 0 : ((res.body as { data: { keys: string[] } }).data.keys.length);
}

describe.skipIf(!bao.available)('never worse than what istiod has', () => {
  beforeAll(async () => {
    // A mount whose max TTL caps every intermediate at 10 s: OpenBao backdates notBefore by 30 s, so each
    // one is due for renewal the moment it is issued.
    await setupPki(bao.get().api, { mount: 'tiny-pki', rootCommonName: 'Tiny Root' });
    await bao.get().api.call('POST', 'sys/mounts/tiny-pki/tune', { max_lease_ttl: '10s' });
    await writePolicy(bao.get().api, DEV_POLICY, signerPolicy('pki') + signerPolicy('tiny-pki'));
  });

  it('refuses a granted lifetime that is due on arrival: init exits 1 naming lifetime_too_short, nothing published, one signature', async () => {
    const dir = await certDir();
    const before = await storedCerts('tiny-pki');
    const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, PKI_SIGN_PATH: 'tiny-pki/root/sign-intermediate', CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', INIT_TIMEOUT: '30s' }));
    expect(run.code).toBe(1);
    const final = run.lines.find((l) => l.msg.startsWith('init failed'))!;
    expect(final.reason).toBe('lifetime_too_short');
    expect(final.msg).toMatch(/due for renewal the moment it arrives/);
    expect(await fs.readdir(dir)).toEqual([]);
    // Not retried: Vault was asked once.
    expect((await storedCerts('tiny-pki')) - before).toBe(1);
  });
});

describe.skipIf(!bao.available)('local faults are found before Vault signs', () => {
  const ro = path.join(os.tmpdir(), `ivagent-ro-${process.pid}`);
  let mounted = false;
  beforeAll(async () => {
    await fs.mkdir(ro, { recursive: true });
    mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro]).status === 0;
    if (!mounted && process.env.CI === 'true') throw new Error('cannot mount a read-only tmpfs here');
  });
  afterAll(async () => {
    if (mounted) spawnSync('umount', ['-l', ro]);
    await fs.rm(ro, { recursive: true, force: true });
  });

  it('a read-only CERT_DIR: init exits 1 at once saying "read-only", and Vault signed nothing', async (ctx) => {
    if (!mounted) ctx.skip();
    const before = await storedCerts('pki');
    const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, CERT_DIR: ro, KEY_TYPE: 'ec', CERT_TTL: '1h', INIT_TIMEOUT: '30s' }));
    expect(run.code).toBe(1);
    const final = run.lines.find((l) => l.msg.startsWith('init failed'))!;
    expect(final.msg).toMatch(/EROFS .*the volume is read-only: mount CERT_DIR read-write/);
    expect(final.msg).not.toMatch(/does not exist/);
    expect(await storedCerts('pki')).toBe(before);
  });

  it('a CERT_DIR that does not exist (volume not mounted): exit 1, nothing created, nothing signed', async () => {
    const missing = path.join(work, 'not-mounted');
    const before = await storedCerts('pki');
    const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, CERT_DIR: missing, KEY_TYPE: 'ec', INIT_TIMEOUT: '30s' }));
    expect(run.code).toBe(1);
    expect(run.lines.find((l) => l.msg.startsWith('init failed'))?.msg).toMatch(/not-mounted does not exist \(mount the memory emptyDir/);
    await expect(fs.access(missing)).rejects.toThrow();
    expect(await storedCerts('pki')).toBe(before);
  });
});

describe.skipIf(!bao.available)('Vault hanging or down', () => {
  it('init exits 0 with a due-but-valid bundle when Vault hangs longer than INIT_TIMEOUT', async () => {
    const dir = await certDir();
    // A bundle that falls due 5 s after issuance.
    const seed = await runAgent(['init'], cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '40s', RENEW_BEFORE: '35s' }));
    expect(seed.code).toBe(0);
    const check = () => spawnSync(process.execPath, ['dist/istiod-vault-agent.mjs', 'check', dir, '--renew-before', '35s'], { encoding: 'utf8' });
    // Wait for the event "due" by asking `check`, not by sleeping a fixed time.
    await waitFor(() => /due now/.test(check().stdout), { what: '`check` to say "due now"', timeoutMs: 30_000 });
    const proxy = await startFaultProxy(bao.get().server.addr);
    try {
      proxy.setRules([{ match: '/v1/', fault: { kind: 'stall' } }]);
      const started = Date.now();
      const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, VAULT_ADDR: proxy.url, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '40s', RENEW_BEFORE: '35s', VAULT_CLIENT_TIMEOUT: '60s', INIT_TIMEOUT: '3s' }));
      expect(run.code, run.stdout.slice(-2000)).toBe(0);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(run.lines.some((l) => /renewal did not finish within INIT_TIMEOUT .* still valid/.test(l.msg))).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('after the intermediate expired during an outage, publishes within seconds of Vault coming back', async () => {
    const dir = await certDir();
    const proxy = await startTcpProxy(bao.get().server.addr);
    const agent = startAgent(['run'], cleanEnv({ ...bao.get().env, VAULT_ADDR: proxy.url, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '15s', RENEW_BEFORE: '10s', VAULT_CLIENT_TIMEOUT: '2s', MIN_PUBLISH_INTERVAL: '0' }));
    try {
      const first = await agent.waitFor((l) => l.msg === 'published a new intermediate', 30_000);
      proxy.setMode('refuse');
      const notAfter = Date.parse(String(first.notAfter));
      // Failures once nothing is valid: errors that keep nothing, retried within seconds.
      const from = agent.lines.length;
      const expired = await agent.waitFor((l) => String(l.msg).startsWith('issuance failed') && l.keeping === undefined && Date.now() > notAfter, 60_000, from);
      expect(expired.level).toBe('error');
      const next = await agent.waitFor((l) => String(l.msg).startsWith('issuance failed') && Date.now() > notAfter, 30_000, agent.lines.indexOf(expired) + 1);
      expect(Number(next.retryInMs)).toBeLessThanOrEqual(5000);
      const healedAt = Date.now();
      const healFrom = agent.lines.length;
      proxy.setMode('pass');
      await agent.waitFor((l) => l.msg === 'published a new intermediate', 30_000, healFrom);
      // One retry step (at most 5 s) plus the issuance itself.
      expect(Date.now() - healedAt).toBeLessThan(10_000);
    } finally {
      agent.kill('SIGKILL');
      await agent.exit;
      await proxy.close();
    }
  });
});

describe.skipIf(!bao.available)('AUTH_METHOD=token', () => {
  it('warns at start when VAULT_TOKEN expires before the next renewal and cannot be renewed', async () => {
    const dir = await certDir();
    const res = (await bao.get().api.call('POST', 'auth/token/create', { policies: [DEV_POLICY], ttl: '5m', renewable: false })) as { auth: { client_token: string } };
    const agent = startAgent(['run'], cleanEnv({ VAULT_ADDR: bao.get().server.addr, AUTH_METHOD: 'token', VAULT_TOKEN: res.auth.client_token, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h' }));
    try {
      const warn = await agent.waitFor((l) => l.setting === 'VAULT_TOKEN', 30_000);
      expect(warn.level).toBe('warn');
      expect(warn.msg).toMatch(/expires before the next renewal and cannot be renewed/);
      expect(warn.renewable).toBe(false);
      expect(agent.stdout).not.toContain(res.auth.client_token);
    } finally {
      agent.kill('SIGTERM');
      await agent.exit;
    }
    // A renewable token that lives past the next renewal: nothing to say.
    const long = await createToken(bao.get().api, DEV_POLICY, '24h');
    const dir2 = await certDir();
    const quiet = startAgent(['run'], cleanEnv({ VAULT_ADDR: bao.get().server.addr, AUTH_METHOD: 'token', VAULT_TOKEN: long, CERT_DIR: dir2, KEY_TYPE: 'ec', CERT_TTL: '1h' }));
    try {
      const note = await quiet.waitFor((l) => l.setting === 'VAULT_TOKEN', 30_000);
      expect(note.level).toBe('info');
      expect(note.msg).toMatch(/lives past the next renewal/);
    } finally {
      quiet.kill('SIGTERM');
      await quiet.exit;
    }
  });
});
