/**
 * The only place node-vault is used, and the only place that talks HTTP to Vault. node-vault builds the
 * requests and maps Vault's status codes; the wire is ours, plugged in through node-vault's
 * `request-promise` option (its default HTTP client would follow any redirect with the token and body,
 * and buffer any response, however large). Hardened here and nowhere else:
 * - Redirects: only where redirect-policy.ts allows (307/308 to VAULT_ADDR's origin or
 *   VAULT_REDIRECT_ORIGINS, never https to http, a few hops); anything else is a clear error, retryable
 *   only for a 307/308 to another origin (what a standby sends during a leader election).
 * - Several addresses (the nodes of an HA cluster): the one that answered last is used first; a node that
 *   refuses or drops the connection, or is sealed (503), hands the same request to the next one, within
 *   the same deadline.
 * - Every response body is capped (MAX_RESPONSE_BYTES) while it streams in.
 * - Every request has one deadline for all its hops (a server that trickles bytes cannot hold it), and
 *   dies with the caller's signal (shutdown, INIT_TIMEOUT).
 * - TLS verification is decided by our settings only (node-vault alone disables it for ANY non-empty
 *   VAULT_SKIP_VERIFY, even "false"); VAULT_CACERT can be swapped at run time.
 * - node-vault's `debug` output prints request bodies (the login JWT, secret IDs): we pass a no-op.
 * - node-vault also reads VAULT_TOKEN / VAULT_NAMESPACE / VAULT_PREFIX / VAULT_ADDR from the process
 *   environment: we overwrite every one of those fields after construction.
 * - No error object of the HTTP layer leaves this file: failures become VaultRequestError (errors.ts).
 */
import http from 'node:http';
import https from 'node:https';
import nodeVault from 'node-vault';
import { AbortedError } from '../common/clock.js';
import {
  redirectRefusedError, responseTooLargeError, toVaultRequestError, vaultTimeoutError,
  type RequestTarget, type VaultCallContext,
} from './errors.js';
import { ResponseTooLargeError, sendHttp, type SendFailure } from './http-request.js';
import { createRedirectPolicy } from './redirect-policy.js';

export type HttpMethod = 'GET' | 'POST' | 'LIST';

/** A signed intermediate with its chain is a few KiB; this leaves room for long chains and warnings. */
export const MAX_RESPONSE_BYTES = 1024 * 1024;
/** Kept-alive sockets are closed before a typical server or load balancer would close them (5 s+). */
const IDLE_SOCKET_MS = 4000;
/** Failures after which the next node of VAULT_ADDR gets the same request: it never reached this one, or this one cannot serve. */
const NEXT_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

/** One request: what it is for (messages, metrics), and what is sent. */
export type VaultRequest = VaultCallContext & { method: HttpMethod; body?: unknown; token?: string; signal?: AbortSignal };

/** What the rest of src/vault asks of the transport. */
export interface VaultTransport {
  /**
   * Sends one request. `token` is sent as X-Vault-Token when given (never implicitly).
   * Resolves with the parsed JSON body (or undefined for 204). Throws VaultRequestError, or
   * AbortedError when `signal` aborts first.
   */
  request(ctx: VaultRequest): Promise<unknown>;
  /** Replaces the CA bundle used to verify Vault's TLS certificate (undefined: system roots). */
  setCaCert(pem: string | undefined): void;
}

export interface TransportOptions {
  /** VAULT_ADDR: one address, or the nodes of a cluster. */
  addrs: readonly string[];
  /** Origins besides VAULT_ADDR's that a 307/308 may lead to (VAULT_REDIRECT_ORIGINS). */
  redirectOrigins?: readonly string[];
  namespace: string | undefined;
  skipVerify: boolean;
  caCert: string | undefined;
  timeoutMs: number;
  /** Overridable for tests. */
  maxResponseBytes?: number;
  /** Called once per request with its outcome, for the latency histogram. `code` is the HTTP status or an error class. */
  observe?: (operation: string, code: string, seconds: number) => void;
}

/** What node-vault hands its request function (the subset it sets). */
interface NodeVaultRequest {
  method: string;
  uri: string;
  headers?: Record<string, string>;
  json?: unknown;
  /** Ours, passed through node-vault's per-call request options. */
  call: { ctx: VaultCallContext; signal: AbortSignal; onTarget: (t: RequestTarget) => void };
}

function agents(opts: TransportOptions, caCert: string | undefined) {
  const tls: https.AgentOptions = { keepAlive: true, timeout: IDLE_SOCKET_MS, rejectUnauthorized: !opts.skipVerify };
  if (caCert !== undefined) tls.ca = caCert;
  return { http: new http.Agent({ keepAlive: true, timeout: IDLE_SOCKET_MS }), https: new https.Agent(tls) };
}

function parseBody(body: Buffer): unknown {
  if (body.length === 0) return undefined;
  const text = body.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Creates the hardened transport. Never throws on construction for a reachable or unreachable address. */
export function createVaultTransport(opts: TransportOptions): VaultTransport {
  const maxBytes = opts.maxResponseBytes ?? MAX_RESPONSE_BYTES;
  const nodes = opts.addrs.map((a) => new URL(a));
  const policy = createRedirectPolicy(opts.addrs, opts.redirectOrigins ?? []);
  let pool = agents(opts, opts.caCert);
  /** The node that answered last: tried first. */
  let preferred = 0;

  /** node-vault's request function: one Vault call, on the nodes in turn when one cannot take it. */
  async function wire(o: NodeVaultRequest): Promise<{ statusCode: number; body: unknown; request: { path: string } }> {
    const path = new URL(o.uri);
    for (let n = 0; ; n++) {
      const i = (preferred + n) % nodes.length;
      const url = new URL(`${path.pathname}${path.search}`, nodes[i]);
      const last = n === nodes.length - 1;
      try {
        const res = await follow(o, url);
        if (res.statusCode === 503 && !last && !o.call.signal.aborted) continue;
        preferred = i;
        return res;
      } catch (err) {
        if (last || o.call.signal.aborted || !NEXT_NODE_CODES.has(String((err as { code?: unknown }).code))) throw err;
      }
    }
  }

  /** One call to one node, following only the redirects the policy allows. */
  async function follow(o: NodeVaultRequest, start: URL): Promise<{ statusCode: number; body: unknown; request: { path: string } }> {
    const { ctx, signal, onTarget } = o.call;
    const body = o.json === undefined ? undefined : JSON.stringify(o.json);
    let url = start;
    for (let hops = 0; ; hops++) {
      const target = { origin: url.origin, redirected: hops > 0 };
      onTarget(target);
      const send = () => sendHttp({ url, method: o.method, headers: o.headers ?? {}, body, agent: url.protocol === 'https:' ? pool.https : pool.http, maxBytes, signal });
      let res;
      try {
        res = await send().catch((err: SendFailure) => {
          // The server closed a kept-alive socket just as it was reused: nothing reached it; send once more.
          if (err.staleSocket) return send();
          throw err;
        });
      } catch (err) {
        if (err instanceof ResponseTooLargeError) throw responseTooLargeError(ctx, maxBytes, target);
        throw err;
      }
      if (res.status >= 300 && res.status < 400) {
        const d = policy.decide(url, res.status, res.location, hops);
        if (!d.follow) throw redirectRefusedError(ctx, res.status, res.location, d.why, target, d.retryable);
        url = d.next;
        continue;
      }
      return { statusCode: res.status, body: parseBody(res.body), request: { path: url.pathname } };
    }
  }

  const client = nodeVault({
    apiVersion: 'v1',
    endpoint: opts.addrs[0]!,
    debug: () => {},
    'request-promise': { defaults: () => wire },
  } as nodeVault.VaultOptions);
  // The constructor falls back to process.env for these; pin them to our settings.
  client.endpoint = opts.addrs[0]!.replace(/\/$/, '');
  (client as unknown as { pathPrefix: string }).pathPrefix = '';
  (client as unknown as { token: string | undefined }).token = undefined;
  (client as unknown as { namespace: string | undefined }).namespace = opts.namespace;
  // LIST as `GET ...?list=1`, which Vault treats the same: a proxy or load balancer between the pod and
  // Vault (or Node's own HTTP parser) may refuse the non-standard LIST method.
  (client as unknown as { noCustomHTTPVerbs: boolean }).noCustomHTTPVerbs = true;

  return {
    setCaCert(pem) {
      const old = pool;
      pool = agents(opts, pem);
      old.http.destroy();
      old.https.destroy();
    },
    async request(ctx) {
      const headers: Record<string, string> = {};
      if (ctx.token !== undefined) headers['X-Vault-Token'] = ctx.token;
      const start = performance.now();
      let code = 'error';
      const deadline = AbortSignal.timeout(opts.timeoutMs);
      const signal = ctx.signal ? AbortSignal.any([ctx.signal, deadline]) : deadline;
      let target: RequestTarget = { origin: nodes[preferred]!.origin, redirected: false };
      const call = { ctx, signal, onTarget: (t: RequestTarget) => (target = t) };
      try {
        const requestOptions = { headers, call } as unknown as nodeVault.RequestOption;
        const body =
          ctx.method === 'GET'
            ? await client.read(ctx.path, requestOptions)
            : ctx.method === 'LIST'
              ? await client.list(ctx.path, requestOptions)
              : await client.write(ctx.path, ctx.body ?? {}, requestOptions);
        code = '200';
        return body;
      } catch (err) {
        if (ctx.signal?.aborted) {
          code = 'aborted';
          throw new AbortedError();
        }
        const mapped = deadline.aborted ? vaultTimeoutError(ctx, opts.timeoutMs, target) : toVaultRequestError(err, ctx, opts.timeoutMs, target);
        code = mapped.status !== undefined ? String(mapped.status) : mapped.networkCode;
        throw mapped;
      } finally {
        opts.observe?.(ctx.operation, code, (performance.now() - start) / 1000);
      }
    },
  };
}
