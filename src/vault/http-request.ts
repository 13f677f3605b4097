/**
 * One HTTP exchange with Vault, and nothing more: no redirect is followed here (the transport decides,
 * see redirect-policy.ts), the response body is capped while it streams in (a hostile or broken server
 * cannot grow the agent's memory), and the request dies with `signal` (deadline or shutdown). TLS trust
 * comes only from the agent passed in.
 */
import http from 'node:http';
import https from 'node:https';

export interface HttpExchange {
  status: number;
  /** The Location header of a redirect, when there is one. */
  location: string | undefined;
  body: Buffer;
}

export interface SendOptions {
  url: URL;
  method: string;
  headers: Record<string, string>;
  /** Serialised request body (JSON), if any. */
  body: string | undefined;
  agent: http.Agent;
  /** The response body is refused beyond this many bytes. */
  maxBytes: number;
  signal: AbortSignal;
}

/** The response was larger than SendOptions.maxBytes. */
export class ResponseTooLargeError extends Error {
  readonly code = 'ERESPONSETOOLARGE';
  constructor(readonly maxBytes: number) {
    super(`the response is larger than ${maxBytes} bytes`);
  }
}

/** A network failure, with whether it happened on a kept-alive socket before any response byte. */
export interface SendFailure extends Error {
  code?: string;
  /** Node reused a kept-alive socket the server had already closed: safe to send once more. */
  staleSocket?: boolean;
}

/** Sends one request. Rejects with the socket/TLS error, ResponseTooLargeError, or signal.reason. */
export function sendHttp(o: SendOptions): Promise<HttpExchange> {
  return new Promise((resolve, reject) => {
    if (o.signal.aborted) return reject(o.signal.reason);
    const mod = o.url.protocol === 'https:' ? https : http;
    const headers: Record<string, string | number> = { ...o.headers, accept: 'application/json' };
    if (o.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(o.body);
    }
    let settled = false;
    const finish = (err: unknown, value?: HttpExchange) => {
      if (settled) return;
      settled = true;
      o.signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(value!);
    };
    const req = mod.request(o.url, { method: o.method, headers, agent: o.agent });
    let responded = false;
    const onAbort = () => {
      req.destroy();
      finish(o.signal.reason);
    };
    o.signal.addEventListener('abort', onAbort, { once: true });

    req.on('error', (err: SendFailure) => {
      if (!responded && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) err.staleSocket = true;
      finish(err);
    });
    req.on('response', (res) => {
      responded = true;
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > o.maxBytes) {
        res.destroy();
        req.destroy();
        return finish(new ResponseTooLargeError(o.maxBytes));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > o.maxBytes) {
          // Stop reading at once: the rest is never buffered.
          res.destroy();
          req.destroy();
          finish(new ResponseTooLargeError(o.maxBytes));
          return;
        }
        chunks.push(chunk);
      });
      res.on('error', (err) => finish(err));
      res.on('end', () => {
        const location = res.headers.location;
        finish(undefined, { status: res.statusCode ?? 0, location: typeof location === 'string' ? location : undefined, body: Buffer.concat(chunks) });
      });
    });
    if (o.body !== undefined) req.end(o.body);
    else req.end();
  });
}
