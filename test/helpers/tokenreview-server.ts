/**
 * A stand-in for the Kubernetes API server's TokenReview endpoint, for Vault's kubernetes auth in tests.
 * Vault (and OpenBao) call `POST /apis/authentication.k8s.io/v1/tokenreviews` on every login and require
 * status.authenticated, username system:serviceaccount:<ns>:<name>, uid equal to the JWT's
 * kubernetes.io.serviceaccount.uid claim, and audiences overlapping the role's. This server answers like
 * the API server would for tokens signed with `key` (src/dev/jwt.ts serviceAccountJwt), and, like it,
 * authenticates the caller: with `reviewerToken` set, only that bearer token may ask.
 */
import { createVerify, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const TOKENREVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';

export interface ReviewRecord {
  authorization: string | undefined;
  audiences: string[] | undefined;
  authenticated: boolean;
  username?: string;
}

export interface TokenReviewServer {
  /** http://127.0.0.1:<port>, the `kubernetes_host` for Vault. */
  url: string;
  reviews: ReviewRecord[];
  /** 'ok' answers like the API server; 'error' answers 500, as an API server in trouble would. */
  mode: 'ok' | 'error';
  close(): Promise<void>;
}

/** Some PEM Vault accepts as kubernetes_ca_cert (required with disable_local_ca_jwt; unused over http). */
export { DUMMY_CA_PEM } from './dummy-ca.js';

interface Claims {
  aud?: string | string[];
  exp?: number;
  nbf?: number;
  'kubernetes.io'?: { namespace?: string; serviceaccount?: { name?: string; uid?: string } };
}

/** Verifies an RS256 JWT with `publicKey`; returns its claims, or an error text like the API server's. */
function verifyJwt(token: string, publicKey: KeyObject | string, nowSeconds: number): Claims | string {
  const parts = token.split('.');
  if (parts.length !== 3) return 'token is not a JWT';
  const [h, p, s] = parts as [string, string, string];
  const verifier = createVerify('RSA-SHA256');
  verifier.update(`${h}.${p}`);
  if (!verifier.verify(publicKey, Buffer.from(s, 'base64url'))) return 'invalid bearer token, signature invalid';
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Claims;
  if (claims.exp !== undefined && claims.exp < nowSeconds) return 'invalid bearer token, token has expired';
  if (claims.nbf !== undefined && claims.nbf > nowSeconds + 60) return 'invalid bearer token, token not yet valid';
  return claims;
}

export async function startTokenReviewServer(opts: { publicKey: KeyObject | string; reviewerToken?: string }): Promise<TokenReviewServer> {
  const reviews: ReviewRecord[] = [];
  const state = { mode: 'ok' as TokenReviewServer['mode'] };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.method !== 'POST' || req.url?.split('?')[0] !== TOKENREVIEW_PATH) {
        return json(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 });
      }
      if (opts.reviewerToken !== undefined && req.headers.authorization !== `Bearer ${opts.reviewerToken}`) {
        reviews.push({ authorization: req.headers.authorization, audiences: undefined, authenticated: false });
        return json(401, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
      }
      let spec: { token?: string; audiences?: string[] };
      try {
        spec = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { spec?: typeof spec }).spec ?? {};
      } catch {
        return json(400, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'BadRequest', code: 400 });
      }
      const record: ReviewRecord = { authorization: req.headers.authorization, audiences: spec.audiences, authenticated: false };
      reviews.push(record);
      if (state.mode === 'error') return json(500, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'InternalError', code: 500 });
      const answer = (status: Record<string, unknown>) => json(201, { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status });
      const claims = verifyJwt(spec.token ?? '', opts.publicKey, Math.floor(Date.now() / 1000));
      if (typeof claims === 'string') return answer({ authenticated: false, user: {}, error: claims });
      const tokenAud = Array.isArray(claims.aud) ? claims.aud : claims.aud ? [claims.aud] : [];
      // Without requested audiences the API server checks against its own; treat the token's as accepted.
      const audiences = spec.audiences?.length ? spec.audiences.filter((a) => tokenAud.includes(a)) : tokenAud;
      if (audiences.length === 0) return answer({ authenticated: false, user: {}, error: 'token audiences are invalid for the target audiences' });
      const k = claims['kubernetes.io'];
      const ns = k?.namespace;
      const name = k?.serviceaccount?.name;
      if (!ns || !name) return answer({ authenticated: false, user: {}, error: 'not a service account token' });
      record.authenticated = true;
      record.username = `system:serviceaccount:${ns}:${name}`;
      return answer({
        authenticated: true,
        user: { username: record.username, uid: k?.serviceaccount?.uid ?? '', groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'] },
        audiences,
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    reviews,
    get mode() {
      return state.mode;
    },
    set mode(m) {
      state.mode = m;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
