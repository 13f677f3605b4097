/**
 * Root rotation end to end, driven only by Vault commands against a real OpenBao, with the built agent
 * (`init`, `sidecar`) feeding a real istiod (tools/istio's pilot-discovery, release-1.31 commit
 * eed52ebb66ad):
 * - multi-root (ISTIO_MULTIROOT_MESH=true on istiod and the agent): add, rollback, add again, a renewal
 *   during the soak (still on the old root), switch, remove. Each phase is one live reload of istiod.
 *   Meanwhile a workload asks istiod for certificates in a loop, and every certificate issued so far that
 *   is still valid must verify against the trust anchors istiod hands out at each moment (no gap).
 * - without multi-root: the agent holds root changes back while istiod runs (log + metric) and never
 *   publishes one istiod would skip; a rolling restart (istiod stopped, `init`, istiod started) brings
 *   them in; the switch is live.
 * Timings are seconds instead of hours: the tests wait for the agent's and istiod's log lines, never for
 * a time.
 */
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { freePort } from '../../src/dev/dev-server.js';
import { cleanEnv, runAgent, startAgent, type AgentRun, type LogLine } from '../helpers/agent-process.js';
import { goTool } from '../helpers/go-tools.js';
import { ISTIOD_LOG, startIstiod, type Istiod } from '../helpers/istiod.js';
import { httpGet, sample } from '../helpers/metrics-text.js';
import { waitFor } from '../helpers/wait.js';
import { useOpenBao } from '../helpers/openbao.js';
import { requestWorkloadCert, verifyChain, WorkloadCertError } from '../helpers/workload.js';

const haveTools = goTool('pilot-discovery') !== '' && goTool('workload') !== '';

/** Lifetime the workload asks istiod for (a sidecar's is 24h): ROOT_REMOVE_AFTER must cover it. */
const WORKLOAD_TTL_S = 15;
/**
 * ROOT_REMOVE_AFTER counts from the switch, which the agent dates from certificates (every replica
 * agrees): the later of the soak's end and the new intermediate's notBefore, which Vault backdates by
 * 30 s. So it covers 30 s + the workload lifetime + a margin whenever the switch happens. (With 5 s
 * instead, the workload check below reports certificates of the old intermediate that stop verifying.)
 */
const REMOVE_AFTER_S = 30 + WORKLOAD_TTL_S + 5;
/** Long enough for the test to renew once during the soak, on a loaded machine. */
const SOAK_S = 30;

let dir: string;
let clientDir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-rootrot-'));
  clientDir = `${dir}-client`;
  await fs.mkdir(clientDir);
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rm(clientDir, { recursive: true, force: true });
});

const read = (f: string) => fs.readFile(path.join(dir, f), 'utf8');
const certOf = (pem: string) => new X509Certificate(pem);
const pemBlocks = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
const subjectsOf = (pem: string) => pemBlocks(pem).map((b) => certOf(b).subject.replace(/\n/g, ', '));
const notAfterS = (pem: string) => Math.floor(new Date(certOf(pem).validTo).getTime() / 1000);
const signedBy = (leaf: X509Certificate, issuerPem: string) => {
  const issuer = certOf(issuerPem);
  return leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey);
};
/** istiod's log lines start with an RFC 3339 timestamp. */
const istiodTime = (line: string) => Date.parse(line.split(/\s/)[0]!);

/** The client certificate the workload logs in with: minted from the FIRST intermediate, chaining to the first root. */
async function snapshotClientCa(): Promise<void> {
  for (const f of ['ca-key.pem', 'ca-cert.pem', 'cert-chain.pem']) await fs.copyFile(path.join(dir, f), path.join(clientDir, f));
}

interface Issued {
  n: number;
  /** When the answer arrived (ms). */
  at: number;
  leaf: string;
  intermediates: string[];
  leafNotAfter: number;
  /** The trust anchors istiod handed out with it: its whole root-cert.pem at that moment. */
  anchors: string;
}

/**
 * A workload asking istiod for a certificate in a loop. After each answer, every certificate issued so
 * far that is still valid is verified (openssl, at the answer's time) against the anchors of that answer.
 * A pair (certificate, anchors) verified once is not verified again: neither changes, and a valid
 * certificate stays verifiable until it expires.
 */
class NoGapSampler {
  readonly issued: Issued[] = [];
  readonly failures: string[] = [];
  /** Distinct anchor sets (the index a verification is remembered by). */
  readonly anchorSets: string[] = [];
  /** Every change of anchors, in the order istiod handed them out. */
  readonly anchorHistory: string[] = [];
  checks = 0;
  private verified = new Set<string>();
  private stopped = false;
  private done: Promise<void> | undefined;
  private waiters: { pred: (i: Issued) => boolean; resolve: (i: Issued) => void }[] = [];

  constructor(private readonly istiod: Istiod) {}

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  /** Resolves with the first answer after `from` (an index into issued) matching `pred`. */
  waitFor(pred: (i: Issued) => boolean, from = 0, timeoutMs = 60_000): Promise<Issued> {
    const hit = this.issued.slice(from).find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = { pred: (i: Issued) => i.n >= from && pred(i), resolve };
      this.waiters.push(w);
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no workload certificate matched within ${timeoutMs} ms (${this.issued.length} issued; failures: ${this.failures.slice(-3).join(' | ')})`));
      }, timeoutMs);
      w.resolve = (i) => {
        clearTimeout(t);
        resolve(i);
      };
    });
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let w;
      try {
        w = await requestWorkloadCert(this.istiod, { certDir: clientDir, ttlSeconds: WORKLOAD_TTL_S });
      } catch (err) {
        if (!this.stopped) this.failures.push(`request ${this.issued.length}: ${String(err)}`);
        continue;
      }
      const at = Date.now();
      const i: Issued = { n: this.issued.length, at, leaf: w.chain[0]!, intermediates: w.chain.slice(1, -1), leafNotAfter: Date.parse(w.leafInfo.notAfter), anchors: w.rootBundle };
      this.issued.push(i);
      if (!this.anchorSets.includes(i.anchors)) this.anchorSets.push(i.anchors);
      if (this.anchorHistory.at(-1) !== i.anchors) this.anchorHistory.push(i.anchors);
      const a = this.anchorSets.indexOf(i.anchors);
      const atS = Math.floor(at / 1000);
      for (const old of this.issued) {
        // Still valid at this moment (whole seconds, as certificates and openssl count).
        if (Math.floor(old.leafNotAfter / 1000) <= atS + 1) continue;
        const key = `${old.n}/${a}`;
        if (this.verified.has(key)) continue;
        const v = await verifyChain(old.leaf, old.intermediates, i.anchors, atS);
        this.checks++;
        if (!v.ok) this.failures.push(`certificate #${old.n} (issued ${new Date(old.at).toISOString()}, notAfter ${new Date(old.leafNotAfter).toISOString()}) does not verify against the anchors of #${i.n} [${subjectsOf(i.anchors).join(' + ')}] at ${new Date(at).toISOString()}: ${v.output}`);
        this.verified.add(key);
      }
      for (const w of [...this.waiters]) {
        if (w.pred(i)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(i);
        }
      }
    }
  }
}

function useVault() {
  const bao = useOpenBao();
  const api = () => bao.get().api;
  return {
    bao,
    /** A second root issuer in the mount (Vault's `pki/root/rotate/internal`); the default does not move. */
    async rotate(name: string): Promise<{ id: string; pem: string }> {
      // not_before_duration 1s: ROOT_SWITCH_SOAK counts from the root's notBefore, which Vault otherwise backdates by 30 s.
      const res = (await api().call('POST', 'pki/root/rotate/internal', { common_name: name, issuer_name: name.replace(/\W+/g, '-').toLowerCase(), key_type: 'ec', key_bits: 256, ttl: '87600h', not_before_duration: '1s' })) as { data: { issuer_id: string; certificate: string } };
      return { id: res.data.issuer_id, pem: `${res.data.certificate.trim()}\n` };
    },
    async defaultIssuer(): Promise<string> {
      return ((await api().call('GET', 'pki/config/issuers')) as { data: { default: string } }).data.default;
    },
    setDefault: (id: string) => api().call('POST', 'pki/config/issuers', { default: id }),
    deleteIssuer: (id: string) => api().call('DELETE', `pki/issuer/${id}`),
  };
}

function agentEnv(vaultEnv: Record<string, string>, extra: Record<string, string>): Record<string, string> {
  return cleanEnv({
    ...vaultEnv,
    CERT_DIR: dir,
    KEY_TYPE: 'ec',
    CERT_TTL: '1h',
    RENEW_BEFORE: '20m',
    ISSUER_POLL_INTERVAL: '1s',
    MIN_PUBLISH_INTERVAL: '500ms',
    ...extra,
  });
}

function startSidecar(env: Record<string, string>): AgentRun {
  const run = startAgent(['sidecar'], env);
  onTestFinished(async () => {
    run.kill('SIGKILL');
    await run.exit;
  });
  return run;
}

async function agentMetric(port: number, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  return sample((await httpGet(`http://127.0.0.1:${port}/metrics`)).text, `istiod_vault_agent_${name}`, labels);
}

interface Phase {
  name: string;
  published: LogLine;
  /** From the agent's publish to istiod's "reloaded" line, ms. */
  reloadMs: number;
  /** istiod's lines of this phase, from the Vault command (or the end of the previous phase) on. */
  istiodFrom: number;
}

/**
 * One phase: run `action` (a Vault command, a signal, or nothing when the agent moves by itself), then
 * wait for the agent's publish (of new roots only, unless `mints`: a new intermediate) and istiod's
 * reload (and its "Updating new ROOT-CA" when the roots change).
 */
async function phase(name: string, istiod: Istiod, agent: AgentRun, o: { rootsChange: boolean; mints?: boolean; action?: () => Promise<unknown>; timeoutMs?: number }): Promise<Phase> {
  const istiodFrom = istiod.lines.length;
  const from = agent.lines.length;
  await o.action?.();
  const published = await agent.waitFor((l) => l.msg === (o.rootsChange && !o.mints ? 'published new trust roots with the same intermediate' : 'published a new intermediate'), o.timeoutMs ?? 30_000, from);
  if (o.rootsChange) await istiod.waitForLog(ISTIOD_LOG.rootUpdated, { from: istiodFrom });
  const reloaded = await istiod.waitForLog(ISTIOD_LOG.reloaded, { from: istiodFrom });
  return { name, published, reloadMs: istiodTime(reloaded) - Date.parse(String(published.time)), istiodFrom };
}

/** istiod's lines between two phases: exactly one reload, nothing refused or failed. */
function expectOneCleanReload(istiod: Istiod, from: number, to: number): void {
  const lines = istiod.lines.slice(from, to);
  expect(lines.filter((l) => ISTIOD_LOG.reloaded.test(l)), lines.join('\n')).toHaveLength(1);
  for (const bad of [ISTIOD_LOG.multiRootDisabled, ISTIOD_LOG.reloadFailed]) expect(lines.filter((l) => bad.test(l))).toEqual([]);
  // "Updating new ROOT-CA not supported" (refused), as opposed to the bare "Updating new ROOT-CA" (taken).
  expect(lines.filter((l) => /Updating new ROOT-CA not supported/.test(l))).toEqual([]);
}

describe.skipIf(!haveTools)('root rotation against a real istiod, ISTIO_MULTIROOT_MESH=true', () => {
  const vault = useVault();

  it('add, rollback, add, renew during the soak, switch, remove: each a live reload, and no workload certificate ever stops verifying', { timeout: 300_000 }, async () => {
    const multi = { ISTIO_MULTIROOT_MESH: 'true', ROOT_SWITCH_SOAK: `${SOAK_S}s`, ROOT_REMOVE_AFTER: `${REMOVE_AFTER_S}s` };
    const init = await runAgent(['init'], agentEnv(vault.bao.get().env, multi));
    expect(init.code, init.stdout + init.stderr).toBe(0);
    await snapshotClientCa();
    const oldRootBytes = await read('root-cert.pem');
    const first = { inter: await read('ca-cert.pem') };

    const istiod = await startIstiod({ certDir: dir, multiRoot: true });
    await istiod.waitForLog(ISTIOD_LOG.watching);
    const port = await freePort();
    const agent = startSidecar(agentEnv(vault.bao.get().env, { ...multi, METRICS_ADDR: `127.0.0.1:${port}`, ISTIOD_METRICS_URL: istiod.metricsUrl }));
    await agent.waitFor((l) => l.msg === 'adopted the bundle on disk');
    await agent.waitFor((l) => l.msg === 'istiod loaded the new intermediate');
    // The phase is known from the first look at Vault's issuers (ISSUER_POLL_INTERVAL after the start).
    await waitFor(async () => (await agentMetric(port, 'root_rotation_phase', { phase: 'steady' })) === 1, { what: 'root_rotation_phase steady', timeoutMs: 30_000 });

    const sampler = new NoGapSampler(istiod);
    sampler.start();
    onTestFinished(() => sampler.stop());
    /** Waits until the workload got `anchors` twice (so certificates of this phase are in the pool). */
    const seen = async (anchors: string) => {
      const from = sampler.issued.length;
      const a = await sampler.waitFor((i) => i.anchors === anchors, from);
      await sampler.waitFor((i) => i.anchors === anchors && i.n > a.n, from);
    };
    await seen(oldRootBytes);

    const phases: Phase[] = [];
    const interSerial = async () => certOf(await read('ca-cert.pem')).serialNumber;

    // add: a second root issuer in the mount. root-cert.pem = the old bytes + the new root; same intermediate.
    let serial = await interSerial();
    let rootB: { id: string; pem: string } | undefined;
    phases.push(await phase('add', istiod, agent, { rootsChange: true, action: async () => (rootB = await vault.rotate('Mesh Root B')) }));
    expect(await read('root-cert.pem')).toBe(oldRootBytes + rootB!.pem);
    expect(await interSerial()).toBe(serial);
    expect(await agentMetric(port, 'root_rotation_phase', { phase: 'added' })).toBe(1);
    // istiod's metrics cannot show a root-only change; the intermediate it serves was checked already.
    expect(await agentMetric(port, 'istiod_in_sync')).toBe(1);
    await seen(oldRootBytes + rootB!.pem);

    // rollback before the switch: delete the new issuer. root-cert.pem is the old bytes again.
    phases.push(await phase('rollback', istiod, agent, { rootsChange: true, action: () => vault.deleteIssuer(rootB!.id) }));
    expect(await read('root-cert.pem')).toBe(oldRootBytes);
    expect(await interSerial()).toBe(serial);
    expect(await agentMetric(port, 'root_rotation_phase', { phase: 'steady' })).toBe(1);
    await seen(oldRootBytes);

    // add again, with the root that will stay.
    let rootC: { id: string; pem: string } | undefined;
    phases.push(await phase('add', istiod, agent, { rootsChange: true, action: async () => (rootC = await vault.rotate('Mesh Root C')) }));
    const added = oldRootBytes + rootC!.pem;
    expect(await read('root-cert.pem')).toBe(added);
    expect(await interSerial()).toBe(serial);
    const soakEnds = new Date(certOf(rootC!.pem).validFrom).getTime() + SOAK_S * 1000;
    expect(await agentMetric(port, 'root_rotation_next_step_timestamp_seconds')).toBeUndefined();
    await seen(added);

    // The operator makes the new root the default at once; a renewal during the soak still comes from the
    // old root (Vault signs at pki/issuer/<old>/sign-intermediate), and istiod takes it like any renewal.
    await vault.setDefault(rootC!.id);
    const renewal = await phase('renewal during the soak', istiod, agent, { rootsChange: false, action: async () => agent.kill('SIGHUP') });
    phases.push(renewal);
    expect(Date.parse(String(renewal.published.time)), 'the renewal must land inside the soak; raise SOAK_S on a slower machine').toBeLessThan(soakEnds);
    const soakInter = await read('ca-cert.pem');
    expect(certOf(soakInter).serialNumber).not.toBe(serial);
    expect(certOf(soakInter).issuer).toBe(certOf(first.inter).issuer);
    expect(await read('root-cert.pem')).toBe(added);
    expect((await istiod.metrics()).certChainExpiry).toBe(notAfterS(soakInter));
    // The plan says when it moves on by itself: at the end of the soak.
    expect(await agentMetric(port, 'root_rotation_next_step_timestamp_seconds')).toBe(soakEnds / 1000);
    const onSoak = await sampler.waitFor((i) => signedBy(certOf(i.leaf), soakInter), sampler.issued.length);
    expect(onSoak.anchors).toBe(added);
    // `check` beside the running agent shows the same: both roots, the old one anchoring, the agent's plan.
    const check = await runAgent(['check'], cleanEnv({ CERT_DIR: dir, METRICS_ADDR: `127.0.0.1:${port}` }));
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toMatch(/^ {2}rotation: {3}added: "CN=Mesh Root C" is trusted next to "CN=Dev Mesh Root CA"/m);
    expect(check.stdout).toMatch(/^ {4}1\. CN=Dev Mesh Root CA .*<- the intermediate chains to this one$/m);
    expect(check.stdout).toContain(`the running agent at http://127.0.0.1:${port}/metrics: added, next step ${new Date(soakEnds).toISOString()}`);
    serial = certOf(soakInter).serialNumber;

    // switch: once the new root has been trusted for ROOT_SWITCH_SOAK, a new intermediate from it, and
    // (istiod >= 1.30 compares sets) the same two roots, the new one first, so istiod pushes the bundle.
    const switched = await phase('switch', istiod, agent, { rootsChange: true, mints: true, timeoutMs: (SOAK_S + 30) * 1000 });
    phases.push(switched);
    expect(Date.parse(String(switched.published.time))).toBeGreaterThanOrEqual(soakEnds);
    const newInter = await read('ca-cert.pem');
    expect(certOf(newInter).serialNumber).not.toBe(serial);
    expect(signedBy(certOf(newInter), rootC!.pem)).toBe(true);
    const reordered = rootC!.pem + oldRootBytes;
    expect(await read('root-cert.pem')).toBe(reordered);
    expect(await agentMetric(port, 'root_rotation_phase', { phase: 'switched' })).toBe(1);
    expect(agent.lines.find((l) => l.msg.startsWith('istiod compares root bundles as sets'))).toMatchObject({ istiodVersion: '1.31-dev', comparesSets: true });
    expect((await istiod.metrics()).certChainExpiry).toBe(notAfterS(newInter));
    await agent.waitFor((l) => l.msg === 'istiod loaded the new intermediate' && l.serial === switched.published.serial, 30_000);
    const onNew = await sampler.waitFor((i) => signedBy(certOf(i.leaf), newInter), sampler.issued.length);
    expect(onNew.anchors).toBe(reordered);
    const served = await requestWorkloadCert(istiod, { certDir: clientDir, caRoots: path.join(dir, 'root-cert.pem') });
    expect(served.serving.verified).toBe(true);
    expect(signedBy(certOf(served.serving.chain[0]!), newInter)).toBe(true);
    // istiod's trust in CLIENT certificates stays what it read at start: a workload authenticated by a
    // certificate from the new intermediate is refused until istiod restarts (the runbook says so).
    await expect(requestWorkloadCert(istiod, { certDir: dir })).rejects.toThrow(WorkloadCertError);

    // remove: ROOT_REMOVE_AFTER after the switch (counted from the new intermediate's notBefore), the old
    // root leaves; the intermediate stays.
    const removed = await phase('remove', istiod, agent, { rootsChange: true, timeoutMs: (REMOVE_AFTER_S + 30) * 1000 });
    phases.push(removed);
    expect(Date.parse(String(removed.published.time)) - new Date(certOf(newInter).validFrom).getTime()).toBeGreaterThanOrEqual(REMOVE_AFTER_S * 1000);
    expect(await read('ca-cert.pem')).toBe(newInter);
    expect(subjectsOf(await read('root-cert.pem'))).toEqual(subjectsOf(rootC!.pem));
    expect(await agentMetric(port, 'root_rotation_phase', { phase: 'steady' })).toBe(1);
    expect(await agentMetric(port, 'istiod_in_sync')).toBe(1);
    await seen(await read('root-cert.pem'));
    // ...while the old root's client certificate still logs in (the workload loop above uses one).

    await sampler.stop();
    expect(sampler.failures).toEqual([]);
    expect(sampler.anchorHistory.map(subjectsOf)).toEqual([
      subjectsOf(oldRootBytes),
      [...subjectsOf(oldRootBytes), 'CN=Mesh Root B'],
      subjectsOf(oldRootBytes),
      [...subjectsOf(oldRootBytes), 'CN=Mesh Root C'],
      ['CN=Mesh Root C', ...subjectsOf(oldRootBytes)],
      ['CN=Mesh Root C'],
    ]);
    // Each phase was exactly one reload of the same istiod process.
    for (const [n, p] of phases.entries()) expectOneCleanReload(istiod, p.istiodFrom, phases[n + 1]?.istiodFrom ?? istiod.lines.length);
    expect(istiod.lines.filter((l) => ISTIOD_LOG.pluggedCa.test(l))).toHaveLength(1);
    expect(istiod.child.exitCode).toBeNull();

    console.log(
      `root rotation against istiod: ${sampler.issued.length} workload certificates, ${sampler.checks} (certificate, anchors) verifications, ${sampler.anchorSets.length} anchor sets, no gap; ` +
        `reload after publish: ${phases.map((p) => `${p.name} ${p.reloadMs} ms`).join(', ')}`,
    );
  });
});

describe.skipIf(!haveTools)('root rotation against a real istiod without ISTIO_MULTIROOT_MESH', () => {
  const vault = useVault();

  it('holds root changes back while istiod runs (log + metric), a rolling restart brings them in, the switch is live', { timeout: 240_000 }, async () => {
    // Soak and remove-after are not what this test is about: the root changes wait for restarts anyway.
    const single = { ISTIO_MULTIROOT_MESH: 'false', ROOT_SWITCH_SOAK: '1s', ROOT_REMOVE_AFTER: '1h', LOG_LEVEL: 'debug' };
    const env = (extra: Record<string, string> = {}) => agentEnv(vault.bao.get().env, { ...single, ...extra });
    const init = async () => {
      const r = await runAgent(['init'], env());
      expect(r.code, r.stdout + r.stderr).toBe(0);
      return r;
    };
    await init();
    await snapshotClientCa();
    const oldRootBytes = await read('root-cert.pem');
    const oldRootId = await vault.defaultIssuer();
    /** Every istiod this test ran, to check none of them ever skipped a reload. */
    const istiods: Istiod[] = [];
    const start = async () => {
      const istiod = await startIstiod({ certDir: dir });
      await istiod.waitForLog(ISTIOD_LOG.watching);
      istiods.push(istiod);
      const port = await freePort();
      const agent = startSidecar(env({ METRICS_ADDR: `127.0.0.1:${port}`, ISTIOD_METRICS_URL: istiod.metricsUrl }));
      await agent.waitFor((l) => l.msg === 'adopted the bundle on disk');
      return { istiod, agent, port };
    };
    /**
     * The agent looked at Vault's issuers at least `n` more times after line `from`: it logs (debug) each
     * wait for its next look, so n + 1 such lines enclose n looks.
     */
    const polls = async (agent: AgentRun, from: number, n: number) => {
      for (let k = 0; k <= n; k++) from = agent.lines.indexOf(await agent.waitFor((l) => l.for === 'poll the source', 30_000, from)) + 1;
    };
    /** The rolling restart, as Kubernetes does it for a new pod: istiod and the sidecar stop, init runs, both start. */
    const rollingRestart = async (pod: { istiod: Istiod; agent: AgentRun }) => {
      pod.agent.kill('SIGTERM');
      expect((await pod.agent.exit).code).toBe(0);
      await pod.istiod.stop();
      const r = await init();
      return { init: r, pod: await start() };
    };

    let pod = await start();
    const w0 = await requestWorkloadCert(pod.istiod, { certDir: clientDir });
    expect(w0.rootBundle.trim()).toBe(oldRootBytes.trim());

    // add, while istiod runs: held back. The agent says a rolling restart is due, in its log and metric.
    let from = pod.agent.lines.length;
    let istiodFrom = pod.istiod.lines.length;
    const rootB = await vault.rotate('Mesh Root B');
    const held = await pod.agent.waitFor((l) => l.restartRequired === true, 30_000, from);
    expect(held.level).toBe('warn');
    expect(String(held.msg)).toMatch(/^root rotation: add/);
    expect((held.notes as string[]).join('\n')).toMatch(/rolling restart of istiod/);
    expect(await agentMetric(pod.port, 'root_rotation_restart_required')).toBe(1);
    expect(await agentMetric(pod.port, 'root_rotation_phase', { phase: 'added' })).toBe(1);
    // ...and nothing is published while it waits: two more looks at Vault, root-cert.pem unchanged,
    // istiod never asked to reload.
    await polls(pod.agent, pod.agent.lines.indexOf(held), 2);
    expect(await read('root-cert.pem')).toBe(oldRootBytes);
    expect(pod.agent.lines.slice(from).filter((l) => String(l.msg).startsWith('published'))).toEqual([]);
    expect(pod.istiod.lines.slice(istiodFrom).filter((l) => ISTIOD_LOG.reloadStarted.test(l))).toEqual([]);

    // The rolling restart: init (before istiod starts) publishes both roots; istiod starts on them.
    const first = await rollingRestart(pod);
    pod = first.pod;
    expect(await read('root-cert.pem')).toBe(oldRootBytes + rootB.pem);
    expect(first.init.lines.some((l) => l.msg === 'published new trust roots with the same intermediate' && l.trigger === 'changed')).toBe(true);
    const w1 = await requestWorkloadCert(pod.istiod, { certDir: clientDir });
    expect(subjectsOf(w1.rootBundle)).toEqual([...subjectsOf(oldRootBytes), 'CN=Mesh Root B']);
    // The new sidecar's first look at Vault: both roots published, nothing waits for a restart.
    await waitFor(async () => (await agentMetric(pod.port, 'root_rotation_phase', { phase: 'added' })) === 1, { what: 'root_rotation_phase added', timeoutMs: 30_000 });
    expect(await agentMetric(pod.port, 'root_rotation_restart_required')).toBe(0);

    // switch: the new root becomes the default. root-cert.pem keeps its bytes (this istiod would refuse
    // any change), so istiod takes the new intermediate live.
    from = pod.agent.lines.length;
    const sw = await phase('switch', pod.istiod, pod.agent, { rootsChange: false, action: () => vault.setDefault(rootB.id) });
    const newInter = await read('ca-cert.pem');
    expect(signedBy(certOf(newInter), rootB.pem)).toBe(true);
    expect(await read('root-cert.pem')).toBe(oldRootBytes + rootB.pem);
    await pod.agent.waitFor((l) => l.msg === 'istiod loaded the new intermediate', 30_000, from);
    expect((await pod.istiod.metrics()).certChainExpiry).toBe(notAfterS(newInter));
    expectOneCleanReload(pod.istiod, sw.istiodFrom, pod.istiod.lines.length);
    const w2 = await requestWorkloadCert(pod.istiod, { certDir: clientDir });
    expect(signedBy(w2.leaf, newInter)).toBe(true);
    for (const w of [w0, w1, w2]) {
      const v = await verifyChain(w.chain[0]!, w.chain.slice(1, -1), w2.rootBundle);
      expect(v.ok, v.output).toBe(true);
    }

    // remove: the operator deletes the old issuer; again held back until a restart.
    from = pod.agent.lines.length;
    istiodFrom = pod.istiod.lines.length;
    await vault.deleteIssuer(oldRootId);
    const heldRemove = await pod.agent.waitFor((l) => l.restartRequired === true, 30_000, from);
    expect(String(heldRemove.msg)).toMatch(/^root rotation: remove/);
    expect(await agentMetric(pod.port, 'root_rotation_restart_required')).toBe(1);
    await polls(pod.agent, pod.agent.lines.indexOf(heldRemove), 2);
    expect(await read('root-cert.pem')).toBe(oldRootBytes + rootB.pem);
    expect(pod.istiod.lines.slice(istiodFrom).filter((l) => ISTIOD_LOG.reloadStarted.test(l))).toEqual([]);

    // The second rolling restart leaves only the new root.
    const second = await rollingRestart(pod);
    pod = second.pod;
    expect(subjectsOf(await read('root-cert.pem'))).toEqual(['CN=Mesh Root B']);
    const w3 = await requestWorkloadCert(pod.istiod, { certDir: dir });
    expect(subjectsOf(w3.rootBundle)).toEqual(['CN=Mesh Root B']);
    expect(signedBy(w3.leaf, newInter)).toBe(true);

    // No istiod ever skipped a reload because root-cert.pem changed under it.
    for (const i of istiods) expect(i.lines.filter((l) => ISTIOD_LOG.multiRootDisabled.test(l))).toEqual([]);
    console.log(`without multi-root: switch reloaded istiod ${sw.reloadMs} ms after the publish`);
  });
});
