/**
 * Issue 11, part 3: a PKI mount that does not grow forever. Every issuance stores the signed intermediate
 * in the signing mount's certificate store; setup.sh turns on auto-tidy of that store and says so, and a
 * tidy run on the real OpenBao removes the intermediates that have expired while keeping the valid one.
 * Auto-tidy itself ticks about once a minute whatever its interval, so the test runs `<mount>/tidy`
 * directly (safety_buffer 1 s) and reads `tidy-status` until that run has finished.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { waitFor } from '../helpers/wait.js';
import { useOpenBao } from '../helpers/openbao.js';
import { runSetup, setupArgs, startFakeCluster, type FakeCluster } from './support/vault-setup.js';

const bao = useOpenBao();
let dir: string;

/** Serials in the mount's certificate store, as the agent's CertInfo writes them (hex, upper case, no colons). */
async function storedSerials(mount: string): Promise<string[]> {
  const res = await bao.get().api.request('LIST', `${mount}/certs`);
  const keys = ((res.body as { data?: { keys?: string[] } })?.data?.keys ?? []);
  return keys.map((k) => k.replace(/[:-]/g, '').toUpperCase().replace(/^0+/, ''));
}

/** Issues one intermediate with the built agent (`init` into a fresh CERT_DIR) and returns its serial. */
async function issue(name: string, certTtl: string): Promise<{ serial: string; notAfter: number }> {
  const certDir = path.join(dir, name);
  await fs.mkdir(certDir);
  // OpenBao backdates notBefore 30 s: with a 10 s TTL only a short RENEW_BEFORE keeps it from being due on arrival.
  const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, CERT_DIR: certDir, KEY_TYPE: 'ec', CERT_TTL: certTtl, RENEW_BEFORE: '2s' }));
  expect(run.code, run.stdout.slice(-1500)).toBe(0);
  const c = certsFromPem(await fs.readFile(path.join(certDir, 'ca-cert.pem'), 'utf8'), 'ca-cert.pem')[0]!;
  return { serial: c.serial.replace(/^0+/, ''), notAfter: c.notAfter };
}

interface TidyStatus {
  state: string;
  time_started: string | null;
  cert_store_deleted_count: number;
}

/** Runs `<mount>/tidy` of the certificate store and resolves with its status once that run has finished. */
async function tidyNow(mount: string): Promise<TidyStatus> {
  const api = bao.get().api;
  const status = async () => ((await api.call('GET', `${mount}/tidy-status`)) as { data: TidyStatus }).data;
  const previous = (await status()).time_started;
  await api.call('POST', `${mount}/tidy`, { tidy_cert_store: true, safety_buffer: '1s' });
  return waitFor(async () => {
    const s = await status();
    return s.time_started !== previous && s.state === 'Finished' ? s : undefined;
  }, { what: 'a finished tidy', timeoutMs: 20_000, intervalMs: 100 });
}

describe.skipIf(!bao.available)("PKI: the certificate store does not grow forever", () => {
  let cluster: FakeCluster;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-tidy-'));
    cluster = await startFakeCluster({ name: 'cluster1', dir, caPem: bao.get().rootPem, key: bao.get().jwtKey });
  });
  afterAll(async () => {
    await cluster?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('setup.sh turns on auto-tidy of the cert store (and expired issuers) and says so', async () => {
    const res = await runSetup(bao.get(), setupArgs(cluster, 'tidy-pki'));
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/auto-tidy of tidy-pki: every 12h, removes certificates expired for more than 72h \(each issuance stores one intermediate there\) and issuers expired for more than a year/);
    const cfg = ((await bao.get().api.call('GET', 'tidy-pki/config/auto-tidy')) as { data: Record<string, unknown> }).data;
    expect(cfg).toMatchObject({ enabled: true, tidy_cert_store: true, tidy_revoked_certs: true, tidy_expired_issuers: true, safety_buffer: 72 * 3600, issuer_safety_buffer: 8760 * 3600, interval_duration: 12 * 3600 });

    const again = await runSetup(bao.get(), setupArgs(cluster, 'tidy-pki'), { PKI_TIDY_SAFETY_BUFFER: '24h' });
    expect(again.code, again.stderr).toBe(0);
    expect(((await bao.get().api.call('GET', 'tidy-pki/config/auto-tidy')) as { data: { safety_buffer: number } }).data.safety_buffer).toBe(24 * 3600);
  });

  it('each issuance stores one intermediate; tidy removes the expired ones and keeps the valid one', async () => {
    const before = await storedSerials('pki');
    const short = [await issue('short-1', '10s'), await issue('short-2', '10s')];
    const valid = await issue('valid', '1h');
    const after = await storedSerials('pki');
    // One stored certificate per issuance, nothing else.
    expect(after.length - before.length).toBe(3);
    for (const i of [...short, valid]) expect(after).toContain(i.serial);

    // Tidy until the short-lived ones are gone (they expire ~10 s after issuance; each tidy run is awaited).
    let deleted = 0;
    const gone = await waitFor(async () => {
      const s = await tidyNow('pki');
      deleted += s.cert_store_deleted_count;
      const left = await storedSerials('pki');
      return short.every((i) => !left.includes(i.serial)) ? left : undefined;
    }, { what: 'the short-lived certificates tidied away', timeoutMs: 45_000, intervalMs: 250 });
    expect(gone).toContain(valid.serial);
    expect(deleted).toBeGreaterThanOrEqual(2);
    // Only expired ones went: nothing was removed before its notAfter.
    expect(Date.now()).toBeGreaterThan(Math.max(...short.map((i) => i.notAfter)));
  });
});
