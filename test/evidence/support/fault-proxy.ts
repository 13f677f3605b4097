/**
 * A loopback HTTP proxy between the agent and a real OpenBao that misbehaves on demand, per request
 * path. Rules match a path prefix (string) or a RegExp against the request path (`/v1/...`, query
 * stripped) and an optional method; the first matching rule whose `times` is not used up applies its
 * fault; anything else is forwarded unchanged.
 *
 * Faults:
 * - `reset`     the connection is destroyed when the request arrives (a refused/reset path; per
 *               connection refusal is `refuseConnections`, since a path is only known after accept);
 * - `stall`     the request is held and never answered (until the rule is cleared or the proxy closes);
 * - `trickle`   200 headers, then one byte every `everyMs` (defeats socket-idle timeouts);
 * - `status`    a Vault-style error answer `{"errors":[...]}` with the given HTTP status;
 * - `replace`   a fixed answer (any status, any bytes, any content type): malformed JSON, HTML, huge;
 * - `truncate`  forwarded, then only the first `keep` bytes of the answer, with a matching
 *               Content-Length (a well-formed HTTP answer carrying cut-off JSON);
 * - `cut`       forwarded, the full Content-Length announced, `keep` bytes sent, then the socket dropped;
 * - `rewrite`   forwarded, the JSON answer handed to `fn` (with the request's JSON body) and the value
 *               it returns sent instead;
 * - `redirect`  an answer with the given 3xx status and Location (absolute, or a function of the
 *               request's path and query);
 * - `endless`   200 headers without a length, then data as fast as the agent reads it, forever.
 *
 * The proxy also records what a test needs to look for leaks: every X-Vault-Token the agent sent,
 * every client_token Vault returned, and every login JWT. It never logs any of them.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault =
  | { kind: 'reset' }
  | { kind: 'stall' }
  | { kind: 'trickle'; everyMs?: number }
  | { kind: 'status'; status: number; errors?: string[] }
  | { kind: 'replace'; status?: number; body: string | Buffer | (() => string | Buffer); contentType?: string }
  | { kind: 'truncate'; keep?: number }
  | { kind: 'cut'; keep?: number }
  | { kind: 'rewrite'; fn: (ctx: RewriteContext) => unknown }
  | { kind: 'redirect'; status: number; location: string | ((url: string) => string) }
  | { kind: 'endless' };

export interface RewriteContext {
  /** The request body, parsed as JSON (undefined when empty or not JSON). */
  request: Record<string, unknown> | undefined;
  /** Vault's answer, parsed as JSON; mutate it or return a replacement. */
  response: { data?: Record<string, unknown>; [k: string]: unknown };
  status: number;
}

export interface Rule {
  match: string | RegExp;
  method?: string;
  fault: Fault;
  /** Applies this many times, then is skipped (default: until cleared). */
  times?: number;
}

export interface Exchange {
  method: string;
  path: string;
  /** The fault applied, or 'pass'. */
  fault: string;
  status: number | undefined;
  at: number;
}

export interface FaultProxy {
  url: string;
  /** Every request seen, in order. */
  log: Exchange[];
  /** Secrets that crossed the proxy, to search logs for. */
  secrets: { tokens: Set<string>; jwts: Set<string> };
  /** Replaces the rules (and releases held requests of the old ones). */
  setRules(rules: Rule[]): void;
  clear(): void;
  /** true: every new connection is reset at accept and open ones dropped (Vault down). */
  refuseConnections(on: boolean): void;
  /** How often each rule fired since it was set. */
  hits(): number[];
  close(): Promise<void>;
}

function pathOf(url: string | undefined): string {
  return (url ?? '/').split('?')[0]!;
}

function matches(rule: Rule, method: string, p: string): boolean {
  if (rule.method && rule.method.toUpperCase() !== method.toUpperCase()) return false;
  return typeof rule.match === 'string' ? p.startsWith(rule.match) : rule.match.test(p);
}

function parseJson(buf: Buffer): Record<string, unknown> | undefined {
  if (buf.length === 0) return undefined;
  try {
    const v = JSON.parse(buf.toString('utf8')) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Starts the proxy in front of `target` (http://host:port). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  let rules: { rule: Rule; hits: number }[] = [];
  let refusing = false;
  const held = new Set<Socket>();
  const sockets = new Set<Socket>();
  const log: Exchange[] = [];
  const secrets = { tokens: new Set<string>(), jwts: new Set<string>() };
  const upstreamAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });

  function releaseHeld(): void {
    for (const s of held) s.destroy();
    held.clear();
  }

  async function forward(req: http.IncomingMessage, body: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    const headers = { ...req.headers, host: t.host };
    delete headers['content-length'];
    if (body.length) headers['content-length'] = String(body.length);
    return new Promise((resolve, reject) => {
      const up = http.request({ host: t.hostname, port: Number(t.port), method: req.method, path: req.url, headers, agent: upstreamAgent, timeout: 30_000 }, (res) => {
        readAll(res).then((b) => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: b }), reject);
      });
      up.on('error', reject);
      up.on('timeout', () => up.destroy(new Error('upstream timeout')));
      up.end(body);
    });
  }

  function send(res: http.ServerResponse, status: number, body: Buffer, contentType = 'application/json'): void {
    res.writeHead(status, { 'content-type': contentType, 'content-length': body.length, 'cache-control': 'no-store' });
    res.end(body);
  }

  function noteSecrets(p: string, req: http.IncomingMessage, reqBody: Buffer, resBody: Buffer | undefined): void {
    const tok = req.headers['x-vault-token'];
    if (typeof tok === 'string' && tok) secrets.tokens.add(tok);
    if (/\/login$/.test(p)) {
      const j = parseJson(reqBody);
      if (typeof j?.jwt === 'string') secrets.jwts.add(j.jwt);
      if (typeof j?.secret_id === 'string') secrets.tokens.add(j.secret_id);
    }
    if (resBody) {
      const r = parseJson(resBody) as { auth?: { client_token?: unknown; accessor?: unknown } } | undefined;
      if (typeof r?.auth?.client_token === 'string') secrets.tokens.add(r.auth.client_token);
    }
  }

  const server = http.createServer((req, res) => {
    void (async () => {
      const method = req.method ?? 'GET';
      const p = pathOf(req.url);
      const reqBody = await readAll(req);
      const entry = rules.find((r) => matches(r.rule, method, p) && (r.rule.times === undefined || r.hits < r.rule.times));
      const ex: Exchange = { method, path: p, fault: entry ? entry.rule.fault.kind : 'pass', status: undefined, at: Date.now() };
      log.push(ex);
      noteSecrets(p, req, reqBody, undefined);
      if (entry) entry.hits++;
      const fault = entry?.rule.fault;
      const socket = req.socket;

      if (!fault) {
        const up = await forward(req, reqBody);
        noteSecrets(p, req, reqBody, up.body);
        ex.status = up.status;
        send(res, up.status, up.body, String(up.headers['content-type'] ?? 'application/json'));
        return;
      }
      switch (fault.kind) {
        case 'reset':
          socket.resetAndDestroy();
          return;
        case 'stall':
          held.add(socket);
          socket.once('close', () => held.delete(socket));
          return;
        case 'trickle': {
          held.add(socket);
          socket.once('close', () => held.delete(socket));
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1_000_000 });
          const timer = setInterval(() => {
            if (socket.destroyed) return clearInterval(timer);
            res.write(' ');
          }, fault.everyMs ?? 200);
          socket.once('close', () => clearInterval(timer));
          return;
        }
        case 'status':
          ex.status = fault.status;
          send(res, fault.status, Buffer.from(JSON.stringify({ errors: fault.errors ?? [`injected HTTP ${fault.status}`] })));
          return;
        case 'replace': {
          const raw = typeof fault.body === 'function' ? fault.body() : fault.body;
          ex.status = fault.status ?? 200;
          send(res, ex.status, Buffer.isBuffer(raw) ? raw : Buffer.from(raw), fault.contentType);
          return;
        }
        case 'truncate':
        case 'cut': {
          const up = await forward(req, reqBody);
          noteSecrets(p, req, reqBody, up.body);
          ex.status = up.status;
          const keep = Math.min(fault.keep ?? Math.floor(up.body.length / 2), up.body.length - 1);
          const part = up.body.subarray(0, Math.max(0, keep));
          if (fault.kind === 'truncate') {
            send(res, up.status, part);
          } else {
            res.writeHead(up.status, { 'content-type': 'application/json', 'content-length': up.body.length });
            res.write(part, () => setTimeout(() => socket.destroy(), 20));
          }
          return;
        }
        case 'redirect': {
          ex.status = fault.status;
          const location = typeof fault.location === 'function' ? fault.location(req.url ?? '/') : fault.location;
          res.writeHead(fault.status, { location, 'content-length': 0 });
          res.end();
          return;
        }
        case 'endless': {
          held.add(socket);
          socket.once('close', () => held.delete(socket));
          ex.status = 200;
          res.writeHead(200, { 'content-type': 'application/json' });
          const chunk = Buffer.alloc(64 * 1024, 0x20);
          const pump = () => {
            while (!socket.destroyed && res.write(chunk));
            if (!socket.destroyed) res.once('drain', pump);
          };
          pump();
          return;
        }
        case 'rewrite': {
          const up = await forward(req, reqBody);
          noteSecrets(p, req, reqBody, up.body);
          const parsed = parseJson(up.body);
          if (!parsed) throw new Error(`rewrite rule for ${p}: upstream answer is not JSON (HTTP ${up.status})`);
          const out = await fault.fn({ request: parseJson(reqBody), response: parsed as RewriteContext['response'], status: up.status });
          ex.status = up.status;
          send(res, up.status, Buffer.from(JSON.stringify(out ?? parsed)));
          return;
        }
      }
    })().catch((err: unknown) => {
      // A broken rule is a test bug: answer 599 so it is visible, and keep the message for the test.
      log.push({ method: req.method ?? '', path: `PROXY ERROR ${(err as Error).message}`, fault: 'error', status: 599, at: Date.now() });
      if (!res.headersSent) send(res, 599, Buffer.from(JSON.stringify({ errors: ['fault proxy error'] })));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  server.on('connection', (s: Socket) => {
    if (refusing) {
      s.resetAndDestroy();
      return;
    }
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    secrets,
    setRules(next) {
      releaseHeld();
      rules = next.map((rule) => ({ rule, hits: 0 }));
    },
    clear() {
      releaseHeld();
      rules = [];
    },
    refuseConnections(on) {
      refusing = on;
      if (on) for (const s of sockets) s.resetAndDestroy();
    },
    hits: () => rules.map((r) => r.hits),
    close: () =>
      new Promise<void>((r) => {
        releaseHeld();
        for (const s of sockets) s.destroy();
        upstreamAgent.destroy();
        server.close(() => r());
      }),
  };
}
