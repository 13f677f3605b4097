/**
 * Secret hygiene of a whole run at the most verbose log level: init, renewals, a Vault outage, a
 * rotation, a revoked token, shutdown. Every log line and the metrics page are searched for every
 * private key the agent ever published, its Vault tokens, and the service-account JWT.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createToken } from '../../src/dev/configure.js';
import { DEV_POLICY } from '../../src/dev/dev-environment.js';
import { freePort } from '../../src/dev/dev-server.js';
import { cleanEnv, runAgent, startAgent } from '../helpers/agent-process.js';
import { httpGet } from '../helpers/metrics-text.js';
import { useOpenBao } from '../helpers/openbao.js';
import { findSecrets } from '../helpers/secret-fragments.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';

const bao = useOpenBao();

describe.skipIf(!bao.available)('secret hygiene', () => {
  it('no private key, Vault token or JWT appears in any log line or in /metrics', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-hygiene-'));
    const proxy = await startTcpProxy(bao.get().server.addr);
    const port = await freePort();
    const jwt = (await fs.readFile(bao.get().saTokenPath, 'utf8')).trim();
    const keys = new Set<string>();
    const collectKeys = async () => {
      for (const g of await fs.readdir(path.join(dir, '.gen')).catch(() => [] as string[])) {
        const k = await fs.readFile(path.join(dir, '.gen', g, 'ca-key.pem'), 'utf8').catch(() => undefined);
        if (k) keys.add(k);
      }
    };
    const env = { ...bao.get().env, VAULT_ADDR: proxy.url, CERT_DIR: dir, KEY_TYPE: 'rsa', CERT_TTL: '20s', RENEW_BEFORE: '15s', LOG_LEVEL: 'trace', VAULT_CLIENT_TIMEOUT: '1s', METRICS_ADDR: `127.0.0.1:${port}` };
    const outputs: string[] = [];

    const init = await runAgent(['init'], cleanEnv(env));
    expect(init.code).toBe(0);
    outputs.push(init.stdout, init.stderr);
    await collectKeys();

    const a = startAgent(['sidecar'], cleanEnv(env));
    await a.waitFor((l) => l.msg === 'adopted the bundle on disk');
    await waitFor(async () => {
      await collectKeys();
      return a.lines.filter((l) => l.msg === 'published a new intermediate').length >= 1;
    }, { what: 'a first publish', timeoutMs: 30_000 });
    proxy.setMode('refuse');
    await waitFor(() => a.lines.filter((l) => l.msg.startsWith('issuance failed')).length >= 2, { what: 'two failed issuances', timeoutMs: 30_000 });
    proxy.setMode('pass');
    await bao.get().api.call('POST', 'sys/leases/revoke-prefix/auth/jwt', {});
    const from = a.lines.length;
    a.kill('SIGHUP');
    await a.waitFor((l) => l.msg === 'published a new intermediate', 30_000, from);
    await collectKeys();
    const metrics = (await httpGet(`http://127.0.0.1:${port}/metrics`)).text;
    a.kill('SIGTERM');
    await a.exit;
    outputs.push(a.stdout, a.stderr, metrics);

    // A run with a token we know, to search for it too.
    const token = await createToken(bao.get().api, DEV_POLICY);
    await fs.mkdir(path.join(dir, 'second'));
    const t = await runAgent(['init'], cleanEnv({ ...env, AUTH_METHOD: 'token', VAULT_TOKEN: token, VAULT_ADDR: bao.get().server.addr, CERT_DIR: path.join(dir, 'second') }));
    expect(t.code).toBe(0);
    outputs.push(t.stdout, t.stderr);

    const all = outputs.join('\n');
    expect(all.split('\n').length).toBeGreaterThan(50);
    expect(keys.size).toBeGreaterThanOrEqual(3);
    // Every base64 line of every key, the PEM label, the JWT and its claims, the token.
    expect(findSecrets(all, { tokens: [token], jwts: [jwt], privateKeys: keys })).toEqual([]);
    expect(all).not.toMatch(/hvs\.|s\.[A-Za-z0-9]{24}/);
    await proxy.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
});
