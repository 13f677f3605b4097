/**
 * Renewal against a real OpenBao with short lifetimes: several renewals, each a new serial and a valid
 * generation, root bytes identical throughout, and a reader polling the visible files in istiod's order
 * never sees a missing file or an undetected mix of generations.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/dev/dev-server.js';
import { verifyBundle } from '../../src/pki/verify.js';
import { readCertDir } from '../../src/store/cert-dir-reader.js';
import { cleanEnv, startAgent } from '../helpers/agent-process.js';
import { httpGet, sample } from '../helpers/metrics-text.js';
import { passTime, waitFor } from '../helpers/wait.js';
import { useOpenBao } from '../helpers/openbao.js';

const bao = useOpenBao();
const NAMES = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'];

describe.skipIf(!bao.available)('sidecar renewal', () => {
  it('renews at least 3 times with new serials, identical root bytes and no torn reads', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-renew-'));
    const port = await freePort();
    const agent = startAgent(['run'], cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '20s', RENEW_BEFORE: '15s', METRICS_ADDR: `127.0.0.1:${port}` }));
    const reads = { total: 0, missing: 0, mixedUndetected: 0, mixedDetected: 0 };
    let stop = false;
    const reader = (async () => {
      while (!stop) {
        try {
          const before = await fs.readlink(path.join(dir, '..data'));
          const texts = await Promise.all(NAMES.map((n) => fs.readFile(path.join(dir, n), 'utf8')));
          const after = await fs.readlink(path.join(dir, '..data'));
          reads.total++;
          try {
            verifyBundle({ caCert: texts[0]!, caKey: texts[1]!, certChain: texts[2]!, rootCert: texts[3]! }, { now: Date.now() });
          } catch {
            if (before === after) reads.mixedUndetected++;
            else reads.mixedDetected++;
          }
        } catch {
          if (reads.total > 0) reads.missing++;
        }
        // The reader's pace (back to back, yielding to the agent's output handling): time is the point here.
        await passTime(2);
      }
    })();
    try {
      const published = () => agent.lines.filter((l) => l.msg === 'published a new intermediate');
      await waitFor(() => published().length >= 4, { what: 'four publishes', timeoutMs: 60_000 });
      const serials = published().map((l) => l.serial);
      expect(new Set(serials).size).toBe(serials.length);
      const out = await readCertDir(dir);
      expect(out.state).toBe('present');
      if (out.state === 'present') {
        const v = verifyBundle(out.bundle.files, { now: Date.now() });
        expect(v.intermediate.serial).toBe(serials.at(-1));
        expect(out.bundle.files.rootCert).toBe(bao.get().rootPem.trim() + '\n');
      }
      const metrics = (await httpGet(`http://127.0.0.1:${port}/metrics`)).text;
      expect(sample(metrics, 'istiod_vault_agent_issuances_total', { result: 'success' })).toBe(serials.length);
      expect(sample(metrics, 'istiod_vault_agent_ready')).toBe(1);
      // One login serves every renewal: the token is reused while valid.
      expect(sample(metrics, 'istiod_vault_agent_vault_request_duration_seconds_count', { operation: 'login', code: '200' })).toBe(1);
    } finally {
      stop = true;
      await reader;
      agent.kill();
      await agent.exit;
    }
    expect(reads.total).toBeGreaterThan(100);
    expect(reads.missing).toBe(0);
    expect(reads.mixedUndetected).toBe(0);
    // Root bytes were identical in every generation ever published.
    const roots = await Promise.all((await fs.readdir(path.join(dir, '.gen'))).map((g) => fs.readFile(path.join(dir, '.gen', g, 'root-cert.pem'), 'utf8')));
    expect(new Set(roots).size).toBe(1);
    await fs.rm(dir, { recursive: true });
  });
});
