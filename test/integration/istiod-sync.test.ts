/**
 * "Did istiod take it?" against a stand-in for istiod's metrics page: in sync (it reports the new
 * notAfter), out of sync (it keeps reporting the old one: the agent re-publishes once, then reports 0),
 * and unknown (no such metric: the gauge stays absent, nothing fails).
 */
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../src/dev/dev-server.js';
import { cleanEnv, startAgent, type AgentRun } from '../helpers/agent-process.js';
import { httpGet, sample } from '../helpers/metrics-text.js';
import { waitFor } from '../helpers/wait.js';
import { useOpenBao } from '../helpers/openbao.js';

const bao = useOpenBao();
let dir: string;
let agent: AgentRun | undefined;
let istiod: http.Server;
let istiodUrl: string;
let page: () => Promise<string | undefined>;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-sync-'));
  istiod = http.createServer((_req, res) => {
    page().then((body) => (body === undefined ? res.writeHead(404).end() : res.writeHead(200, { 'content-type': 'text/plain' }).end(body)));
  });
  await new Promise<void>((r) => istiod.listen(0, '127.0.0.1', () => r()));
  istiodUrl = `http://127.0.0.1:${(istiod.address() as AddressInfo).port}/metrics`;
});
afterEach(async () => {
  agent?.kill('SIGKILL');
  await agent?.exit;
  istiod.closeAllConnections();
  istiod.close();
  await fs.rm(dir, { recursive: true, force: true });
});

const notAfterOnDisk = async () => Math.floor(new Date(new X509Certificate(await fs.readFile(path.join(dir, 'ca-cert.pem'))).validTo).getTime() / 1000);
const istiodPage = (v: number) => `# HELP citadel_server_cert_chain_expiry_timestamp The unix timestamp, in seconds, when Citadel cert chain will expire.\n# TYPE citadel_server_cert_chain_expiry_timestamp gauge\ncitadel_server_cert_chain_expiry_timestamp ${v}\n`;

async function run(): Promise<{ a: AgentRun; port: number }> {
  const port = await freePort();
  agent = startAgent(['run'], cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', METRICS_ADDR: `127.0.0.1:${port}`, ISTIOD_METRICS_URL: istiodUrl, ISTIOD_SYNC_TIMEOUT: '3s', ROTATE_ENDPOINT: 'true' }));
  return { a: agent, port };
}

describe.skipIf(!bao.available)('istiod in sync', () => {
  it('reports 1 when istiod serves the new intermediate, after each publish', async () => {
    page = async () => istiodPage(await notAfterOnDisk().catch(() => 0));
    const { a, port } = await run();
    await a.waitFor((l) => l.msg === 'istiod loaded the new intermediate');
    expect(sample((await httpGet(`http://127.0.0.1:${port}/metrics`)).text, 'istiod_vault_agent_istiod_in_sync')).toBe(1);
    // At once: Vault's notAfter has one-second resolution, and the agent makes the rotated intermediate
    // end at least a second later, so istiod's metric still tells them apart.
    const from = a.lines.length;
    a.kill('SIGHUP');
    await a.waitFor((l) => l.msg === 'istiod loaded the new intermediate', 30_000, from);
  });

  it('re-publishes once when istiod keeps the old intermediate, then reports 0', async () => {
    page = async () => istiodPage(1700000000);
    const { a, port } = await run();
    await a.waitFor((l) => l.msg === 'published a new intermediate');
    const serial = a.lines.find((l) => l.msg === 'published a new intermediate')!.serial;
    await a.waitFor((l) => /re-publishing once/.test(l.msg), 15_000);
    const republished = await a.waitFor((l) => l.msg === 're-published the current generation', 15_000);
    expect(republished.serial).toBe(serial);
    const err = await a.waitFor((l) => l.level === 'error' && /istiod still serves another intermediate/.test(l.msg), 15_000);
    expect(err.istiodReports).toBe(1700000000);
    expect(sample((await httpGet(`http://127.0.0.1:${port}/metrics`)).text, 'istiod_vault_agent_istiod_in_sync')).toBe(0);
    // The re-publish was a new generation of the same files, not a new intermediate.
    expect(a.lines.filter((l) => l.msg === 'published a new intermediate')).toHaveLength(1);
  });

  it('stays unknown (gauge absent) when istiod does not export the metric, without failing', async () => {
    page = async () => undefined;
    const { a, port } = await run();
    await a.waitFor((l) => /cannot tell whether istiod loaded/.test(l.msg), 20_000);
    const text = (await httpGet(`http://127.0.0.1:${port}/metrics`)).text;
    expect(sample(text, 'istiod_vault_agent_istiod_in_sync')).toBeUndefined();
    expect(sample(text, 'istiod_vault_agent_ready')).toBe(1);
    expect(a.lines.some((l) => l.level === 'error')).toBe(false);
  });

  it('stays unknown on Istio < 1.24, whose gauge keeps the value from its start, without re-publishing', async () => {
    page = async () => `istio_build{component="pilot",tag="1.23.2"} 1\n${istiodPage(1700000000)}`;
    const { a, port } = await run();
    const line = await a.waitFor((l) => /cannot tell whether istiod loaded/.test(l.msg), 20_000);
    expect(line.why).toMatch(/^istiod 1\.23\.2 sets citadel_server_cert_chain_expiry_timestamp only when it starts/);
    expect(sample((await httpGet(`http://127.0.0.1:${port}/metrics`)).text, 'istiod_vault_agent_istiod_in_sync')).toBeUndefined();
    expect(a.lines.some((l) => /re-publish/.test(l.msg))).toBe(false);
    expect(a.lines.some((l) => l.level === 'error')).toBe(false);
  });

  it('checks again when istiod catches up later', async () => {
    let calls = 0;
    page = async () => (++calls < 3 ? istiodPage(1700000000) : istiodPage(await notAfterOnDisk()));
    const { a } = await run();
    await waitFor(() => a.lines.some((l) => l.msg === 'istiod loaded the new intermediate'), { what: 'istiod to load the new intermediate', timeoutMs: 20_000 });
    expect(a.lines.some((l) => /re-publishing/.test(l.msg))).toBe(false);
  });
});
