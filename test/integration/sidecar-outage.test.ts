/**
 * Vault outages across a renewal, through a loopback TCP proxy: connections refused, and a black hole
 * that never answers (slower than VAULT_CLIENT_TIMEOUT). The published files must stay untouched,
 * failures must be counted and logged with a reason, and the agent must renew by itself within one
 * backoff step once the path heals.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../src/dev/dev-server.js';
import { cleanEnv, startAgent, type AgentRun } from '../helpers/agent-process.js';
import { httpGet, sample } from '../helpers/metrics-text.js';
import { waitFor } from '../helpers/wait.js';
import { useOpenBao } from '../helpers/openbao.js';
import { startTcpProxy, type ProxyMode, type TcpProxy } from '../helpers/tcp-proxy.js';

const bao = useOpenBao();
let dir: string;
let proxy: TcpProxy;
let agent: AgentRun | undefined;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-outage-'));
  proxy = await startTcpProxy(bao.get().server.addr);
});
afterEach(async () => {
  agent?.kill('SIGKILL');
  await agent?.exit;
  agent = undefined;
  await proxy.close();
  await fs.rm(dir, { recursive: true, force: true });
});

async function snapshot(): Promise<string> {
  const target = await fs.readlink(path.join(dir, '..data'));
  const files = await Promise.all(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'].map((n) => fs.readFile(path.join(dir, n), 'utf8')));
  return target + files.join('');
}

async function outage(mode: ProxyMode, reason: string, code: string) {
  const port = await freePort();
  agent = startAgent(['run'], cleanEnv({ ...bao.get().env, VAULT_ADDR: proxy.url, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '30s', RENEW_BEFORE: '25s', VAULT_CLIENT_TIMEOUT: '1s', METRICS_ADDR: `127.0.0.1:${port}` }));
  const a = agent;
  await a.waitFor((l) => l.msg === 'published a new intermediate', 30_000);
  const before = await snapshot();
  proxy.setMode(mode);
  // Renewal falls due ~5 s after issuance; let several attempts fail.
  const isRetry = (l: { msg: string; retryInMs?: unknown }) => l.msg.startsWith('issuance failed') && / keeping the current bundle; retrying in /.test(l.msg) && l.retryInMs !== undefined;
  await waitFor(() => a.lines.filter(isRetry).length >= 3, { what: 'three retries', timeoutMs: 30_000 });
  expect(await snapshot()).toBe(before);
  // One line per failure, a warning: istiod keeps a valid bundle and a retry can help.
  const failures = a.lines.filter((l) => String(l.msg).startsWith('issuance failed'));
  for (const f of failures) expect(f.level).toBe('warn');
  expect(failures.length).toBeGreaterThanOrEqual(3);
  for (const f of failures) expect(f.reason).toBe(reason);
  const metrics = (await httpGet(`http://127.0.0.1:${port}/metrics`)).text;
  expect(sample(metrics, 'istiod_vault_agent_issuances_total', { result: 'failure', reason })).toBeGreaterThanOrEqual(3);
  expect(sample(metrics, 'istiod_vault_agent_ready')).toBe(1);
  expect(metrics).toMatch(new RegExp(`istiod_vault_agent_vault_request_duration_seconds_count\\{[^}]*code="${code}"`));

  const lastRetry = a.lines.filter(isRetry).at(-1)!;
  const healedAt = Date.now();
  const from = a.lines.length;
  proxy.setMode('pass');
  await a.waitFor((l) => l.msg === 'published a new intermediate', 60_000, from);
  // Recovered within one backoff step (the one scheduled when the proxy healed) plus the issuance itself.
  expect(Date.now() - healedAt).toBeLessThan(Number(lastRetry.retryInMs) + 5000);
  expect(await snapshot()).not.toBe(before);
}

describe.skipIf(!bao.available)('Vault outage across a renewal', () => {
  // The proxy accepts and resets at once (what a dead node behind a load balancer looks like): ECONNRESET.
  it('connections reset: files untouched, failures counted as vault_unreachable, recovers after healing', async () => {
    await outage('refuse', 'vault_unreachable', 'ECONNRESET');
  });

  it('Vault stalls past VAULT_CLIENT_TIMEOUT: same guarantees', async () => {
    await outage('stall', 'vault_unreachable', 'ETIMEDOUT');
  });
});
