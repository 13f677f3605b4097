/**
 * The vault-paths source (a bundle stored in Vault, renewed out of band) in fake time, over an in-memory
 * Vault: what it reads and how it assembles and verifies the bundle, how cheaply it polls, and how the
 * keeper and the renewal loop run it: a change is published, a broken change is refused once (reason
 * logged and counted) while the previous bundle stays, a due stored bundle is still published at init.
 */
import { describe, expect, it } from 'vitest';
import { BundleKeeper } from '../../src/agent/bundle-keeper.js';
import { ensureFirstBundle } from '../../src/agent/first-bundle.js';
import { RenewalLoop } from '../../src/agent/renewal-loop.js';
import { assembleStoredBundle, vaultPathsSource } from '../../src/agent/sources/vault-paths-source.js';
import { AgentError } from '../../src/common/errors.js';
import { loadSettings } from '../../src/config/settings.js';
import type { BundlePaths } from '../../src/config/bundle-paths.js';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { RootChangedError } from '../../src/pki/trust-roots.js';
import { AgentMetrics } from '../../src/telemetry/metrics.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeVaultReader } from '../helpers/fake-vault-reader.js';
import { captureLog } from '../helpers/log-sink.js';
import { MemoryWriter } from '../helpers/memory-writer.js';
import { sample } from '../helpers/metrics-text.js';
import { bundleOf, makeIntermediate, makeRoot, type TestCa } from '../helpers/test-pki.js';

const DAY = 86_400_000;
const KV_PATH = 'kubernetes-cluster1-secrets/istiod-service/certs';
const POLL = 60_000;

function pathsFor(env: Record<string, string>): BundlePaths {
  return loadSettings({ VAULT_ADDR: 'https://vault.example:8200', AUTH_ROLE: 'istiod', ...env }, { needsVault: true }).bundlePaths!;
}
const KV_BUNDLE = () => pathsFor({ BUNDLE_SOURCE: 'kv-bundle', KV_BUNDLE_PATH: KV_PATH });
const TSB = () => pathsFor({ BUNDLE_SOURCE: 'tsb' });

/** The kv-bundle secret for `inter` under `root`, as `vault kv put ... ca_key=@ca-key.pem ...` writes it. */
function kvBundle(inter: TestCa, root: TestCa, chain: TestCa[] = [inter, root]) {
  const b = bundleOf(inter, root, chain);
  return { ca_key: b.caKey, ca_cert: b.caCert, cert_chain: b.certChain, root_cert: b.rootCert };
}

let pki: { root: TestCa; other: TestCa; a: TestCa; b: TestCa; foreign: TestCa } | undefined;
async function certs() {
  if (!pki) {
    const root = await makeRoot('CN=Mesh Root');
    const other = await makeRoot('CN=Another Root');
    pki = {
      root,
      other,
      a: await makeIntermediate(root, { notAfter: new Date(Date.now() + 30 * DAY) }),
      b: await makeIntermediate(root, { notAfter: new Date(Date.now() + 60 * DAY) }),
      foreign: await makeIntermediate(other, { notAfter: new Date(Date.now() + 90 * DAY) }),
    };
  }
  return pki;
}

async function setup(paths: BundlePaths, o: { renewBeforeMs?: number } = {}) {
  const clock = new FakeClock(Date.now());
  const vault = new FakeVaultReader();
  const cap = captureLog();
  const metrics = new AgentMetrics('test', { defaultMetrics: false });
  const writer = new MemoryWriter();
  const source = vaultPathsSource({ vault, clock, log: cap.log, paths, pollIntervalMs: POLL, renewBeforeMs: o.renewBeforeMs, extraRoots: () => [] });
  const keeper = new BundleKeeper({ source, writer, clock, random: () => 0.5, log: cap.log, metrics, certDir: '/nonexistent/ivagent-cert-dir', renewBeforeMs: o.renewBeforeMs });
  const loop = new RenewalLoop({ keeper, clock, random: () => 0.5, log: cap.log, metrics });
  const ctl = new AbortController();
  const counter = async (result: string, reason: string) => sample(await metrics.registry.metrics(), 'istiod_vault_agent_issuances_total', { result, reason });
  return { clock, vault, cap, metrics, writer, source, keeper, loop, ctl, counter };
}

describe('vault-paths source: reading and verifying a stored bundle', () => {
  it('kv-bundle: one read gives the four files, verified; the chain is ordered by signature with the root last', async () => {
    const { root, a } = await certs();
    const t = await setup(KV_BUNDLE());
    // Stored the way people write it by hand: the chain without the root, in any order.
    t.vault.putKv(KV_PATH, { ...kvBundle(a, root, [a]), unrelated: 'x' });
    const { bundle } = await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false });
    expect(t.vault.calls).toEqual({ kvData: 1, kvMetadata: 0, pki: 0 });
    expect(bundle.intermediate.serial).toBe(certsFromPem(a.pem, 'a')[0]!.serial);
    expect(bundle.chain.map((c) => c.subject)).toEqual(['CN=Intermediate CA, O=Istio', 'CN=Mesh Root']);
    expect(bundle.files.caKey).toBe(a.keyPem.trim() + '\n');
    expect(t.source.mints).toBe(false);
  });

  it('keeps the published root-cert.pem bytes while the stored root is the same', async () => {
    const { root, a } = await certs();
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, kvBundle(a, root));
    const publishedBytes = `# the mesh root\n${root.pem}`;
    const { bundle } = await t.source.fetch({ published: { bytes: publishedBytes, roots: certsFromPem(root.pem, 'r'), enforce: true }, current: undefined, trigger: 'renew', istiodRunning: false });
    expect(bundle.files.rootCert).toBe(publishedBytes);
  });

  it('tsb: the key from KV v2, the certificates from PKI reads (cert/ca_chain is one string)', async () => {
    const { root, a } = await certs();
    const t = await setup(TSB());
    t.vault.putKv('secret/istioca', { 'ca-key.pem': a.keyPem }, 2);
    t.vault.putPki('istioca/cert/ca', { certificate: a.pem.trim() });
    t.vault.putPki('istioca/cert/ca_chain', { certificate: `${a.pem}${root.pem}`, ca_chain: `${a.pem.trim()}\n${root.pem.trim()}` });
    t.vault.putPki('pki/cert/ca', { certificate: root.pem.trim() });
    const { bundle } = await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false });
    expect(t.vault.calls).toEqual({ kvData: 1, kvMetadata: 0, pki: 3 });
    expect(bundle.anchor.subject).toBe('CN=Mesh Root');
  });

  it('issuer/<ref>/json: ca_chain is a list, joined', async () => {
    const { root, a } = await certs();
    const t = await setup(pathsFor({ BUNDLE_SOURCE: 'vault-paths', CA_KEY_FROM: 'secret/istioca#key', CA_CERT_FROM: 'istioca/issuer/default/json', CERT_CHAIN_FROM: 'istioca/issuer/default/json#ca_chain', ROOT_CERT_FROM: 'pki/issuer/default/json' }));
    t.vault.putKv('secret/istioca', { key: a.keyPem }, 2);
    t.vault.putPki('istioca/issuer/default/json', { certificate: a.pem, ca_chain: [a.pem, root.pem] });
    t.vault.putPki('pki/issuer/default/json', { certificate: root.pem, ca_chain: [root.pem] });
    const { bundle } = await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false });
    // One read per distinct path, whatever number of files it serves.
    expect(t.vault.calls.pki).toBe(2);
    expect(bundle.chain).toHaveLength(2);
  });

  it('refuses a key that does not match, naming where the bundle came from and never showing the key', async () => {
    const { root, a, b } = await certs();
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, { ...kvBundle(a, root), ca_key: b.keyPem });
    const err = await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'KEY_MISMATCH', reason: 'verification_failed' });
    expect((err as Error).message).toMatch(/^the bundle stored in Vault is not usable: ca-key\.pem does not match ca-cert\.pem .*fix it where it is written; nothing was published from it/);
    expect((err as Error).message).not.toContain(b.keyPem.split('\n')[1]!);
  });

  it('refuses a chain to another root as root_changed while a valid bundle under the published root is there', async () => {
    const { root, other, foreign } = await certs();
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, kvBundle(foreign, other));
    const err = await t.source.fetch({ published: { bytes: root.pem, roots: certsFromPem(root.pem, 'r'), enforce: true }, current: undefined, trigger: 'renew', istiodRunning: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RootChangedError);
    expect(err).toMatchObject({ reason: 'root_changed', retryable: false });
  });

  it('refuses a chain that ends at a root missing from root-cert.pem (WRONG_ROOT)', async () => {
    const { root, other, foreign } = await certs();
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, { ...kvBundle(foreign, other), root_cert: root.pem });
    const err = await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WRONG_ROOT', reason: 'verification_failed' });
    expect((err as Error).message).toMatch(/ends at the root "CN=Another Root" .* which is not in root-cert\.pem \(kubernetes-cluster1-secrets\/istiod-service\/certs#root_cert\)/);
  });

  it.each([
    [{ ca_cert: undefined }, /has no field "ca_cert" \(it has "ca_key", "cert_chain", "root_cert"; check KV_BUNDLE_PATH\)/, 'BUNDLE_FIELD_MISSING'],
    [{ ca_cert: 42 }, /the field "ca_cert" of .* is not text \(a number; check KV_BUNDLE_PATH\)/, 'BUNDLE_FIELD_NOT_TEXT'],
  ])('a field that is missing or not text (%j) is an input error naming the setting', async (patch, msg, code) => {
    const { root, a } = await certs();
    const t = await setup(KV_BUNDLE());
    const values: Record<string, unknown> = { ...kvBundle(a, root), ...patch };
    if (values.ca_cert === undefined) delete values.ca_cert;
    t.vault.putKv(KV_PATH, values);
    const err = await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect(err).toMatchObject({ code, reason: 'input_invalid', retryable: false });
    expect((err as Error).message).toMatch(msg);
    expect((err as Error).message).not.toContain(a.keyPem.split('\n')[1]!);
  });

  it('assembles with extra trust roots appended on the first publish', async () => {
    const { root, other, a } = await certs();
    const cap = captureLog();
    const b = bundleOf(a, root);
    const v = assembleStoredBundle({ texts: b, paths: KV_BUNDLE(), extraRoots: certsFromPem(other.pem, 'x'), published: undefined, now: Date.now(), log: cap.log });
    expect(v.roots.map((r) => r.subject)).toEqual(['CN=Mesh Root', 'CN=Another Root']);
  });
});

describe('vault-paths source: polling', () => {
  it('KV v2: polls the version from metadata only, and reads the secret when it moves', async () => {
    const { root, a, b } = await certs();
    const t = await setup(TSB());
    t.vault.putKv('secret/istioca', { 'ca-key.pem': a.keyPem }, 2);
    t.vault.putPki('istioca/cert/ca', { certificate: a.pem });
    t.vault.putPki('istioca/cert/ca_chain', { ca_chain: `${a.pem}${root.pem}` });
    t.vault.putPki('pki/cert/ca', { certificate: root.pem });
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(true);
    await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false });
    const before = { ...t.vault.calls };
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(false);
    expect(t.vault.calls.kvData).toBe(before.kvData);
    expect(t.vault.calls.kvMetadata).toBe(before.kvMetadata + 1);
    t.vault.putKv('secret/istioca', { 'ca-key.pem': b.keyPem }, 2);
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(true);
    expect(t.vault.calls.kvData).toBe(before.kvData);
  });

  it('KV v2 without "read" on its metadata: says so once and polls the content instead', async () => {
    const { root, a, b } = await certs();
    const t = await setup(pathsFor({ BUNDLE_SOURCE: 'kv-bundle', KV_BUNDLE_PATH: 'secret/istiod' }));
    t.vault.putKv('secret/istiod', kvBundle(a, root), 2);
    t.vault.metadataDenied.add('secret/istiod');
    await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false });
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(false);
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(false);
    expect(t.vault.calls.kvMetadata).toBe(1);
    expect(t.cap.lines.filter((l) => /polling secret\/istiod reads the whole secret instead of its version/.test(String(l.msg)))).toHaveLength(1);
    t.vault.putKv('secret/istiod', kvBundle(b, root), 2);
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(true);
  });

  it('KV v1 and PKI: polls by content (a KV v1 secret has no version); field order does not count as a change', async () => {
    const { root, a, b } = await certs();
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, kvBundle(a, root));
    await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false });
    const { ca_key, ...rest } = kvBundle(a, root);
    t.vault.putKv(KV_PATH, { ...rest, ca_key });
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(false);
    expect(t.vault.calls.kvMetadata).toBe(0);
    t.vault.putKv(KV_PATH, kvBundle(b, root));
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(true);
  });

  it('a refused bundle counts as seen: polling does not report it again until it changes', async () => {
    const { root, a, b } = await certs();
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, { ...kvBundle(a, root), ca_key: b.keyPem });
    await expect(t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false })).rejects.toMatchObject({ code: 'KEY_MISMATCH' });
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(false);
  });

  it('a certificate that is not valid yet (clock skew where it was made) is read again at the next poll', async () => {
    const { root } = await certs();
    const early = await makeIntermediate(root, { notBefore: new Date(Date.now() + 5 * 60_000) });
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, kvBundle(early, root));
    await expect(t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false })).rejects.toMatchObject({ code: 'NOT_YET_VALID' });
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(true);
  });

  it('a read that fails (Vault down) does not count as seen: the next poll reports the change again', async () => {
    const { root, a, b } = await certs();
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, kvBundle(a, root));
    await t.source.fetch({ published: undefined, current: undefined, trigger: 'renew', istiodRunning: false });
    t.vault.putKv(KV_PATH, kvBundle(b, root));
    t.vault.fail.push(new AgentError('connect ECONNREFUSED', { code: 'VAULT_UNREACHABLE', reason: 'vault_unreachable', retryable: true }));
    await expect(t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).rejects.toMatchObject({ reason: 'vault_unreachable' });
    expect(await t.source.changed!({ published: undefined, current: undefined, istiodRunning: false })).toBe(true);
  });
});

describe('vault-paths source under the keeper and the renewal loop (fake time)', () => {
  it('publishes what is stored, polls every BUNDLE_POLL_INTERVAL (jittered, never later), and publishes a change without restart', async () => {
    const { root, a, b } = await certs();
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, kvBundle(a, root));
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    expect(t.writer.published).toHaveLength(1);
    expect(t.keeper.current!.intermediate.serial).toBe(certsFromPem(a.pem, 'a')[0]!.serial);
    const wait = t.clock.nextAt! - t.clock.now();
    expect(wait).toBeLessThanOrEqual(POLL);
    expect(wait).toBeGreaterThanOrEqual(POLL * 0.9);

    // Nothing moved: polls read, publish nothing.
    for (let i = 0; i < 3; i++) {
      await t.clock.fireNext();
      await t.clock.waitForSleepers(1);
    }
    expect(t.writer.published).toHaveLength(1);

    // Renewed out of band (a CI job wrote a new bundle under the same root).
    t.vault.putKv(KV_PATH, kvBundle(b, root));
    await t.clock.fireNext();
    await t.clock.waitForSleepers(1);
    expect(t.writer.published).toHaveLength(2);
    expect(t.keeper.current!.intermediate.serial).toBe(certsFromPem(b.pem, 'b')[0]!.serial);
    // The root bytes of the first publish are kept.
    expect(t.writer.published[1]!.rootCert).toBe(t.writer.published[0]!.rootCert);
    expect(t.cap.lines.some((l) => l.msg === 'published the bundle from its source' && l.trigger === 'changed')).toBe(true);
    expect(await t.counter('success', 'none')).toBe(2);
    t.ctl.abort();
    await running;
  });

  it('a broken change is refused once, logged and counted; the previous bundle stays; the next good change is published', async () => {
    const { root, other, a, b, foreign } = await certs();
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, kvBundle(a, root));
    const running = t.loop.run(t.ctl.signal);
    await t.clock.waitForSleepers(1);
    const good = t.writer.published[0]!;

    t.vault.putKv(KV_PATH, { ...kvBundle(a, root), ca_key: b.keyPem });
    await t.clock.fireNext();
    await t.clock.waitForSleepers(1);
    const refused = t.cap.lines.find((l) => l.reason === 'verification_failed')!;
    expect(refused.msg).toMatch(/^update from the bundle source failed: the bundle stored in Vault is not usable: ca-key\.pem does not match .*; keeping the current bundle; checking the source again in /);
    expect(await t.counter('failure', 'verification_failed')).toBe(1);
    const fetches = () => t.cap.lines.filter((l) => l.step === 'read').length;
    const polls = () => t.cap.lines.filter((l) => l.msg === 'polled the bundle source').length;
    const [fetched, polled] = [fetches(), polls()];
    // Three polls later: still refused once, not fetched again, nothing published.
    await fireUntil(t.clock, () => polls() >= polled + 3);
    expect(await t.counter('failure', 'verification_failed')).toBe(1);
    expect(fetches()).toBe(fetched);
    expect(t.writer.published).toEqual([good]);
    expect(t.keeper.current!.intermediate.serial).toBe(certsFromPem(a.pem, 'a')[0]!.serial);

    // Chain to another root: refused as a root change.
    t.vault.putKv(KV_PATH, kvBundle(foreign, other));
    await t.clock.fireNext();
    await t.clock.waitForSleepers(1);
    expect(await t.counter('failure', 'root_changed')).toBe(1);
    expect(t.cap.lines.find((l) => l.reason === 'root_changed')!.level).toBe('error'); // a person must act
    expect(t.writer.published).toEqual([good]);

    t.vault.putKv(KV_PATH, kvBundle(b, root));
    // Taken at the poll that sees it (no backoff after the refusals: the source decides).
    const at = t.clock.now();
    await fireUntil(t.clock, () => t.writer.published.length === 2);
    expect(t.clock.now() - at).toBeLessThanOrEqual(POLL);
    expect(t.keeper.current!.intermediate.serial).toBe(certsFromPem(b.pem, 'b')[0]!.serial);
    t.ctl.abort();
    await running;
  });

  it('init publishes a stored bundle that is already due (it is all there is) and warns loudly, once', async () => {
    const root = (await certs()).root;
    // 20 days into a 22-day life: due long ago by a third of the lifetime.
    const old = await makeIntermediate(root, { notBefore: new Date(Date.now() - 20 * DAY), notAfter: new Date(Date.now() + 2 * DAY) });
    const t = await setup(KV_BUNDLE());
    t.vault.putKv(KV_PATH, kvBundle(old, root));
    const res = await ensureFirstBundle(t.keeper, { clock: t.clock, random: () => 0.5, log: t.cap.log }, { timeoutMs: 60_000 });
    expect(res).toEqual({ ok: true, issued: true });
    expect(t.writer.published).toHaveLength(1);
    const warn = t.cap.lines.filter((l) => /^the bundle stored in Vault is already due for renewal/.test(String(l.msg)));
    expect(warn).toHaveLength(1);
    expect(warn[0]!.level).toBe('warn');
    // Read again (a restart, a poll): not said twice for the same intermediate, and "unchanged", not a failure.
    expect(await t.keeper.renew('due')).toBe('unchanged');
    expect(t.cap.lines.filter((l) => /already due for renewal/.test(String(l.msg)))).toHaveLength(1);
    expect(await t.counter('failure', 'lifetime_too_short')).toBe(0);
  });
});

/** Fires the loop's timers one by one until `cond` holds; fails after `max` (a loop that never gets there). */
async function fireUntil(clock: FakeClock, cond: () => boolean, max = 12): Promise<void> {
  for (let fired = 0; !cond(); fired++) {
    if (fired === max) throw new Error(`condition not met after ${max} timers`);
    await clock.fireNext();
    await clock.waitForSleepers(1);
  }
}
