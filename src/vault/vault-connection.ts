/**
 * What every Vault-facing object of the agent shares, whichever calls it makes: one hardened transport,
 * one token session (one login serves every call), and the facts and controls around them (when the
 * token expires, the TLS CA, the revoke at shutdown).
 */
import type { Clock } from '../common/clock.js';
import type { AuthSpec } from './auth.js';
import { vaultState, type VaultState } from './health.js';
import { TokenSession, type TokenSessionLogger } from './token-session.js';
import type { TransportOptions, VaultTransport } from './transport.js';

export interface VaultConnection {
  /** Epoch ms at which the current Vault token expires, if known. */
  tokenExpiresAt(): number | undefined;
  /** Logs in (or looks VAULT_TOKEN up) if needed, and says when the token expires and whether it renews. */
  describeToken(signal?: AbortSignal): Promise<{ expiresAt: number | undefined; renewable: boolean }>;
  /** How Vault looks now (unauthenticated health and leader); never throws. */
  state(signal?: AbortSignal): Promise<VaultState>;
  /** Swaps the CA bundle used to verify Vault's TLS certificate (VAULT_CACERT changed on disk). */
  setCaCert(pem: string | undefined): void;
  /** Best-effort, bounded revoke of the token the agent created. Never throws. */
  close(): Promise<void>;
}

export interface ConnectionOptions extends TransportOptions {
  auth: AuthSpec;
  clock: Clock;
  log: TokenSessionLogger;
}

/**
 * The token session every call goes through, and the VaultConnection over it. `transport` is made with the
 * same options (createVaultTransport); the caller imports it, with node-vault and node:http(s), when it
 * composes the agent (src/main.ts says why this module must not).
 */
export function openConnection(opts: ConnectionOptions, transport: VaultTransport): { session: TokenSession; connection: VaultConnection } {
  const session = new TokenSession(transport, opts.auth, opts.clock, opts.log);
  return {
    session,
    connection: {
      tokenExpiresAt: () => session.expiresAt(),
      describeToken: (signal) => session.describe(signal),
      state: (signal) => vaultState(transport, signal),
      setCaCert: (pem) => transport.setCaCert(pem),
      close: () => session.revoke(),
    },
  };
}
