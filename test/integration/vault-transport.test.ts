/**
 * Pins each hardening point of the node-vault wrapper against a local HTTP(S) server that records what
 * it receives (the real OpenBao tier covers the rest).
 */
import debug from 'debug';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/common/clock.js';
import { login, LOGIN_DENIED_RETRY_DELAYS_MS } from '../../src/vault/auth.js';
import { VaultRequestError } from '../../src/vault/errors.js';
import { createVaultTransport, type TransportOptions } from '../../src/vault/transport.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { makeCert, makeRoot } from '../helpers/test-pki.js';
import { waitFor } from '../helpers/wait.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

type Handler = (req: Seen, res: http.ServerResponse) => void;

function serve(server: http.Server | https.Server, handler: () => Handler, seen: Seen[]): Promise<string> {
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const s = { method: req.method!, url: req.url!, headers: req.headers, body };
      seen.push(s);
      handler()(s, res);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(String((server.address() as AddressInfo).port))));
}

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

const TOKEN = 'hvs.SECRET-TOKEN-VALUE';
const JWT = 'eyJhbGciOi.SECRET-JWT-PAYLOAD.sig';
let handler: Handler = (_req, res) => json(res, 200, { data: {} });
const seen: Seen[] = [];
let plain: http.Server;
let tls: https.Server;
let plainAddr: string;
let tlsAddr: string;
let caPem: string;

beforeAll(async () => {
  plain = http.createServer();
  plainAddr = `http://127.0.0.1:${await serve(plain, () => handler, seen)}`;
  const ca = await makeRoot('CN=Test Vault CA');
  const leaf = await makeCert({ subject: 'CN=localhost', ca: false, keyUsage: 1 | 4, dnsSans: ['localhost'] }, ca);
  caPem = ca.pem;
  tls = https.createServer({ key: leaf.keyPem, cert: leaf.pem });
  tlsAddr = `https://localhost:${await serve(tls, () => handler, seen)}`;
});
afterAll(() => {
  plain.closeAllConnections();
  tls.closeAllConnections();
  plain.close();
  tls.close();
});
afterEach(() => {
  seen.length = 0;
  handler = (_req, res) => json(res, 200, { data: {} });
  vi.unstubAllEnvs();
});

function transport(o: Partial<TransportOptions> & { addr?: string } = {}) {
  const { addr, ...rest } = o;
  return createVaultTransport({ addrs: [addr ?? plainAddr], namespace: undefined, skipVerify: false, caCert: undefined, timeoutMs: 2000, ...rest });
}

const ctx = { operation: 'sign' as const, method: 'POST' as const, path: 'pki/root/sign-intermediate', doing: 'signing the intermediate CSR' };

describe('Vault transport hardening', () => {
  it('verifies TLS even when VAULT_SKIP_VERIFY=false is in the environment (node-vault alone would not)', async () => {
    vi.stubEnv('VAULT_SKIP_VERIFY', 'false');
    const err = await transport({ addr: tlsAddr }).request({ ...ctx, method: 'GET', path: 'sys/health' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VaultRequestError);
    expect((err as VaultRequestError).code).toBe('VAULT_TLS');
    expect((err as VaultRequestError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/set VAULT_CACERT/);
  });

  it('trusts VAULT_CACERT, and can swap it at run time', async () => {
    const t = transport({ addr: tlsAddr });
    await expect(t.request({ ...ctx, method: 'GET', path: 'sys/health' })).rejects.toThrow(/TLS verification/);
    t.setCaCert(caPem);
    await expect(t.request({ ...ctx, method: 'GET', path: 'sys/health' })).resolves.toEqual({ data: {} });
    await expect(transport({ addr: tlsAddr, caCert: caPem }).request({ ...ctx, method: 'GET', path: 'sys/health' })).resolves.toEqual({ data: {} });
  });

  it('skips verification only when our setting says so', async () => {
    await expect(transport({ addr: tlsAddr, skipVerify: true }).request({ ...ctx, method: 'GET', path: 'sys/health' })).resolves.toEqual({ data: {} });
  });

  it('times out a request that never gets an answer', async () => {
    handler = () => undefined; // never respond
    const start = Date.now();
    const err = (await transport({ timeoutMs: 300 }).request(ctx).catch((e: unknown) => e)) as VaultRequestError;
    expect(err.code).toBe('VAULT_TIMEOUT');
    expect(err.retryable).toBe(true);
    expect(err.reason).toBe('vault_unreachable');
    expect(Date.now() - start).toBeLessThan(5000);
  });

  it('times out a server that trickles bytes forever (defeats a socket-idle timeout)', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const t = setInterval(() => res.write(' '), 50);
      res.on('close', () => clearInterval(t));
    };
    const err = (await transport({ timeoutMs: 300 }).request(ctx).catch((e: unknown) => e)) as VaultRequestError;
    expect(err.code).toBe('VAULT_TIMEOUT');
  });

  it('never lets the token or the request body escape in an error', async () => {
    handler = (_req, res) => json(res, 500, { errors: ['internal error'] });
    const err = await transport().request({ ...ctx, token: TOKEN, body: { jwt: JWT } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VaultRequestError);
    for (const text of [JSON.stringify(err), inspect(err, { depth: 10, showHidden: true }), String((err as Error).stack)]) {
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(JWT);
    }
    expect((err as Error).cause).toBeUndefined();
    // A network error too (axios errors carry the request config, headers included).
    const down = await transport({ addr: 'http://127.0.0.1:1' }).request({ ...ctx, token: TOKEN, body: { jwt: JWT } }).catch((e: unknown) => e);
    expect(inspect(down, { depth: 10, showHidden: true })).not.toContain(TOKEN);
    expect((down as VaultRequestError).code).toBe('VAULT_UNREACHABLE');
    expect((down as Error).message).toMatch(/ECONNREFUSED.*nothing listens at VAULT_ADDR/);
  });

  it('keeps node-vault debug output (which prints request bodies) off', async () => {
    debug.enable('node-vault');
    const writes: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    try {
      await transport().request({ ...ctx, body: { jwt: JWT } });
    } finally {
      spy.mockRestore();
      debug.disable();
    }
    expect(writes.join('')).not.toContain(JWT);
  });

  it.each([
    [400, 'VAULT_BAD_REQUEST', false, 'vault_error'],
    [403, 'VAULT_DENIED', false, 'vault_denied'],
    [404, 'VAULT_NOT_FOUND', false, 'vault_error'],
    [429, 'VAULT_RATE_LIMITED', true, 'vault_error'],
    [500, 'VAULT_SERVER_ERROR', true, 'vault_error'],
    [502, 'VAULT_SERVER_ERROR', true, 'vault_error'],
    [503, 'VAULT_UNAVAILABLE', true, 'vault_unreachable'],
  ])('maps HTTP %d to %s (retryable %s) with the path, the status and Vault\'s errors text', async (status, code, retryable, reason) => {
    handler = (_req, res) => json(res, status, { errors: [`vault says ${status}`] });
    const err = (await transport().request(ctx).catch((e: unknown) => e)) as VaultRequestError;
    expect(err).toMatchObject({ code, retryable, reason, status, path: 'pki/root/sign-intermediate', vaultErrors: [`vault says ${status}`] });
    expect(err.message).toMatch(new RegExp(`^while signing the intermediate CSR at pki/root/sign-intermediate: HTTP ${status}: vault says ${status} \\(`));
  });

  it('sends only what we configure: no VAULT_TOKEN/VAULT_NAMESPACE from the environment, our namespace header', async () => {
    vi.stubEnv('VAULT_TOKEN', 'env-token-must-not-be-sent');
    vi.stubEnv('VAULT_NAMESPACE', 'env-namespace');
    vi.stubEnv('VAULT_PREFIX', '/nope');
    await transport({ namespace: 'team-a' }).request({ ...ctx, method: 'GET', path: 'pki/issuer/default/json', operation: 'read_issuer' });
    expect(seen[0]!.url).toBe('/v1/pki/issuer/default/json');
    expect(seen[0]!.headers['x-vault-token']).toBeUndefined();
    expect(seen[0]!.headers['x-vault-namespace']).toBe('team-a');
  });

  it('says the server does not speak TLS when an https:// address reaches a plain-http port', async () => {
    const err = (await transport({ addr: plainAddr.replace('http://', 'https://') }).request({ ...ctx, method: 'GET', path: 'sys/health' }).catch((e: unknown) => e)) as VaultRequestError;
    expect(err.code).toBe('VAULT_NOT_TLS');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/VAULT_ADDR \(https:\/\/127\.0\.0\.1:\d+\) does not speak TLS .*use http:\/\/ or the TLS port/);
    expect(err.message).not.toMatch(/VAULT_CACERT/);
  });

  it('names the address that failed: a redirect target that refuses connections is not VAULT_ADDR', async () => {
    const dead = 'http://127.0.0.1:1';
    handler = (_req, res) => {
      res.writeHead(307, { location: `${dead}/v1/pki/root/sign-intermediate` });
      res.end();
    };
    const err = (await transport({ redirectOrigins: [dead] }).request({ ...ctx, token: TOKEN }).catch((e: unknown) => e)) as VaultRequestError;
    expect(err.code).toBe('VAULT_UNREACHABLE');
    expect(err.message).toMatch(/nothing listens at http:\/\/127\.0\.0\.1:1 \(a redirect target Vault sent the request to\)/);
    expect(err.message).not.toMatch(/nothing listens at VAULT_ADDR/);
  });

  it('stops a request at once when the caller aborts (shutdown), without waiting for the timeout', async () => {
    handler = () => undefined; // never respond
    const ctl = new AbortController();
    const p = transport({ timeoutMs: 60_000 }).request({ ...ctx, signal: ctl.signal }).catch((e: unknown) => e);
    await waitFor(() => seen.length > 0, { what: 'the request to reach the server', timeoutMs: 5000, intervalMs: 1 });
    ctl.abort();
    expect(((await p) as Error).name).toBe('AbortError');
  });

  it('caps the answer: a body over the limit is a retryable invalid_response, not an out-of-memory', async () => {
    handler = (_req, res) => json(res, 200, { data: { certificate: 'x'.repeat(4096) } });
    const err = (await transport({ maxResponseBytes: 1024 }).request(ctx).catch((e: unknown) => e)) as VaultRequestError;
    expect(err).toMatchObject({ code: 'VAULT_RESPONSE_TOO_LARGE', reason: 'invalid_response', retryable: true });
  });

  it('with several VAULT_ADDR nodes, hands a request to the next one when a node refuses or is sealed, and sticks to the one that answered', async () => {
    const dead = 'http://127.0.0.1:1';
    const t = transport({ addrs: [dead, plainAddr] });
    await expect(t.request({ ...ctx, token: TOKEN })).resolves.toEqual({ data: {} });
    await expect(t.request({ ...ctx, token: TOKEN })).resolves.toEqual({ data: {} });
    expect(seen).toHaveLength(2);
    // A sealed node (503) passes the request on as well.
    const sealed = http.createServer((_req, res) => json(res, 503, { errors: ['Vault is sealed'] }));
    const sealedAddr = `http://127.0.0.1:${await new Promise<number>((r) => sealed.listen(0, '127.0.0.1', () => r((sealed.address() as AddressInfo).port)))}`;
    try {
      await expect(transport({ addrs: [sealedAddr, plainAddr] }).request(ctx)).resolves.toEqual({ data: {} });
      // All nodes sealed: the last answer is the error.
      const err = (await transport({ addrs: [sealedAddr, sealedAddr] }).request(ctx).catch((e: unknown) => e)) as VaultRequestError;
      expect(err).toMatchObject({ status: 503, code: 'VAULT_UNAVAILABLE', retryable: true });
    } finally {
      sealed.close();
    }
    // Every node down: the error names the last address tried.
    const down = (await transport({ addrs: [dead, 'http://127.0.0.1:2'] }).request(ctx).catch((e: unknown) => e)) as VaultRequestError;
    expect(down.message).toMatch(/nothing listens at VAULT_ADDR \(http:\/\/127\.0\.0\.1:2\)/);
  });

  it('reports each request to the latency observer with a bounded code', async () => {
    const obs: [string, string][] = [];
    handler = (_req, res) => json(res, 403, { errors: ['permission denied'] });
    await transport({ observe: (op, code) => obs.push([op, code]) }).request(ctx).catch(() => undefined);
    await transport({ addr: 'http://127.0.0.1:1', observe: (op, code) => obs.push([op, code]) }).request(ctx).catch(() => undefined);
    expect(obs).toEqual([['sign', '403'], ['sign', 'ECONNREFUSED']]);
  });
});

describe('login', () => {
  it('posts role and a freshly read JWT to auth/<mount>/login (not node-vault\'s auth//login)', async () => {
    handler = (_req, res) => json(res, 200, { auth: { client_token: TOKEN, lease_duration: 3600, renewable: true } });
    let reads = 0;
    const spec = { method: 'kubernetes' as const, mount: 'kube-c1-mesh-auth', role: 'istiod', readJwt: async () => `${JWT}-${++reads}` };
    const a = await login(transport(), spec, systemClock);
    const b = await login(transport(), spec, systemClock);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['POST /v1/auth/kube-c1-mesh-auth/login', 'POST /v1/auth/kube-c1-mesh-auth/login']);
    expect(JSON.parse(seen[1]!.body)).toEqual({ role: 'istiod', jwt: `${JWT}-2` });
    expect(seen[0]!.headers['x-vault-token']).toBeUndefined();
    expect(a).toMatchObject({ token: TOKEN, ttlSeconds: 3600, renewable: true, owned: true });
    expect(b.token).toBe(TOKEN);
  });

  it('retries a login 403 quickly (kubernetes auth turns a TokenReview blip into 403), then explains likely causes', async () => {
    handler = (_req, res) => json(res, 403, { errors: ['permission denied'] });
    const clock = new FakeClock();
    const p = login(transport(), { method: 'kubernetes', mount: 'kubernetes', role: 'istiod', readJwt: async () => JWT }, clock);
    const err = (await clock.drive(p.catch((e: unknown) => e))) as VaultRequestError;
    expect(seen).toHaveLength(LOGIN_DENIED_RETRY_DELAYS_MS.length + 1);
    expect(clock.requested).toEqual([...LOGIN_DENIED_RETRY_DELAYS_MS]);
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/auth\/kubernetes\/login: HTTP 403: permission denied \(likely causes: role "istiod" does not exist.*AUTH_MOUNT.*bound_service_account_names.*audience.*token_reviewer_jwt.*system:auth-delegator.*re-created/);
  });

  it('recovers when the 403 was a blip', async () => {
    let n = 0;
    handler = (_req, res) => (++n === 1 ? json(res, 403, { errors: ['permission denied'] }) : json(res, 200, { auth: { client_token: TOKEN, lease_duration: 60, renewable: false } }));
    const clock = new FakeClock();
    const lease = await clock.drive(login(transport(), { method: 'kubernetes', mount: 'kubernetes', role: 'istiod', readJwt: async () => JWT }, clock));
    expect(lease.token).toBe(TOKEN);
  });

  it('looks up a given token instead of logging in, and does not own it', async () => {
    handler = (_req, res) => json(res, 200, { data: { ttl: 0, renewable: false } });
    const lease = await login(transport(), { method: 'token', token: TOKEN }, systemClock);
    expect(seen[0]!.url).toBe('/v1/auth/token/lookup-self');
    expect(seen[0]!.headers['x-vault-token']).toBe(TOKEN);
    expect(lease).toMatchObject({ ttlSeconds: 0, owned: false });
  });

  it('calls a response without auth.client_token an invalid response', async () => {
    handler = (_req, res) => json(res, 200, { data: {} });
    await expect(login(transport(), { method: 'jwt', mount: 'jwt', role: 'r', readJwt: async () => JWT }, systemClock)).rejects.toMatchObject({ reason: 'invalid_response' });
  });
});
