/**
 * Two clusters, one mesh root: setup.sh runs for cluster1 and then cluster2 on the same PKI mount (the
 * second run reuses the mount and root), each cluster gets its own kubernetes auth mount pointing at its
 * own API server. Two agents, one per cluster, run `init`: their intermediates differ (serial, L=cluster)
 * and both chain to the byte-identical root, which is what lets workloads of both clusters trust each other.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateJwtKey } from '../../src/dev/jwt.js';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { useOpenBao } from '../helpers/openbao.js';
import { requireCommand } from '../helpers/tools.js';
import { runSetup, setupArgs, startFakeCluster, type FakeCluster, type SetupResult } from './support/vault-setup.js';

const bao = useOpenBao();
const haveOpenssl = requireCommand('openssl', 'apt-get install openssl');

let dir = '';
const clusters: FakeCluster[] = [];
const setups: SetupResult[] = [];

async function readCa(certDir: string) {
  const cert = certsFromPem(await fs.readFile(path.join(certDir, 'ca-cert.pem'), 'utf8'), 'ca-cert.pem')[0]!;
  const root = await fs.readFile(path.join(certDir, 'root-cert.pem'));
  return { cert, root };
}

describe.skipIf(!bao.available)('two clusters sharing one root', () => {
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-multi-'));
    // Each cluster has its own API server and its own service-account signing key.
    for (const name of ['cluster1', 'cluster2']) {
      clusters.push(await startFakeCluster({ name, dir, caPem: bao.get().rootPem, key: generateJwtKey() }));
    }
    for (const c of clusters) setups.push(await runSetup(bao.get(), setupArgs(c)));
  });
  afterAll(async () => {
    await Promise.all(clusters.map((c) => c.close()));
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('configures cluster2 on the mount and root that cluster1 created', () => {
    expect(setups[0]!.code, setups[0]!.stderr).toBe(0);
    expect(setups[1]!.code, setups[1]!.stderr).toBe(0);
    expect(setups[0]!.stderr).toMatch(/generating a ec root/);
    expect(setups[1]!.stderr).toMatch(/reusing the pki mount at mesh-pki/);
    expect(setups[1]!.stderr).toMatch(/reusing the existing root of mesh-pki \(not regenerated\)/);
    expect(setups.map((s) => s.settings.AUTH_MOUNT)).toEqual(['kube-cluster1-mesh-auth', 'kube-cluster2-mesh-auth']);
    expect(setups.map((s) => s.settings.CLUSTER_NAME)).toEqual(['cluster1', 'cluster2']);
    expect(setups.map((s) => s.settings.PKI_SIGN_PATH)).toEqual(['mesh-pki/root/sign-intermediate', 'mesh-pki/root/sign-intermediate']);
  });

  it('gives each cluster its own intermediate under the same root bytes', async () => {
    const dirs = clusters.map((c) => path.join(dir, `${c.name}-cacerts`));
    for (const d of dirs) await fs.mkdir(d);
    const runs = await Promise.all(
      clusters.map(async (c, i) => {
        const token = await c.writeToken(path.join(dir, `${c.name}.jwt`));
        return runAgent(['init'], cleanEnv({ ...setups[i]!.settings, SA_TOKEN_PATH: token, CERT_DIR: dirs[i]!, KEY_TYPE: 'ec', CERT_TTL: '24h', RENEW_BEFORE: '8h' }));
      }),
    );
    for (const r of runs) expect(r.code, r.stdout + r.stderr).toBe(0);

    const [a, b] = await Promise.all(dirs.map(readCa));
    expect(a!.cert.serial).not.toBe(b!.cert.serial);
    expect(a!.cert.subject).toContain('L=cluster1');
    expect(b!.cert.subject).toContain('L=cluster2');
    expect(a!.cert.pem).not.toBe(b!.cert.pem);
    expect(Buffer.compare(a!.root, b!.root), 'root-cert.pem must be byte-identical').toBe(0);
    expect(a!.cert.issuer).toBe(b!.cert.issuer);
    expect(a!.cert.issuer).toBe('CN=Test Mesh Root CA');

    if (haveOpenssl) {
      for (const d of dirs) {
        expect(execFileSync('openssl', ['verify', '-CAfile', 'root-cert.pem', '-untrusted', 'cert-chain.pem', 'ca-cert.pem'], { cwd: d, encoding: 'utf8' }).trim()).toBe('ca-cert.pem: OK');
      }
      // Each cluster's intermediate also verifies against the other cluster's root file: one trust domain.
      expect(execFileSync('openssl', ['verify', '-CAfile', path.join(dirs[1]!, 'root-cert.pem'), '-untrusted', 'cert-chain.pem', 'ca-cert.pem'], { cwd: dirs[0], encoding: 'utf8' }).trim()).toBe('ca-cert.pem: OK');
    }
    // Each login was reviewed by its own cluster's API server.
    expect(clusters.map((c) => c.review.reviews.filter((r) => r.authenticated).length)).toEqual([1, 1]);
  });

  it("refuses cluster1's istiod token at cluster2's auth mount", async () => {
    const token = await clusters[0]!.writeToken(path.join(dir, 'cross.jwt'));
    await fs.mkdir(path.join(dir, 'cross-cacerts'));
    const run = await runAgent(['init'], cleanEnv({ ...setups[1]!.settings, SA_TOKEN_PATH: token, CERT_DIR: path.join(dir, 'cross-cacerts'), INIT_TIMEOUT: '20s' }));
    expect(run.code).toBe(1);
    const failure = run.lines.find((l) => l.level === 'error' && /^init failed/.test(l.msg));
    expect(failure?.msg, run.stdout).toMatch(/auth\/kube-cluster2-mesh-auth\/login: HTTP 403/);
    // cluster2's API server saw the token and did not authenticate it (signed by cluster1's key).
    expect(clusters[1]!.review.reviews.some((r) => !r.authenticated)).toBe(true);
  });
});
