/**
 * The agent's bundle in a real istiod (tools/istio's pilot-discovery, Istio master at the pinned
 * pseudo-version): istiod starts on what `init` published, signs workload certificates from the agent's
 * intermediate, and after a rotation reloads, reports the new intermediate's notAfter in its metrics and
 * signs from the new intermediate, without a restart. Real OpenBao, real istiod, real agent bundle.
 */
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { cleanEnv, runAgent, startAgent } from '../helpers/agent-process.js';
import { goTool } from '../helpers/go-tools.js';
import { ISTIOD_LOG, startIstiod } from '../helpers/istiod.js';
import { useOpenBao } from '../helpers/openbao.js';
import { makeIntermediate, makeRoot, bundleOf } from '../helpers/test-pki.js';
import { requestWorkloadCert, verifyChain, WorkloadCertError } from '../helpers/workload.js';

const bao = useOpenBao();
const haveTools = goTool('pilot-discovery') !== '' && goTool('workload') !== '';
let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-real-istiod-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const read = (f: string) => fs.readFile(path.join(dir, f), 'utf8');
const notAfterSeconds = (pem: string) => Math.floor(new Date(new X509Certificate(pem).validTo).getTime() / 1000);
const signedBy = (leaf: X509Certificate, issuerPem: string) => {
  const issuer = new X509Certificate(issuerPem);
  return leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey);
};

describe.skipIf(!bao.available || !haveTools)('real istiod on the agent bundle', () => {
  it('loads it, signs workloads from the intermediate, and takes each renewal live', { timeout: 180_000 }, async () => {
    const init = await runAgent(['init'], cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h' }));
    expect(init.code, init.stdout + init.stderr).toBe(0);
    const firstInter = await read('ca-cert.pem');
    const rootPem = await read('root-cert.pem');

    const istiod = await startIstiod({ certDir: dir });
    await istiod.waitForLog(ISTIOD_LOG.pluggedCa);
    expect(istiod.lines.some((l) => ISTIOD_LOG.selfSigned.test(l))).toBe(false);
    await istiod.waitForLog(ISTIOD_LOG.watching);
    const m1 = await istiod.metrics();
    expect(m1.certChainExpiry).toBe(notAfterSeconds(firstInter));
    expect(m1.rootCertExpiry).toBe(notAfterSeconds(rootPem));

    const rootsFile = path.join(dir, 'root-cert.pem');
    const w1 = await requestWorkloadCert(istiod, { certDir: dir, caRoots: rootsFile, spiffe: 'spiffe://cluster.local/ns/demo/sa/app' });
    expect(w1.serving.verified).toBe(true);
    expect(signedBy(new X509Certificate(w1.serving.chain[0]!), firstInter)).toBe(true);
    expect(w1.leafInfo.uris).toEqual(['spiffe://cluster.local/ns/demo/sa/app']);
    expect(signedBy(w1.leaf, firstInter)).toBe(true);
    expect(w1.certChain[0]!.raw.equals(new X509Certificate(firstInter).raw)).toBe(true);
    // istiod appends the whole root-cert.pem as the last element of the answer.
    expect(w1.rootBundle.trim()).toBe(rootPem.trim());
    const v1 = await verifyChain(w1.chain[0]!, w1.chain.slice(1, -1), rootPem);
    expect(v1.ok, v1.output).toBe(true);

    // A client certificate from a CA istiod does not trust gets nothing: istiod ends the TLS handshake (the
    // client sees a bad-certificate alert or a broken pipe, depending on when it notices).
    const foreignRoot = await makeRoot('CN=Foreign Root');
    const foreign = bundleOf(await makeIntermediate(foreignRoot), foreignRoot);
    const foreignDir = path.join(dir, '..', `${path.basename(dir)}-foreign`);
    await fs.mkdir(foreignDir);
    onTestFinished(() => fs.rm(foreignDir, { recursive: true, force: true }));
    await fs.writeFile(path.join(foreignDir, 'ca-key.pem'), foreign.caKey);
    await fs.writeFile(path.join(foreignDir, 'ca-cert.pem'), foreign.caCert);
    await fs.writeFile(path.join(foreignDir, 'cert-chain.pem'), foreign.certChain);
    await expect(requestWorkloadCert(istiod, { certDir: foreignDir })).rejects.toThrow(WorkloadCertError);

    // Rotation by the agent itself. A longer CERT_TTL makes the new notAfter differ from the first one
    // whatever the clock says (istiod's metric has one-second resolution).
    const sidecar = startAgent(['sidecar'], cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '2h', ISTIOD_METRICS_URL: istiod.metricsUrl, ISTIOD_SYNC_TIMEOUT: '20s' }));
    onTestFinished(async () => {
      sidecar.kill('SIGKILL');
      await sidecar.exit;
    });
    await sidecar.waitFor((l) => l.msg === 'adopted the bundle on disk');
    /** One renewal: istiod reloads, reports the new notAfter, and serves and signs from the new intermediate. */
    const renewal = async (previousInter: string, previousExpiry: number | undefined) => {
      const mark = istiod.lines.length;
      const from = sidecar.lines.length;
      sidecar.kill('SIGHUP');
      const published = await sidecar.waitFor((l) => l.msg === 'published a new intermediate', 30_000, from);
      await istiod.waitForLog(ISTIOD_LOG.reloaded, { from: mark });
      expect(istiod.lines.slice(mark).some((l) => ISTIOD_LOG.multiRootDisabled.test(l))).toBe(false);
      // The agent's own check against istiod's metrics agrees.
      await sidecar.waitFor((l) => l.msg === 'istiod loaded the new intermediate' && l.serial === published.serial, 30_000, from);

      const inter = await read('ca-cert.pem');
      expect(new X509Certificate(inter).serialNumber.toLowerCase()).toBe(String(published.serial).replace(/:/g, '').toLowerCase());
      expect(inter).not.toBe(previousInter);
      const m = await istiod.metrics();
      expect(m.certChainExpiry).toBe(notAfterSeconds(inter));
      expect(m.certChainExpiry).not.toBe(previousExpiry);
      expect(m.rootCertExpiry).toBe(notAfterSeconds(rootPem));

      const w = await requestWorkloadCert(istiod, { certDir: dir, caRoots: rootsFile });
      expect(signedBy(w.leaf, inter)).toBe(true);
      expect(signedBy(w.leaf, previousInter)).toBe(false);
      expect(signedBy(new X509Certificate(w.serving.chain[0]!), inter)).toBe(true);
      const v = await verifyChain(w.chain[0]!, w.chain.slice(1, -1), rootPem);
      expect(v.ok, v.output).toBe(true);
      return { inter, expiry: m.certChainExpiry };
    };
    // Two renewals in a row: istiod follows each new intermediate.
    const second = await renewal(firstInter, m1.certChainExpiry);
    await renewal(second.inter, second.expiry);
    // Still the same process: a reload, not a restart.
    expect(istiod.child.exitCode).toBeNull();
  });
});

describe.skipIf(!haveTools)('real istiod: root-cert.pem changes, with and without multiRoot', () => {
  async function handMadeBundle(): Promise<{ rootPem: string }> {
    const root = await makeRoot('CN=Hand-made Root');
    const b = bundleOf(await makeIntermediate(root), root);
    await fs.writeFile(path.join(dir, 'ca-key.pem'), b.caKey, { mode: 0o600 });
    await fs.writeFile(path.join(dir, 'ca-cert.pem'), b.caCert);
    await fs.writeFile(path.join(dir, 'cert-chain.pem'), b.certChain);
    await fs.writeFile(path.join(dir, 'root-cert.pem'), b.rootCert);
    return { rootPem: b.rootCert };
  }

  it.each([
    { multiRoot: true, expected: ISTIOD_LOG.rootUpdated },
    { multiRoot: false, expected: ISTIOD_LOG.multiRootDisabled },
  ])('multiRoot=$multiRoot: adding a second root to root-cert.pem', async ({ multiRoot, expected }) => {
    const { rootPem } = await handMadeBundle();
    const istiod = await startIstiod({ certDir: dir, multiRoot });
    await istiod.waitForLog(ISTIOD_LOG.watching);
    const mark = istiod.lines.length;
    await fs.writeFile(path.join(dir, 'root-cert.pem'), rootPem + (await makeRoot('CN=Second Root')).pem);
    await istiod.waitForLog(expected, { from: mark });
    // Taken: the swap is done once istiod says so (the "Updating" line comes before it).
    if (multiRoot) await istiod.waitForLog(ISTIOD_LOG.reloaded, { from: mark });
    const w = await requestWorkloadCert(istiod, { certDir: dir });
    // The answer ends with the root bundle istiod runs: both roots when it took the change, else the old one.
    expect(w.rootBundle.match(/BEGIN CERTIFICATE/g)).toHaveLength(multiRoot ? 2 : 1);
  });
});
