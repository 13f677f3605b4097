/**
 * An HTTP-level front for Vault nodes (what an L7 load balancer or ingress does): each request goes to
 * the next target in turn, a target that refuses the connection hands it to the following one, extra
 * headers are added on the way (`X-Vault-No-Request-Forwarding: true` makes a standby answer writes with a
 * 307 to the active node instead of forwarding them), and the answer comes back untouched: a redirect is
 * passed to the client as it is. Every request is recorded (which listener, method, path, status, when),
 * with no header or body kept: those carry tokens and JWTs.
 *
 * `listeners` opens several ports in front of the same targets, so that requests can be told apart by
 * who sent them (the storm bench gives each agent its own port) without looking at credentials.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FrontRecord {
  /** Index of the listener the request came in on. */
  listener: number;
  method: string;
  /** Path without the query string. */
  path: string;
  /** Upstream status, or 0 when no target answered (the client got a 502). */
  status: number;
  /** performance.now() when the request arrived. */
  at: number;
  /** Milliseconds until the answer's headers came back from the target (Vault's latency plus a loopback hop). */
  ms: number;
  /** Which target answered (its origin). */
  target: string;
}

export interface HttpFront {
  /** One URL per listener. */
  urls: string[];
  records: FrontRecord[];
  close(): Promise<void>;
}

export interface HttpFrontOptions {
  targets: readonly string[];
  /** Headers added to every forwarded request. */
  addHeaders?: Record<string, string>;
  /** How many listening ports (default 1). */
  listeners?: number;
  /** Called for every request before it is forwarded. */
  onRequest?(method: string, path: string, listener: number): void;
}

export async function startHttpFront(o: HttpFrontOptions): Promise<HttpFront> {
  const targets = o.targets.map((t) => new URL(t));
  const upstreamAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const records: FrontRecord[] = [];
  const servers: http.Server[] = [];
  let turn = 0;

  const forward = (listener: number) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const at = performance.now();
      const urlPath = (req.url ?? '/').split('?')[0]!;
      o.onRequest?.(req.method!, urlPath, listener);
      const first = turn++ % targets.length;
      const headers = { ...req.headers, ...o.addHeaders };
      delete headers.host;
      delete headers.connection;
      const attempt = (n: number) => {
        const t = targets[(first + n) % targets.length]!;
        const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers, agent: upstreamAgent }, (ur) => {
          records.push({ listener, method: req.method!, path: urlPath, status: ur.statusCode ?? 0, at, ms: performance.now() - at, target: t.origin });
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        });
        up.on('error', (err: NodeJS.ErrnoException) => {
          // Only a refused connection moves on: anything else may already have reached the node.
          if (err.code === 'ECONNREFUSED' && n + 1 < targets.length) return attempt(n + 1);
          records.push({ listener, method: req.method!, path: urlPath, status: 0, at, ms: performance.now() - at, target: t.origin });
          if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ errors: [`front: ${err.code ?? err.message}`] }));
        });
        up.end(body);
      };
      attempt(0);
    });
  };

  for (let i = 0; i < (o.listeners ?? 1); i++) {
    const s = http.createServer({ keepAliveTimeout: 5000 }, forward(i));
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    servers.push(s);
  }
  return {
    urls: servers.map((s) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`),
    records,
    close: async () => {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((r) => {
              s.closeAllConnections();
              s.close(() => r());
            }),
        ),
      );
      upstreamAgent.destroy();
    },
  };
}
