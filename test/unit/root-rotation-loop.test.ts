/**
 * A whole root rotation driven by Vault's issuers, in fake time, through the real keeper, loop and PKI
 * source (a fake Vault that really signs with each of its issuers): add, renewals kept on the old root
 * during the soak, switch, remove; and, without ISTIO_MULTIROOT_MESH, root changes held back while
 * istiod runs and applied by `init` at its next start.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BundleKeeper } from '../../src/agent/bundle-keeper.js';
import { ensureFirstBundle } from '../../src/agent/first-bundle.js';
import { RenewalLoop } from '../../src/agent/renewal-loop.js';
import { pkiSignSource } from '../../src/agent/sources/pki-sign-source.js';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { keySpec } from '../../src/pki/keys.js';
import { CertDirWriter } from '../../src/store/cert-dir-writer.js';
import { AgentMetrics } from '../../src/telemetry/metrics.js';
import { FakeClock, until } from '../helpers/fake-clock.js';
import { FakeVaultCa } from '../helpers/fake-vault-ca.js';
import { captureLog } from '../helpers/log-sink.js';
import { MemoryWriter } from '../helpers/memory-writer.js';
import { sample } from '../helpers/metrics-text.js';
import { makeRoot, type TestCa } from '../helpers/test-pki.js';

const H = 3_600_000;
const POLL = 60_000;
const SOAK = 25 * H;
const REMOVE_AFTER = 25 * H;

let oldRoot: TestCa;
let newRoot: TestCa;
let dir: string;

beforeEach(async () => {
  oldRoot ??= await makeRoot('CN=Mesh Root 2025', { notBefore: new Date(Date.now() - 300 * 24 * H) });
  newRoot ??= await makeRoot('CN=Mesh Root 2026');
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-rotation-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function agent(o: { clock: FakeClock; vault: FakeVaultCa; multiRoot: boolean; writer?: CertDirWriter; comparesSets?: boolean }) {
  const asked: number[] = [];
  const cap = captureLog();
  const metrics = new AgentMetrics('test', { defaultMetrics: false });
  const source = pkiSignSource({
    vault: o.vault,
    clock: o.clock,
    log: cap.log,
    key: keySpec('ec', 256),
    subject: { commonName: 'Intermediate CA', organization: 'Istio', locality: undefined, dnsSans: [] },
    certTtlMs: 30 * 24 * H,
    signPath: 'pki/root/sign-intermediate',
    extraRoots: () => [],
    rotation: {
      mode: 'auto',
      multiRoot: o.multiRoot,
      soakMs: SOAK,
      removeAfterMs: REMOVE_AFTER,
      pollIntervalMs: POLL,
      istiodComparesSets: async () => {
        asked.push(o.clock.now());
        return o.comparesSets ?? true;
      },
      onPlan: (plan, restartRequired) => metrics.recordRootRotation({ phase: plan.phase, nextAt: plan.nextAt, restartRequired }),
    },
  });
  const writer = o.writer ?? new MemoryWriter();
  const keeper = new BundleKeeper({ source, writer, clock: o.clock, random: () => 0, log: cap.log, metrics, certDir: o.writer ? o.writer.certDir : '/nonexistent/ivagent', renewBeforeMs: undefined });
  const loop = new RenewalLoop({ keeper, clock: o.clock, random: () => 0, log: cap.log, metrics });
  return { cap, metrics, keeper, loop, asked, ctl: new AbortController() };
}

const subjects = (pem: string) => certsFromPem(pem, 'root-cert.pem').map((c) => c.subject);

/** Fires timers until `cond` holds (the loop polls Vault every POLL). */
async function runUntil(clock: FakeClock, cond: () => boolean, max = 200): Promise<void> {
  for (let n = 0; !cond(); n++) {
    if (n > max) throw new Error('condition not reached');
    await clock.waitForSleepers(1);
    await clock.fireNext();
  }
}

describe('root rotation (ISTIO_MULTIROOT_MESH=true)', () => {
  it('adds, keeps renewing on the old root through the soak, switches, then removes the old root', async () => {
    const clock = new FakeClock(Date.now());
    const vault = new FakeVaultCa(oldRoot, () => clock.now());
    const a = agent({ clock, vault, multiRoot: true });
    const phase = async (p: string) => sample(await a.metrics.registry.metrics(), 'istiod_vault_agent_root_rotation_phase', { phase: p });
    // As the sidecar does: istiod runs on what is published, so the switch's order matters.
    a.keeper.markIstiodRunning();
    const running = a.loop.run(a.ctl.signal);
    await clock.waitForSleepers(1);
    const first = a.keeper.current!;
    expect(subjects(first.files.rootCert)).toEqual(['CN=Mesh Root 2025']);

    // add: a second root issuer appears in the mount (not the default yet).
    const issued = async () => sample(await a.metrics.registry.metrics(), 'istiod_vault_agent_issuances_total', { result: 'success' });
    const issuedBefore = await issued();
    vault.issuers.push({ id: 'root-2', name: 'root-2026', ca: newRoot });
    await runUntil(clock, () => a.keeper.current!.files.rootCert !== first.files.rootCert);
    expect(a.keeper.current!.intermediate.serial).toBe(first.intermediate.serial);
    expect(a.keeper.current!.files.rootCert).toBe(first.files.rootCert + newRoot.pem);
    expect(await phase('added')).toBe(1);
    // Said as what it is, and not counted as an issuance: Vault signed nothing.
    expect(a.cap.lines.filter((l) => l.msg === 'published new trust roots with the same intermediate')).toEqual([expect.objectContaining({ trigger: 'changed', serial: first.intermediate.serial, roots: ['CN=Mesh Root 2025', 'CN=Mesh Root 2026'] })]);
    expect(await issued()).toBe(issuedBefore);

    // The operator makes the new root the default right away; the agent waits for the soak.
    vault.defaultId = 'root-2';
    const signs = vault.signCalls;
    a.loop.requestRotation('test');
    await until(() => vault.signCalls === signs + 1);
    await clock.waitForSleepers(1);
    expect(vault.signedWith.at(-1)).toBe('root-1');
    expect(a.keeper.current!.anchor.subject).toBe('CN=Mesh Root 2025');

    // switch: once the new root has been trusted for the soak, a new intermediate from it.
    const soakEnds = newRoot.cert.notBefore.getTime() + SOAK;
    await runUntil(clock, () => a.keeper.current!.anchor.subject === 'CN=Mesh Root 2026', 2000);
    expect(clock.now()).toBeGreaterThanOrEqual(soakEnds);
    expect(clock.now() - soakEnds).toBeLessThanOrEqual(POLL + 1000);
    expect(vault.signedWith.at(-1)).toBeUndefined();
    // istiod >= 1.30 compares sets: the same two roots, the new one first, so it pushes the bundle.
    expect(subjects(a.keeper.current!.files.rootCert)).toEqual(['CN=Mesh Root 2026', 'CN=Mesh Root 2025']);
    expect(await phase('switched')).toBe(1);
    const switched = a.keeper.current!;

    // remove: ROOT_REMOVE_AFTER after the switch, the old root leaves; the intermediate stays.
    await runUntil(clock, () => subjects(a.keeper.current!.files.rootCert).length === 1, 2000);
    expect(clock.now() - switched.intermediate.notBefore).toBeGreaterThanOrEqual(REMOVE_AFTER);
    expect(a.keeper.current!.intermediate.serial).toBe(switched.intermediate.serial);
    expect(a.keeper.current!.files.rootCert).toBe(newRoot.pem);
    expect(await phase('steady')).toBe(1);
    // Each issuance signed with the issuers the plan had just listed: the signing issuer was never read
    // a second time.
    expect(vault.readIssuerCalls).toBe(0);
    a.ctl.abort();
    await running;
  });

  it('istiod comparing bytes (< 1.30, or its release unknown): the switch keeps root-cert.pem as it is; istiod is asked only then', async () => {
    const clock = new FakeClock(Date.now());
    const vault = new FakeVaultCa(oldRoot, () => clock.now());
    const a = agent({ clock, vault, multiRoot: true, comparesSets: false });
    a.keeper.markIstiodRunning();
    const running = a.loop.run(a.ctl.signal);
    await clock.waitForSleepers(1);
    vault.issuers.push({ id: 'root-2', name: 'root-2026', ca: newRoot });
    vault.defaultId = 'root-2';
    await runUntil(clock, () => subjects(a.keeper.current!.files.rootCert).length === 2);
    const added = a.keeper.current!.files.rootCert;
    await runUntil(clock, () => a.keeper.current!.anchor.subject === 'CN=Mesh Root 2026', 2000);
    expect(a.keeper.current!.files.rootCert).toBe(added);
    // Asked at the switch only (by the poll that found it and by the issuance it triggered).
    expect(a.asked.length).toBeGreaterThan(0);
    expect(new Set(a.asked).size).toBe(1);
    // The fake Vault backdates notBefore by 30 s, to the second.
    expect(Math.floor(a.asked[0]! / 1000) * 1000).toBe(a.keeper.current!.intermediate.notBefore + 30_000);
    a.ctl.abort();
    await running;
  });

  it('rolls back before the switch when the new issuer is deleted in Vault', async () => {
    const clock = new FakeClock(Date.now());
    const vault = new FakeVaultCa(oldRoot, () => clock.now());
    const a = agent({ clock, vault, multiRoot: true });
    const running = a.loop.run(a.ctl.signal);
    await clock.waitForSleepers(1);
    const first = a.keeper.current!;
    vault.issuers.push({ id: 'root-2', name: 'root-2026', ca: newRoot });
    await runUntil(clock, () => a.keeper.current!.files.rootCert !== first.files.rootCert);
    vault.issuers.pop();
    await runUntil(clock, () => a.keeper.current!.files.rootCert === first.files.rootCert);
    expect(a.keeper.current!.intermediate.serial).toBe(first.intermediate.serial);
    a.ctl.abort();
    await running;
  });
});

describe('root rotation without ISTIO_MULTIROOT_MESH', () => {
  it('holds a root change back while istiod runs (restart required), and init applies it at the next start', async () => {
    const clock = new FakeClock(Date.now());
    const vault = new FakeVaultCa(oldRoot, () => clock.now());
    const a = agent({ clock, vault, multiRoot: false, writer: new CertDirWriter(dir, clock, 0) });
    expect((await ensureFirstBundle(a.keeper, { clock, random: () => 0, log: a.cap.log }, { timeoutMs: 10_000 })).ok).toBe(true);
    a.keeper.markIstiodRunning();
    const running = a.loop.run(a.ctl.signal);
    await clock.waitForSleepers(1);
    const before = await fs.readFile(path.join(dir, 'root-cert.pem'), 'utf8');
    vault.issuers.push({ id: 'root-2', name: 'root-2026', ca: newRoot });
    const restart = async () => sample(await a.metrics.registry.metrics(), 'istiod_vault_agent_root_rotation_restart_required');
    await runUntil(clock, () => a.cap.lines.some((l) => l.restartRequired === true));
    expect(await restart()).toBe(1);
    expect(a.cap.lines.find((l) => l.restartRequired === true)!.msg).toMatch(/root rotation: add/);
    expect(await fs.readFile(path.join(dir, 'root-cert.pem'), 'utf8')).toBe(before);
    a.ctl.abort();
    await running;

    // The rolling restart: a new pod's init, before istiod starts, publishes old + new.
    const b = agent({ clock, vault, multiRoot: false, writer: new CertDirWriter(dir, clock, 0) });
    const r = await ensureFirstBundle(b.keeper, { clock, random: () => 0, log: b.cap.log }, { timeoutMs: 10_000 });
    expect(r.ok).toBe(true);
    expect(subjects(await fs.readFile(path.join(dir, 'root-cert.pem'), 'utf8'))).toEqual(['CN=Mesh Root 2025', 'CN=Mesh Root 2026']);
  });
});
