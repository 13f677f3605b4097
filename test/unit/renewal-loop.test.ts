/**
 * The sidecar's loop in fake time: the whole issue-verify-publish path runs for real (EC keys, a test
 * root signing CSRs, files on a temp dir); only time and Vault are fakes. No test sleeps for real.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_TIMER_MS, WAKE_INTERVAL_MS } from '../../src/common/clock.js';
import { AgentError } from '../../src/common/errors.js';
import { BACKOFF_CAP_MS } from '../../src/agent/backoff.js';
import { PROBE_EVERY_MS, RenewalLoop } from '../../src/agent/renewal-loop.js';
import { BundleKeeper } from '../../src/agent/bundle-keeper.js';
import { ensureFirstBundle } from '../../src/agent/first-bundle.js';
import { pkiSignSource } from '../../src/agent/sources/pki-sign-source.js';
import { keySpec } from '../../src/pki/keys.js';
import { CertDirWriter } from '../../src/store/cert-dir-writer.js';
import { AgentMetrics } from '../../src/telemetry/metrics.js';
import { FakeClock, until } from '../helpers/fake-clock.js';
import { FakeVaultCa } from '../helpers/fake-vault-ca.js';
import { captureLog } from '../helpers/log-sink.js';
import { makeRoot, type TestCa } from '../helpers/test-pki.js';

const H = 3_600_000;
const unreachable = () => new AgentError('while signing: connect ECONNREFUSED', { code: 'VAULT_UNREACHABLE', reason: 'vault_unreachable', retryable: true });
const denied = () => new AgentError('while signing: HTTP 403 permission denied', { code: 'VAULT_DENIED', reason: 'vault_denied', retryable: false });

let root: TestCa;
let dir: string;

beforeEach(async () => {
  root ??= await makeRoot();
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-loop-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function setup(o: { certTtlMs?: number; renewBeforeMs?: number; random?: () => number; istiodPage?: () => string } = {}) {
  const clock = new FakeClock(Date.now());
  const vault = new FakeVaultCa(root, () => clock.now());
  const cap = captureLog();
  const metrics = new AgentMetrics('test', { defaultMetrics: false });
  const source = pkiSignSource({
    vault,
    clock,
    log: cap.log,
    key: keySpec('ec', 256),
    subject: { commonName: 'Intermediate CA', organization: 'Istio', locality: 'c1', dnsSans: [] },
    certTtlMs: o.certTtlMs ?? 30 * 24 * H,
    signPath: 'pki/root/sign-intermediate',
    extraRoots: () => [],
  });
  const renewer = new BundleKeeper({
    source,
    writer: new CertDirWriter(dir, clock, 0),
    clock,
    random: o.random ?? (() => 0),
    log: cap.log,
    metrics,
    certDir: dir,
    renewBeforeMs: o.renewBeforeMs,
  });
  const istiodPage = o.istiodPage;
  const loop = new RenewalLoop({
    keeper: renewer,
    clock,
    random: o.random ?? (() => 0),
    log: cap.log,
    metrics,
    ...(istiodPage ? { istiod: { url: 'http://istiod.test/metrics', timeoutMs: 5000, fetchText: async () => istiodPage() } } : {}),
  });
  const ctl = new AbortController();
  return { clock, vault, cap, metrics, renewer, loop, ctl };
}

const certOnDisk = async () => (await fs.readFile(path.join(dir, 'ca-cert.pem'), 'utf8'));
const dataTarget = () => fs.readlink(path.join(dir, '..data'));

describe('RenewalLoop (fake time)', () => {
  it('issues when nothing is on disk, then renews at the instant the policy computes', async () => {
    const t = setup({ certTtlMs: 30 * 24 * H });
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    expect(t.vault.signCalls).toBe(1);
    const first = t.renewer.current!;
    const lifetime = first.intermediate.notAfter - first.intermediate.notBefore;
    expect(t.renewer.renewAt).toBe(first.intermediate.notAfter - lifetime / 3);
    // Long sleeps are sliced so no timer exceeds setTimeout's limit and the wall clock is re-read.
    expect(Math.max(...t.clock.requested)).toBeLessThanOrEqual(WAKE_INTERVAL_MS);
    await t.clock.advanceTo(t.renewer.renewAt! - 1);
    expect(t.vault.signCalls).toBe(1);
    await t.clock.advanceTo(t.renewer.renewAt!);
    await t.clock.waitForSleepers(1);
    expect(t.vault.signCalls).toBe(2);
    expect(t.renewer.current!.intermediate.serial).not.toBe(first.intermediate.serial);
    t.ctl.abort();
    await running;
  });

  it('adopts a valid bundle on disk after a restart instead of issuing', async () => {
    const a = setup();
    const r1 = a.loop.run(a.ctl.signal);
    await a.clock.waitForSleepers(1);
    a.ctl.abort();
    await r1;
    const before = await dataTarget();
    const b = setup();
    const r2 = b.loop.run(b.ctl.signal);
    await b.clock.waitForSleepers(1);
    expect(b.vault.signCalls).toBe(0);
    expect(await dataTarget()).toBe(before);
    expect(b.renewer.isReady()).toBe(true);
    b.ctl.abort();
    await r2;
  });

  it('backs off 1 s doubling to a 5 min cap while Vault is down, keeping the current files', async () => {
    const t = setup({ certTtlMs: 30 * 24 * H });
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const published = await dataTarget();
    const content = await certOnDisk();
    t.vault.otherwise = unreachable();
    // Vault stays the same while it fails (health says up, same leader): no early wake-up.
    const attempts: number[] = [];
    t.vault.otherwise = () => {
      attempts.push(t.clock.now());
      return unreachable();
    };
    await t.clock.advanceTo(t.renewer.renewAt!);
    while (attempts.length < 13) {
      await t.clock.waitForSleepers(1);
      await t.clock.fireNext();
    }
    const gaps = attempts.slice(1).map((a, i) => a - attempts[i]!);
    // random() = 0: the lower edge of equal jitter, half of 1 s, 2 s, 4 s ... capped at 5 min.
    expect(gaps).toEqual([500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 150000, 150000, 150000]);
    // The 13th attempt has failed once the loop sleeps again.
    await t.clock.waitForSleepers(1);
    expect(await dataTarget()).toBe(published);
    expect(await certOnDisk()).toBe(content);
    const m = await t.metrics.registry.getSingleMetricAsString('istiod_vault_agent_issuances_total');
    expect(m).toContain('istiod_vault_agent_issuances_total{result="failure",reason="vault_unreachable"} 13');
    // Vault heals: the next retry succeeds and the schedule resets.
    t.vault.otherwise = 'ok';
    while ((await dataTarget()) === published) {
      await t.clock.waitForSleepers(1);
      await t.clock.fireNext();
    }
    t.ctl.abort();
    await running;
  });

  it.each([
    ['Vault answers again after being unreachable', { up: false, fingerprint: 'down' }, { up: true, fingerprint: 'up' }],
    ['a new leader is elected (standbys kept naming the dead one)', { up: true, fingerprint: 'leader:http://vault-0:8200' }, { up: true, fingerprint: 'leader:http://vault-2:8200' }],
  ])('retries within one probe interval once %s, not a doubling backoff later', async (_what, during, after) => {
    const t = setup({ certTtlMs: 30 * 24 * H });
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    t.vault.health = during;
    let failures = 0;
    t.vault.otherwise = () => (++failures, unreachable());
    await t.clock.advanceTo(t.renewer.renewAt!);
    // Let the backoff grow to a minute.
    while (failures < 8) {
      await t.clock.waitForSleepers(1);
      await t.clock.fireNext();
    }
    await t.clock.waitForSleepers(1);
    const backoff = Number(t.cap.lines.filter((l) => String(l.msg).startsWith('issuance failed')).at(-1)!.retryInMs);
    expect(backoff).toBeGreaterThanOrEqual(64_000);
    // Vault is back: the next look at it (within 2.4 s) wakes the loop, and the retry succeeds.
    t.vault.health = after;
    let retriedAt: number | undefined;
    t.vault.otherwise = () => ((retriedAt = t.clock.now()), 'ok');
    const backAt = t.clock.now();
    while (retriedAt === undefined) {
      await t.clock.waitForSleepers(1);
      await t.clock.fireNext();
    }
    expect(retriedAt - backAt).toBeLessThanOrEqual(PROBE_EVERY_MS * 1.2);
    await until(() => t.cap.lines.some((l) => l.msg === 'published a new intermediate' && l.trigger === 'due'));
    expect(t.cap.lines.some((l) => l.msg === 'Vault is back; retrying now' && l.now === after.fingerprint)).toBe(true);
    t.ctl.abort();
    await running;
  });

  it('retries a failure a quick retry cannot fix at the cap, not in a tight loop', async () => {
    const t = setup();
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    t.vault.otherwise = denied();
    await t.clock.advanceTo(t.renewer.renewAt!);
    await t.clock.waitForSleepers(1);
    expect(t.clock.requested.at(-1)).toBe(BACKOFF_CAP_MS);
    t.ctl.abort();
    await running;
  });

  it('under a long outage, still tries before the current certificate expires', async () => {
    const t = setup({ certTtlMs: 2 * H, renewBeforeMs: 60 * 60_000, random: () => 0.99 });
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const notAfter = t.renewer.current!.intermediate.notAfter;
    t.vault.otherwise = unreachable();
    await t.clock.advanceTo(t.renewer.renewAt!);
    const attempts: number[] = [];
    while (t.clock.now() < notAfter) {
      await t.clock.waitForSleepers(1);
      attempts.push(t.clock.now());
      await t.clock.fireNext();
    }
    // Each wait is at most half of what is left: the last tries come ever closer to notAfter.
    const lastBefore = attempts.filter((a) => a < notAfter).at(-1)!;
    expect(notAfter - lastBefore).toBeLessThan(5000);
    t.ctl.abort();
    await running;
  });

  it('sleeps across a one-year lifetime in slices no timer overflows, and honours a clock jump', async () => {
    const t = setup({ certTtlMs: 365 * 24 * H });
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const renewAt = t.renewer.renewAt!;
    expect(renewAt - t.clock.now()).toBeGreaterThan(MAX_TIMER_MS);
    for (const ms of t.clock.requested) expect(ms).toBeLessThanOrEqual(MAX_TIMER_MS);
    // The host was suspended for months: on the next wake the loop sees the wall clock is past due.
    t.clock.jump(renewAt - t.clock.now() + 1000);
    await t.clock.fireNext();
    await t.clock.waitForSleepers(1);
    expect(t.vault.signCalls).toBe(2);
    t.ctl.abort();
    await running;
  });

  it('rotates at once on request, through the same verified path', async () => {
    const t = setup();
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const before = t.renewer.current!.intermediate.serial;
    t.loop.requestRotation('test');
    await t.clock.waitForSleepers(1);
    expect(t.vault.signCalls).toBe(2);
    expect(t.renewer.current!.intermediate.serial).not.toBe(before);
    expect(t.cap.lines.some((l) => l.msg === 'published a new intermediate' && l.trigger === 'rotate')).toBe(true);
    // The replaced generation (and the old key) stays for the grace period, then goes.
    expect(await fs.readdir(path.join(dir, '.gen'))).toHaveLength(2);
    await t.clock.advance(31_000);
    await until(() => t.renewer.tidyAt === undefined);
    await t.clock.waitForSleepers(1);
    expect(await fs.readdir(path.join(dir, '.gen'))).toHaveLength(1);
    t.ctl.abort();
    await running;
  });

  it('retries a failed rotation with backoff until it succeeds, instead of waiting for the due date', async () => {
    const t = setup();
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const before = t.renewer.current!.intermediate.serial;
    t.vault.queue.push(unreachable(), unreachable());
    t.loop.requestRotation('test');
    await until(() => t.vault.signCalls === 2);
    await t.clock.waitForSleepers(1);
    expect(t.clock.requested.at(-1)).toBe(500);
    await t.clock.fireNext();
    await until(() => t.vault.signCalls === 3);
    await t.clock.waitForSleepers(1);
    expect(t.clock.requested.at(-1)).toBe(1000);
    await t.clock.fireNext();
    await until(() => t.renewer.current!.intermediate.serial !== before);
    expect(t.cap.lines.filter((l) => l.msg === 'published a new intermediate').at(-1)?.trigger).toBe('rotate');
    t.ctl.abort();
    await running;
  });

  it('a rotation in the same second as the last issuance still ends one second later, so istiod\'s report stays conclusive', async () => {
    // A stand-in istiod that always serves what is published.
    const t: ReturnType<typeof setup> = setup({ istiodPage: () => `citadel_server_cert_chain_expiry_timestamp ${Math.floor(t.renewer.current!.intermediate.notAfter / 1000)}\n` });
    const inSync = async () => (await t.metrics.registry.getSingleMetricAsString('istiod_vault_agent_istiod_in_sync')).split('\n').find((l) => l && !l.startsWith('#'));
    const running = t.loop.run(t.ctl.signal);
    await until(() => t.cap.lines.some((l) => l.msg === 'istiod loaded the new intermediate'));
    expect(await inSync()).toBe('istiod_vault_agent_istiod_in_sync 1');
    const first = t.renewer.current!.intermediate.notAfter;
    // Fake time stands still: with CERT_TTL alone the new intermediate would end in the very same second.
    t.loop.requestRotation('test');
    await until(() => t.cap.lines.filter((l) => l.msg === 'istiod loaded the new intermediate').length === 2);
    expect(t.renewer.current!.intermediate.notAfter - first).toBe(1000);
    expect(t.cap.lines.filter((l) => l.step === 'sign').map((l) => l.ttl)).toEqual([`${30 * 24 * 3600}s`, `${30 * 24 * 3600 + 1}s`]);
    expect(await inSync()).toBe('istiod_vault_agent_istiod_in_sync 1');
    t.ctl.abort();
    await running;
  });

  it('reports "unknown" when the issuer\'s expiry caps two intermediates at the same second', async () => {
    const shortRoot = await makeRoot('CN=Expiring Root', { notAfter: new Date(Date.now() + 10 * 24 * H) });
    const t: ReturnType<typeof setup> = setup({ certTtlMs: 30 * 24 * H, istiodPage: () => `citadel_server_cert_chain_expiry_timestamp ${Math.floor(t.renewer.current!.intermediate.notAfter / 1000)}\n` });
    t.vault.root = shortRoot;
    const running = t.loop.run(t.ctl.signal);
    await until(() => t.cap.lines.some((l) => l.msg === 'istiod loaded the new intermediate'));
    t.loop.requestRotation('test');
    await until(() => t.cap.lines.some((l) => /expires at the same second as the previous one/.test(String(l.msg))));
    t.ctl.abort();
    await running;
  });

  it('on shutdown mid-issuance, returns without publishing', async () => {
    const t = setup();
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const published = await dataTarget();
    let release!: () => void;
    t.vault.gate = new Promise((r) => (release = r));
    t.loop.requestRotation('test');
    await until(() => t.vault.signCalls === 2);
    t.ctl.abort();
    await running;
    release();
    // The signature Vault was still working on comes back after shutdown: it must not be published.
    await until(() => t.vault.signsSettled === 2);
    await new Promise((r) => setImmediate(r));
    expect(await dataTarget()).toBe(published);
    expect((await fs.readdir(path.join(dir, '.gen'))).length).toBe(1);
  });

  it('keeps the exact root-cert.pem bytes even when the bundle on disk has expired', async () => {
    const a = setup({ certTtlMs: 2 * H });
    const r1 = a.loop.run(a.ctl.signal);
    await a.clock.waitForSleepers(1);
    a.ctl.abort();
    await r1;
    // Another tool wrote the same root with different text around it.
    const gen = await dataTarget();
    const odd = `# mesh trust bundle\n${root.pem}`;
    await fs.writeFile(path.join(dir, gen, 'root-cert.pem'), odd);
    const b = setup({ certTtlMs: 2 * H });
    b.clock.jump(3 * H); // the intermediate on disk has expired
    const r2 = b.loop.run(b.ctl.signal);
    await b.clock.waitForSleepers(1);
    expect(b.vault.signCalls).toBe(1);
    expect(await fs.readFile(path.join(dir, 'root-cert.pem'), 'utf8')).toBe(odd);
    b.ctl.abort();
    await r2;
  });

  it('refuses a response Vault signed with a different root and keeps the files', async () => {
    const t = setup();
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const published = await dataTarget();
    const other = await makeRoot('CN=Rotated Root');
    t.vault.root = other;
    t.loop.requestRotation('test');
    await t.clock.waitForSleepers(1);
    expect(await dataTarget()).toBe(published);
    const err = t.cap.lines.find((l) => l.reason === 'root_changed');
    expect(String(err?.msg)).toMatch(/Vault's root "CN=Rotated Root".*is not the root istiod trusts/);
    // Refused before signing: no intermediate was minted under the new root.
    expect(t.vault.signCalls).toBe(1);
    t.ctl.abort();
    await running;
  });
});

describe('runInit (fake time)', () => {
  it('retries retryable failures until INIT_TIMEOUT, the last one just before it, then reports the last reason', async () => {
    const t = setup();
    t.vault.otherwise = unreachable();
    const start = t.clock.now();
    const attempts: number[] = [];
    t.vault.queue = Array.from({ length: 50 }, () => () => {
      attempts.push(t.clock.now() - start);
      return unreachable();
    });
    const r = await t.clock.drive(ensureFirstBundle(t.renewer, { clock: t.clock, random: () => 0, log: t.cap.log }, { timeoutMs: 10_000 }), { background: 1 });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.timedOut).toBe(true);
      expect(r.error.reason).toBe('vault_unreachable');
    }
    // Backoff 0.5, 1, 2 s, then capped at 5 s (nothing valid yet), each wait at most half of what is
    // left: the tries crowd towards the deadline.
    expect(attempts).toEqual([0, 500, 1500, 3500, 6000, 8000, 9000, 9500]);
    expect(10_000 - attempts.at(-1)!).toBeLessThan(1000);
  });

  it('cuts an attempt that is still hanging at INIT_TIMEOUT', async () => {
    const t = setup();
    t.vault.gate = new Promise(() => undefined);
    const start = t.clock.now();
    const r = await t.clock.drive(ensureFirstBundle(t.renewer, { clock: t.clock, random: () => 0, log: t.cap.log }, { timeoutMs: 10_000 }), { background: 1 });
    expect(r).toMatchObject({ ok: false, timedOut: true });
    if (!r.ok) expect(r.error.message).toMatch(/no answer before INIT_TIMEOUT/);
    expect(t.clock.now() - start).toBe(10_000);
  });

  it('stops at once on a failure a retry cannot fix', async () => {
    const t = setup();
    t.vault.otherwise = denied();
    const r = await t.clock.drive(ensureFirstBundle(t.renewer, { clock: t.clock, random: () => 0, log: t.cap.log }, { timeoutMs: 60_000 }), { background: 1 });
    expect(r).toMatchObject({ ok: false, timedOut: false });
    expect(t.vault.signCalls).toBe(1);
  });
});
