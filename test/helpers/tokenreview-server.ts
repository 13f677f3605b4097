/**
 * A test-only stand-in for the Kubernetes API server's TokenReview endpoint, which Vault's kubernetes
 * auth calls on every login. It "authenticates" a JWT by reading its claims (its signature is checked
 * by nobody here: the point is Vault's side of the protocol), unless told to refuse or to fail.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TokenReviewServer {
  url: string;
  reviews: number;
  /** 'ok' (authenticate from claims), 'deny' (authenticated: false), or 'error' (HTTP 500). */
  mode: 'ok' | 'deny' | 'error';
  close(): Promise<void>;
}

/** Some PEM Vault accepts as kubernetes_ca_cert (required with disable_local_ca_jwt; unused over http). */
export { DUMMY_CA_PEM } from './dummy-ca.js';

function claims(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
}

export async function startTokenReviewServer(): Promise<TokenReviewServer> {
  const state: TokenReviewServer = { url: '', reviews: 0, mode: 'ok', close: async () => undefined };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/apis/authentication.k8s.io/v1/tokenreviews') {
        res.writeHead(404).end();
        return;
      }
      state.reviews++;
      if (state.mode === 'error') {
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"kind":"Status","status":"Failure"}');
        return;
      }
      const review = JSON.parse(body) as { spec: { token: string; audiences?: string[] } };
      const c = claims(review.spec.token);
      const k8s = c['kubernetes.io'] as { namespace: string; serviceaccount: { name: string; uid: string } };
      const status =
        state.mode === 'deny'
          ? { authenticated: false, error: 'token revoked' }
          : {
              authenticated: true,
              user: { username: `system:serviceaccount:${k8s.namespace}:${k8s.serviceaccount.name}`, uid: k8s.serviceaccount.uid, groups: ['system:serviceaccounts'] },
              audiences: review.spec.audiences ?? (c.aud as string[]),
            };
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', status }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}
