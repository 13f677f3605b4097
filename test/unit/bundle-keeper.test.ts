/**
 * What may replace istiod's bundle, and how hard the agent pushes Vault when something is wrong
 * (issue 9, points 4-7), in fake time: a fake Vault that really signs, an in-memory writer.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CertDirWriter } from '../../src/store/cert-dir-writer.js';
import { AgentError } from '../../src/common/errors.js';
import { NOTHING_VALID_CAP_MS, REFUSED_MIN_DELAY_MS } from '../../src/agent/backoff.js';
import { BundleKeeper } from '../../src/agent/bundle-keeper.js';
import { ensureFirstBundle } from '../../src/agent/first-bundle.js';
import { RenewalLoop } from '../../src/agent/renewal-loop.js';
import { MAX_LOGGED_WARNINGS, pkiSignSource } from '../../src/agent/sources/pki-sign-source.js';
import { keySpec } from '../../src/pki/keys.js';
import { AgentMetrics } from '../../src/telemetry/metrics.js';
import { FakeClock, until } from '../helpers/fake-clock.js';
import { FakeVaultCa } from '../helpers/fake-vault-ca.js';
import { captureLog } from '../helpers/log-sink.js';
import { MemoryWriter, storeError } from '../helpers/memory-writer.js';
import { sample } from '../helpers/metrics-text.js';
import { makeRoot, type TestCa } from '../helpers/test-pki.js';

const H = 3_600_000;
const unreachable = () => new AgentError('while signing: connect ECONNREFUSED', { code: 'VAULT_UNREACHABLE', reason: 'vault_unreachable', retryable: true });

let root: TestCa;

async function setup(o: { certTtlMs?: number; renewBeforeMs?: number; certDir?: string } = {}) {
  root ??= await makeRoot();
  const clock = new FakeClock(Date.now());
  const vault = new FakeVaultCa(root, () => clock.now());
  const cap = captureLog();
  const metrics = new AgentMetrics('test', { defaultMetrics: false });
  const writer = o.certDir ? new CertDirWriter(o.certDir, clock, 0) : new MemoryWriter();
  const source = pkiSignSource({
    vault,
    clock,
    log: cap.log,
    key: keySpec('ec', 256),
    subject: { commonName: 'Intermediate CA', organization: 'Istio', locality: undefined, dnsSans: [] },
    certTtlMs: o.certTtlMs ?? 30 * 24 * H,
    signPath: 'pki/root/sign-intermediate',
    extraRoots: () => [],
  });
  const keeper = new BundleKeeper({ source, writer, clock, random: () => 0, log: cap.log, metrics, certDir: o.certDir ?? '/nonexistent/ivagent-cert-dir', renewBeforeMs: o.renewBeforeMs });
  const loop = new RenewalLoop({ keeper, clock, random: () => 0, log: cap.log, metrics });
  const ctl = new AbortController();
  const failures = async (reason: string) => sample(await metrics.registry.metrics(), 'istiod_vault_agent_issuances_total', { result: 'failure', reason });
  return { clock, vault, cap, metrics, writer, keeper, loop, ctl, failures };
}

describe('a new bundle never leaves istiod worse off', () => {
  it('refuses a grant that is due the moment it arrives (OpenBao backdates notBefore 30 s), counts it, and does not ask again within 30 s', async () => {
    const t = await setup({ certTtlMs: 24 * H });
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const first = t.keeper.current!;
    // The role's max_ttl now caps every grant at 10 s: valid, but due at once.
    t.vault.lifetimeMs = 10_000;
    t.loop.requestRotation('test');
    await until(() => t.vault.signCalls === 2);
    await t.clock.waitForSleepers(1);
    expect((t.writer as MemoryWriter).published).toHaveLength(1);
    expect(t.keeper.current!.intermediate.serial).toBe(first.intermediate.serial);
    expect(await t.failures('lifetime_too_short')).toBe(1);
    const refusal = t.cap.lines.find((l) => l.reason === 'lifetime_too_short')!;
    expect(String(refusal.msg)).toMatch(/Vault granted 40s .* due for renewal the moment it arrives .*raise max_ttl on the PKI role or mount/);
    expect(t.clock.requested.at(-1)).toBeGreaterThanOrEqual(REFUSED_MIN_DELAY_MS);
    t.ctl.abort();
    await running;
  });

  it('keeps the current bundle when the new one would expire sooner, and asks again only when a new one can last as long', async () => {
    const t = await setup({ certTtlMs: 30 * 24 * H });
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const current = t.keeper.current!;
    // Vault's max_ttl was lowered to 2 days while the current intermediate has 10 days left at its renewal.
    t.vault.lifetimeMs = 2 * 24 * H;
    await t.clock.advanceTo(t.keeper.renewAt!);
    await until(() => t.vault.signCalls === 2);
    await t.clock.waitForSleepers(1);
    expect(t.keeper.current!.intermediate.serial).toBe(current.intermediate.serial);
    expect(t.cap.lines.some((l) => /before the one istiod uses/.test(String(l.msg)))).toBe(true);
    const keeping = t.cap.lines.find((l) => /^issuance failed: .*before the one istiod uses.*; keeping the current bundle; retrying in /.test(String(l.msg)))!;
    // Not retryable: an error (a person must act), one line with the cause and the retry time.
    expect(keeping.level).toBe('error');
    // Next try: when a 2-day grant ends no earlier than the current one (within the jittered second).
    const retryAt = t.clock.now() + Number(keeping.retryInMs);
    expect(Math.abs(retryAt - (current.intermediate.notAfter - 2 * 24 * H))).toBeLessThan(2000);
    expect(t.vault.signCalls).toBe(2);
    t.ctl.abort();
    await running;
  });

  it('a rotation an operator asked for replaces it even when the new one is shorter', async () => {
    const t = await setup({ certTtlMs: 30 * 24 * H });
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    t.vault.lifetimeMs = 2 * 24 * H;
    t.loop.requestRotation('POST /rotate');
    await until(() => (t.writer as MemoryWriter).published.length === 2);
    expect(t.keeper.current!.intermediate.notAfter - t.clock.now()).toBeLessThanOrEqual(2 * 24 * H);
    t.ctl.abort();
    await running;
  });
});

describe('retry pace', () => {
  it('once the intermediate has expired, retries within seconds until Vault answers, then publishes', async () => {
    const t = await setup({ certTtlMs: 2 * H, renewBeforeMs: 30 * 60_000 });
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const notAfter = t.keeper.current!.intermediate.notAfter;
    t.vault.otherwise = unreachable();
    // A long outage: past expiry with Vault still down.
    while (t.clock.now() < notAfter + 10 * 60_000) {
      await t.clock.waitForSleepers(1);
      await t.clock.fireNext();
    }
    await t.clock.waitForSleepers(1);
    const before = t.vault.signCalls;
    const start = t.clock.now();
    const seen = t.cap.lines.length;
    // Vault stays unreachable (and says so when looked at): ten more attempts, each within seconds.
    t.vault.health = { up: false, fingerprint: 'down' };
    while (t.vault.signCalls - before < 10) {
      await t.clock.waitForSleepers(1);
      await t.clock.fireNext();
    }
    await t.clock.waitForSleepers(1);
    const failures = t.cap.lines.slice(seen).filter((l) => String(l.msg).startsWith('issuance failed'));
    // Nothing valid left: each failure is an error, and says it keeps nothing.
    for (const f of failures) {
      expect(f.level).toBe('error');
      expect(f.keeping).toBeUndefined();
    }
    const waits = failures.map((l) => Number(l.retryInMs));
    expect(waits.length).toBeGreaterThanOrEqual(9);
    expect(Math.max(...waits)).toBeLessThanOrEqual(NOTHING_VALID_CAP_MS);
    expect(t.clock.now() - start).toBeLessThanOrEqual(10 * NOTHING_VALID_CAP_MS);
    // Vault is back: published at the next try, seconds later.
    t.vault.otherwise = 'ok';
    const backAt = t.clock.now();
    // An attempt may be in flight: it succeeds; otherwise the next retry does.
    await until(() => t.keeper.isReady() || t.clock.pending > 0);
    if (!t.keeper.isReady()) {
      await t.clock.fireNext();
      await until(() => t.keeper.isReady());
    }
    expect(t.clock.now() - backAt).toBeLessThanOrEqual(NOTHING_VALID_CAP_MS);
    t.ctl.abort();
    await running;
  });
});

describe('local faults do not waste intermediates', () => {
  it('a CERT_DIR that cannot take the files is found before Vault is asked to sign', async () => {
    const t = await setup();
    (t.writer as MemoryWriter).notWritable = storeError('EROFS');
    await expect(t.keeper.renew('missing')).rejects.toMatchObject({ reason: 'write_failed' });
    expect(t.vault.signCalls).toBe(0);
  });

  it('a write that fails after signing is retried with the bundle in memory, not with a new signature', async () => {
    const t = await setup();
    const writer = t.writer as MemoryWriter;
    writer.failPublish = [storeError('ENOSPC')];
    await expect(t.keeper.renew('missing')).rejects.toMatchObject({ reason: 'write_failed' });
    expect(t.vault.signCalls).toBe(1);
    const b = await t.keeper.renew('missing');
    expect(t.vault.signCalls).toBe(1);
    expect(writer.published).toHaveLength(1);
    expect(b).not.toBe('unchanged');
    expect(t.cap.lines.some((l) => l.msg === 'publishing the bundle whose write failed, without asking the source again')).toBe(true);
  });
});

describe('init', () => {
  it('exits ok with a due-but-valid bundle when Vault hangs past INIT_TIMEOUT (VAULT_CLIENT_TIMEOUT longer than INIT_TIMEOUT)', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-keeper-'));
    try {
      const t = await setup({ certTtlMs: 2 * H, renewBeforeMs: 30 * 60_000, certDir: dir });
      await t.keeper.renew('missing');
      await t.clock.advanceTo(t.keeper.renewAt! + 1000);
      // init starts again (a pod restart): the bundle on disk is valid but due, and Vault hangs.
      t.vault.gate = new Promise(() => undefined);
      const r = await t.clock.drive(ensureFirstBundle(t.keeper, { clock: t.clock, random: () => 0, log: t.cap.log }, { timeoutMs: 10_000 }), { background: 1 });
      expect(r).toEqual({ ok: true, issued: false });
      expect(t.cap.lines.some((l) => /renewal did not finish within INIT_TIMEOUT .* still valid/.test(String(l.msg)))).toBe(true);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('Vault warnings', () => {
  it('are deduplicated and bounded: 100 warnings of 10 KB do not become a megabyte of log', async () => {
    const t = await setup();
    const huge = Array.from({ length: 100 }, (_, i) => `warning ${i % 50} ${'x'.repeat(10_000)}`);
    t.vault.queue.push(async () => ({ ...(await t.vault.sign((await captureCsr(t.vault)).csr, 24 * H)), warnings: huge }));
    await t.keeper.renew('missing');
    const lines = t.cap.lines.filter((l) => l.msg === 'Vault returned a warning');
    expect(lines).toHaveLength(MAX_LOGGED_WARNINGS);
    expect(t.cap.text().length).toBeLessThan(20_000);
    expect(t.cap.lines.find((l) => l.msg === 'Vault returned more warnings than are logged')).toMatchObject({ warnings: 100, distinct: 50 });
  });
});

/** The CSR of the call in flight (FakeVaultCa hands its params to queued behaviours only through sign). */
async function captureCsr(vault: FakeVaultCa): Promise<{ csr: string }> {
  return { csr: vault.lastCsr! };
}
