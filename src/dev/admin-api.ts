/**
 * A minimal admin client for configuring a dev/test server with its root token. Not the agent's Vault
 * path (that is src/vault, hardened node-vault); this one exists only to set servers up.
 */
import https from 'node:https';
import http from 'node:http';

export interface AdminApi {
  addr: string;
  request(method: string, path: string, body?: unknown, token?: string | null): Promise<{ status: number; body: unknown }>;
  /** Like request, but throws on a non-2xx answer. */
  call(method: string, path: string, body?: unknown): Promise<unknown>;
}

export function adminApi(addr: string, rootToken: string, caPem?: string): AdminApi {
  const request: AdminApi['request'] = (method, path, body, token = rootToken) =>
    new Promise((resolve, reject) => {
      const url = new URL(`${addr}/v1/${path.replace(/^\/+/, '')}`);
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const headers: Record<string, string | number> = {};
      if (token) headers['X-Vault-Token'] = token;
      if (data) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = data.length;
      }
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method, headers, ca: caPem, timeout: 15_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            /* keep text */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error(`timeout on ${method} ${path}`)));
      req.end(data);
    });
  return {
    addr,
    request,
    async call(method, path, body) {
      const res = await request(method, path, body);
      if (res.status < 200 || res.status >= 300) {
        throw new Error(`${method} ${path}: HTTP ${res.status}: ${JSON.stringify(res.body)}`);
      }
      return res.body;
    },
  };
}
