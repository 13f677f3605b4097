/**
 * Log-in methods. Each posts to `auth/<mount>/login` with node-vault's generic write (its
 * `kubernetesLogin` helper ignores the mount and posts to `auth//login`). Credentials are read at
 * every login: kubelet rotates the projected service-account token, and a secret-id file may change.
 */
import * as z from 'zod/mini';
import { AgentError } from '../common/errors.js';
import { AbortedError, type Clock } from '../common/clock.js';
import type { VaultTransport } from './transport.js';
import { VaultRequestError } from './errors.js';

/** A Vault token and what Vault said about its lifetime. */
export interface TokenLease {
  token: string;
  /** Seconds the token lives from `obtainedAt`; 0 means it never expires (root tokens). */
  ttlSeconds: number;
  renewable: boolean;
  obtainedAt: number;
  /** True when the agent created this token by logging in (and so may revoke it). */
  owned: boolean;
}

export type AuthSpec =
  | { method: 'kubernetes' | 'jwt'; mount: string; role: string; readJwt: () => Promise<string> }
  | { method: 'approle'; mount: string; roleId: string; readSecretId: () => Promise<string> }
  | { method: 'token'; token: string };

const loginResponse = z.object({
  auth: z.object({
    client_token: z.string().check(z.minLength(1)),
    lease_duration: z.number().check(z.nonnegative()),
    renewable: z.boolean(),
  }),
});

const lookupResponse = z.object({
  data: z.object({ ttl: z.number().check(z.nonnegative()), renewable: z.optional(z.boolean()) }),
});

/** How many times a login 403 is retried, and the pauses between, before it is reported. */
export const LOGIN_DENIED_RETRY_DELAYS_MS = [1000, 2000] as const;

function deniedHint(spec: AuthSpec): string {
  switch (spec.method) {
    case 'kubernetes':
      return `likely causes: role "${spec.role}" does not exist at auth/${spec.mount}, or AUTH_MOUNT is wrong; the role's bound_service_account_names/namespaces do not match istiod's service account (istiod-<rev> for a revision) or the token's audience is not the role's audience; or Vault's TokenReview of the token failed: the mount's token_reviewer_jwt is missing (Vault then sends istiod's own token, which the API server refuses), expired, or its service account lacks system:auth-delegator or no longer exists; istiod's service account was re-created after the token was issued (uid mismatch: the next projected token fixes it); or Vault cannot reach the Kubernetes API (kubernetes_host, kubernetes_ca_cert) (retried, still failing)`;
    case 'jwt':
      return `likely causes: role "${spec.role}" does not exist at auth/${spec.mount}; bound_subject/bound_audiences do not match the token; AUTH_MOUNT is wrong`;
    case 'approle':
      return `likely causes: APPROLE_ROLE_ID or the secret-id is wrong or expired; AUTH_MOUNT is wrong`;
    case 'token':
      return 'VAULT_TOKEN is invalid, expired or revoked';
  }
}

async function body(spec: Exclude<AuthSpec, { method: 'token' }>): Promise<Record<string, string>> {
  if (spec.method === 'approle') {
    return { role_id: spec.roleId, secret_id: await spec.readSecretId() };
  }
  return { role: spec.role, jwt: await spec.readJwt() };
}

/**
 * Logs in once (with quick retries on 403, see LOGIN_DENIED_RETRY_DELAYS_MS) and returns the token.
 * For AUTH_METHOD=token it looks the token up instead, to learn its lifetime.
 * Throws VaultRequestError (denied: not retryable), AgentError (invalid response), or whatever the
 * credential readers throw.
 */
export async function login(
  transport: VaultTransport,
  spec: AuthSpec,
  clock: Clock,
  signal?: AbortSignal,
): Promise<TokenLease> {
  if (spec.method === 'token') {
    const res = lookupResponse.safeParse(
      await transport.request({
        operation: 'token_lookup',
        method: 'GET',
        path: 'auth/token/lookup-self',
        doing: 'looking up VAULT_TOKEN',
        deniedHint: deniedHint(spec),
        token: spec.token,
        signal,
      }),
    );
    if (!res.success) {
      throw new AgentError('while looking up VAULT_TOKEN at auth/token/lookup-self: unexpected response shape (is VAULT_ADDR a Vault server?)', {
        code: 'VAULT_INVALID_RESPONSE',
        reason: 'invalid_response',
        retryable: true,
      });
    }
    return { token: spec.token, ttlSeconds: res.data.data.ttl, renewable: res.data.data.renewable ?? false, obtainedAt: clock.now(), owned: false };
  }

  const path = `auth/${spec.mount}/login`;
  for (let attempt = 0; ; attempt++) {
    try {
      const raw = await transport.request({
        operation: 'login',
        method: 'POST',
        path,
        body: await body(spec),
        doing: `logging in with ${spec.method} auth${'role' in spec ? ` as role "${spec.role}"` : ''}`,
        deniedHint: deniedHint(spec),
        notFoundHint: `no auth method is mounted at auth/${spec.mount}: check AUTH_MOUNT`,
        signal,
      });
      const res = loginResponse.safeParse(raw);
      if (!res.success) {
        throw new AgentError(`while logging in at ${path}: the response has no auth.client_token (is AUTH_MOUNT a ${spec.method} auth mount?)`, {
          code: 'VAULT_INVALID_RESPONSE',
          reason: 'invalid_response',
          retryable: true,
        });
      }
      return { token: res.data.auth.client_token, ttlSeconds: res.data.auth.lease_duration, renewable: res.data.auth.renewable, obtainedAt: clock.now(), owned: true };
    } catch (err) {
      // Kubernetes auth answers 403 for ANY TokenReview failure, including a briefly unreachable API
      // server, so a few quick retries separate a blip from a wrong role.
      const denied = err instanceof VaultRequestError && err.status === 403;
      const delay = LOGIN_DENIED_RETRY_DELAYS_MS[attempt];
      if (!denied || delay === undefined) throw err;
      if (signal?.aborted) throw new AbortedError();
      await clock.sleep(delay, signal);
    }
  }
}
