/**
 * The long-running agent's life against a real OpenBao: readiness gating (the native-sidecar
 * startupProbe contract), rotation on SIGHUP and POST /rotate, a token revoked behind its back,
 * SIGTERM (exit 0 within 2 s, token revoked), and a restart that adopts instead of issuing.
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
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const bao = useOpenBao();
let dir: string;
const agents: AgentRun[] = [];

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-life-'));
});
afterEach(async () => {
  for (const a of agents.splice(0)) {
    a.kill('SIGKILL');
    await a.exit;
  }
  await fs.rm(dir, { recursive: true, force: true });
});

function start(mode: 'run' | 'sidecar', port: number, extra: Record<string, string> = {}): AgentRun {
  const a = startAgent([mode], cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', METRICS_ADDR: `127.0.0.1:${port}`, ROTATE_ENDPOINT: 'true', ...extra }));
  agents.push(a);
  return a;
}

const published = (a: AgentRun) => a.lines.filter((l) => l.msg === 'published a new intermediate');

/** Accessors of live tokens that carry the agent's policy (the agent is the only holder here). */
async function agentTokens(): Promise<number> {
  const api = bao.get().api;
  const list = (await api.request('LIST', 'auth/token/accessors')).body as { data?: { keys: string[] } };
  let n = 0;
  for (const accessor of list.data?.keys ?? []) {
    const res = await api.request('POST', 'auth/token/lookup-accessor', { accessor });
    const policies = ((res.body as { data?: { policies?: string[] } }).data?.policies ?? []) as string[];
    if (policies.includes('istiod-ca')) n++;
  }
  return n;
}

describe.skipIf(!bao.available)('sidecar and run lifecycle', () => {
  it('run: /readyz is 503 until the first bundle is published, then 200; /healthz is 200 throughout', async () => {
    const proxy = await startTcpProxy(bao.get().server.addr);
    proxy.setMode('refuse');
    const port = await freePort();
    const a = start('run', port, { VAULT_ADDR: proxy.url });
    const url = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await httpGet(`${url}/healthz`)).status === 200, { what: '/healthz 200', timeoutMs: 30_000 });
    expect((await httpGet(`${url}/readyz`)).status).toBe(503);
    expect(sample((await httpGet(`${url}/metrics`)).text, 'istiod_vault_agent_ready')).toBe(0);
    await fs.access(path.join(dir, 'ca-cert.pem')).then(() => expect.fail('files exist before readiness'), () => undefined);
    proxy.setMode('pass');
    await waitFor(async () => (await httpGet(`${url}/readyz`)).status === 200, { what: '/readyz 200', timeoutMs: 30_000 });
    // Ready means the files are there and valid.
    await fs.access(path.join(dir, 'ca-cert.pem'));
    expect(sample((await httpGet(`${url}/metrics`)).text, 'istiod_vault_agent_ready')).toBe(1);
    // /readyz looks at what istiod would find, not only at the agent's memory.
    await fs.rm(path.join(dir, 'ca-cert.pem'));
    expect((await httpGet(`${url}/readyz`)).status).toBe(503);
    a.kill();
    await a.exit;
    await proxy.close();
  });

  it('rotates on SIGHUP and on POST /rotate; GET /rotate is refused', async () => {
    const port = await freePort();
    const a = start('run', port);
    await a.waitFor((l) => l.msg === 'published a new intermediate');
    a.kill('SIGHUP');
    await waitFor(() => published(a).length === 2, { what: 'a second publish', timeoutMs: 30_000 });
    expect(published(a)[1]!.trigger).toBe('rotate');
    expect((await httpGet(`http://127.0.0.1:${port}/rotate`)).status).toBe(405);
    expect((await httpGet(`http://127.0.0.1:${port}/rotate`, { method: 'POST' })).status).toBe(202);
    await waitFor(() => published(a).length === 3, { what: 'a third publish', timeoutMs: 30_000 });
    expect(new Set(published(a).map((l) => l.serial)).size).toBe(3);
  });

  it('/rotate does not exist unless enabled', async () => {
    const port = await freePort();
    const a = start('run', port, { ROTATE_ENDPOINT: 'false' });
    await a.waitFor((l) => l.msg === 'published a new intermediate');
    expect((await httpGet(`http://127.0.0.1:${port}/rotate`, { method: 'POST' })).status).toBe(404);
  });

  it('logs in again when its token was revoked behind its back', async () => {
    const port = await freePort();
    const a = start('run', port);
    await a.waitFor((l) => l.msg === 'published a new intermediate');
    await bao.get().api.call('POST', 'sys/leases/revoke-prefix/auth/jwt', {});
    a.kill('SIGHUP');
    await waitFor(() => published(a).length === 2, { what: 'a second publish', timeoutMs: 30_000 });
    expect(a.lines.some((l) => l.msg === 'Vault rejected the token; logging in again')).toBe(true);
    const m = (await httpGet(`http://127.0.0.1:${port}/metrics`)).text;
    expect(sample(m, 'istiod_vault_agent_vault_request_duration_seconds_count', { operation: 'login', code: '200' })).toBe(2);
    expect(sample(m, 'istiod_vault_agent_vault_request_duration_seconds_count', { operation: 'sign', code: '403' })).toBe(1);
  });

  it('SIGTERM: exits 0 within 2 s and revokes its token; a restarted sidecar adopts the bundle without issuing', async () => {
    const port = await freePort();
    const a = start('run', port);
    await a.waitFor((l) => l.msg === 'published a new intermediate');
    const tokensBefore = await agentTokens();
    expect(tokensBefore).toBeGreaterThanOrEqual(1);
    const target = await fs.readlink(path.join(dir, '..data'));
    const t0 = Date.now();
    a.kill('SIGTERM');
    const { code } = await a.exit;
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(await agentTokens()).toBe(tokensBefore - 1);

    const b = start('sidecar', await freePort(), { LOG_LEVEL: 'debug' });
    await b.waitFor((l) => l.msg === 'adopted the bundle on disk');
    // The loop has decided: it waits for the renewal, having signed nothing.
    const waiting = await b.waitFor((l) => l.msg === 'waiting');
    // Renewal, or the next look at Vault's issuers for a root rotation (ISSUER_POLL_INTERVAL), whichever is first.
    expect(['renewal', 'poll the source']).toContain(waiting.for);
    expect(b.lines.some((l) => l.step === 'sign' || l.step === 'keygen')).toBe(false);
    expect(await fs.readlink(path.join(dir, '..data'))).toBe(target);
  });

  it('a sidecar with nothing on disk issues at once', async () => {
    const a = start('sidecar', await freePort());
    await a.waitFor((l) => l.msg === 'published a new intermediate');
    expect(published(a)[0]!.trigger).toBe('missing');
  });
});
