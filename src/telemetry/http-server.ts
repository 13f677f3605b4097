/**
 * The agent's own HTTP endpoints on METRICS_ADDR: /metrics (Prometheus), /healthz (process alive),
 * /readyz (a valid, unexpired bundle is published: the native-sidecar startupProbe holds istiod back on
 * it), and POST /rotate (only when enabled; issues a new intermediate now).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface HttpServerOptions {
  host: string;
  port: number;
  registry: Registry;
  isReady: () => boolean | Promise<boolean>;
  /** Present only when ROTATE_ENDPOINT=true. Returns once the request is queued, not when it is done. */
  rotate?: () => void;
}

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

/** Starts listening; resolves once bound. Rejects (e.g. EADDRINUSE) with a message naming METRICS_ADDR. */
export async function startHttpServer(opts: HttpServerOptions): Promise<RunningServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && url === '/metrics') {
      opts.registry.metrics().then(
        (text) => send(res, 200, text, opts.registry.contentType),
        () => send(res, 500, 'metrics unavailable\n'),
      );
    } else if (req.method === 'GET' && url === '/healthz') {
      send(res, 200, 'ok\n');
    } else if (req.method === 'GET' && url === '/readyz') {
      Promise.resolve(opts.isReady()).then(
        (ready) => (ready ? send(res, 200, 'ready\n') : send(res, 503, 'no valid bundle published\n')),
        () => send(res, 503, 'readiness check failed\n'),
      );
    } else if (url === '/rotate' && opts.rotate) {
      if (req.method !== 'POST') return send(res, 405, 'use POST\n');
      opts.rotate();
      send(res, 202, 'rotation requested\n');
    } else {
      send(res, 404, 'not found\n');
    }
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`METRICS_ADDR: cannot listen on ${opts.host}:${opts.port}: ${err.code ?? err.message}`)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
