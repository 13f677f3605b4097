/**
 * Something answering as Vault tries to pull credentials elsewhere or exhaust the agent's memory
 * (issue 9, points 1-2). The agent runs as the image runs it (the built bundle), against a real OpenBao
 * behind a fault proxy that redirects or inflates answers on chosen paths; a recording server stands for
 * the attacker's host. What must hold: no token, JWT, secret_id, login body or CSR ever reaches an
 * origin the operator did not name; a same-origin 307 (and a listed origin) still works; any answer is
 * capped, and a huge one costs no more memory than a normal issuance.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PEAK_RSS_PRELOAD, cleanEnv, peakRssKib, runAgent } from '../helpers/agent-process.js';
import { useOpenBao } from '../helpers/openbao.js';
import { startFaultProxy, type FaultProxy } from '../evidence/support/fault-proxy.js';

const bao = useOpenBao();

/** The attacker's host: records every request, answers 200 with a plausible body. */
interface Recorder {
  url: string;
  seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[];
  close(): Promise<void>;
}

async function startRecorder(): Promise<Recorder> {
  const seen: Recorder['seen'] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ auth: { client_token: 'attacker', lease_duration: 60, renewable: false }, data: {} }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

let proxy: FaultProxy;
let otherNode: FaultProxy;
let evil: Recorder;
let work: string;

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-untrusted-'));
  evil = await startRecorder();
  if (!bao.available) return;
  proxy = await startFaultProxy(bao.get().server.addr);
  // A second address of the same Vault, as another node of an HA cluster would be.
  otherNode = await startFaultProxy(bao.get().server.addr);
});
afterAll(async () => {
  await Promise.all([proxy?.close(), otherNode?.close(), evil.close()]);
  await fs.rm(work, { recursive: true, force: true });
});
afterEach(() => {
  proxy?.clear();
  evil.seen.length = 0;
});

const SIGN = /\/v1\/pki\/root\/sign-intermediate$/;
const LOGIN = /\/v1\/auth\/jwt\/login$/;

async function init(extra: Record<string, string> = {}, nodeArgs: string[] = []) {
  const dir = await fs.mkdtemp(path.join(work, 'certs-'));
  const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, VAULT_ADDR: proxy.url, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', INIT_TIMEOUT: '60s', ...extra }), 90_000, { nodeArgs });
  const published = await fs.readdir(dir).then((e) => e.includes('ca-key.pem'));
  return { run, dir, published };
}

const errorLine = (run: { lines: { level: string; msg: string }[] }) => run.lines.filter((l) => l.level === 'error').map((l) => l.msg).join('\n');

describe.skipIf(!bao.available)('redirects never carry credentials to another origin', () => {
  it.each([
    ['sign-intermediate (token + CSR)', SIGN],
    ['login (service-account JWT)', LOGIN],
  ])('a 307 on %s to another host is refused, names the Location, and the host sees nothing, however often it is asked', async (_what, match) => {
    proxy.setRules([{ match, fault: { kind: 'redirect', status: 307, location: `${evil.url}/v1/steal` } }]);
    const { run, published } = await init({ INIT_TIMEOUT: '3s' });
    expect(run.code).toBe(1);
    expect(published).toBe(false);
    expect(evil.seen).toEqual([]);
    expect(errorLine(run)).toMatch(new RegExp(`redirected \\(HTTP 307\\) to ${evil.url}/v1/steal; not followed: ${evil.url} is not VAULT_ADDR's origin`));
    // Retried until INIT_TIMEOUT (a standby redirects to the dead active node during an election: test/ha),
    // never followed.
    expect(proxy.hits()[0]).toBeGreaterThan(1);
  });

  it.each([301, 302, 303])('a %d on the sign POST is refused even to the same origin (no GET re-sent with the token)', async (status) => {
    proxy.setRules([{ match: SIGN, fault: { kind: 'redirect', status, location: (u) => `${proxy.url}${u}?again=1` } }]);
    const { run } = await init();
    expect(run.code).toBe(1);
    expect(proxy.log.filter((e) => e.path.endsWith('sign-intermediate') && e.method === 'GET')).toEqual([]);
    expect(errorLine(run)).toMatch(new RegExp(`HTTP ${status} would re-send the request with another method`));
  });

  it('a same-origin 307 on login and sign is followed, and the bundle is published', async () => {
    proxy.setRules([
      { match: LOGIN, fault: { kind: 'redirect', status: 307, location: (u) => `${u}?hop=1` }, times: 1 },
      { match: SIGN, fault: { kind: 'redirect', status: 308, location: (u) => `${proxy.url}${u}?hop=1` }, times: 1 },
    ]);
    const { run, published } = await init();
    expect(run.code, errorLine(run)).toBe(0);
    expect(published).toBe(true);
    expect(proxy.hits()).toEqual([1, 1]);
  });

  it('a 307 to an origin listed in VAULT_REDIRECT_ORIGINS (another node of the cluster) is followed', async () => {
    proxy.setRules([{ match: SIGN, fault: { kind: 'redirect', status: 307, location: (u) => `${otherNode.url}${u}` } }]);
    const before = otherNode.log.length;
    const { run, published } = await init({ VAULT_REDIRECT_ORIGINS: otherNode.url });
    expect(run.code, errorLine(run)).toBe(0);
    expect(published).toBe(true);
    expect(otherNode.log.slice(before).map((e) => `${e.method} ${e.path}`)).toEqual(['POST /v1/pki/root/sign-intermediate']);
  });

  it('a redirect loop stops after a few hops', async () => {
    proxy.setRules([{ match: /\/v1\/pki\/root\/sign-intermediate/, fault: { kind: 'redirect', status: 307, location: (u) => `${u.split('?')[0]}?n=${Math.random()}` } }]);
    const { run } = await init();
    expect(run.code).toBe(1);
    expect(errorLine(run)).toMatch(/not followed: more than 3 redirects/);
    expect(proxy.hits()).toEqual([4]);
  });
});

describe.skipIf(!bao.available)('every answer is size-capped', () => {
  it.each([
    ['a 50 MB answer', { kind: 'replace' as const, body: () => Buffer.alloc(50 * 1024 * 1024, 0x20) }],
    ['an endless answer', { kind: 'endless' as const }],
  ])('%s to sign-intermediate is a retryable error, and peak memory stays that of a normal issuance', async (_what, fault) => {
    const normal = await init({}, ['-r', PEAK_RSS_PRELOAD]);
    expect(normal.run.code, errorLine(normal.run)).toBe(0);

    proxy.setRules([{ match: SIGN, fault, times: 1 }]);
    const attacked = await init({}, ['-r', PEAK_RSS_PRELOAD]);
    expect(attacked.run.code, errorLine(attacked.run)).toBe(0);
    expect(attacked.published).toBe(true);
    const failure = attacked.run.lines.find((l) => l.msg.startsWith('issuance failed'))!;
    expect(failure.msg).toMatch(/is larger than 1024 KiB .* it will be retried/);
    expect(failure.retryable).toBe(true);
    const extraMiB = (peakRssKib(attacked.run) - peakRssKib(normal.run)) / 1024;
    console.log(`peak RSS: normal ${peakRssKib(normal.run)} KiB, attacked ${peakRssKib(attacked.run)} KiB`);
    expect(extraMiB, `peak RSS ${peakRssKib(attacked.run)} KiB vs ${peakRssKib(normal.run)} KiB for a normal issuance`).toBeLessThan(8);
  });
});
