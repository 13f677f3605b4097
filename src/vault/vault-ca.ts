/**
 * The narrow interface the agent uses to talk to Vault: read the issuer, sign a CSR, revoke at exit.
 * Everything else about Vault (node-vault, auth methods, tokens, error mapping) stays behind it.
 * A fake of this interface (test/helpers/fake-vault-ca.ts) drives the agent's unit tests.
 */
import type { Clock } from '../common/clock.js';
import type { AuthSpec } from './auth.js';
import { readIssuer, signIntermediate, type IssuerInfo, type SignIntermediateParams, type SignIntermediateResult } from './pki-api.js';
import { vaultState, type VaultState } from './health.js';
import { TokenSession, type TokenSessionLogger } from './token-session.js';
import { createVaultTransport, type TransportOptions } from './transport.js';

export interface VaultCa {
  /** Certificate and chain of the issuer that PKI_SIGN_PATH signs with (logs in if needed). */
  readIssuer(signal?: AbortSignal): Promise<IssuerInfo>;
  /** Logs in if needed and signs. Throws VaultRequestError / AgentError with reason and retryable set. */
  signIntermediate(params: Omit<SignIntermediateParams, 'format'>, signal?: AbortSignal): Promise<SignIntermediateResult>;
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

export interface VaultCaOptions extends TransportOptions {
  auth: AuthSpec;
  signPath: string;
  pkiMount: string;
  issuerRef: string;
  clock: Clock;
  log: TokenSessionLogger;
}

export function createVaultCa(opts: VaultCaOptions): VaultCa {
  const transport = createVaultTransport(opts);
  const session = new TokenSession(transport, opts.auth, opts.clock, opts.log);
  return {
    readIssuer: (signal) => session.withToken((token) => readIssuer(transport, opts.pkiMount, opts.issuerRef, token, signal), signal),
    signIntermediate: (params, signal) =>
      session.withToken((token) => signIntermediate(transport, opts.signPath, { ...params, format: 'pem' }, token, signal), signal),
    tokenExpiresAt: () => session.expiresAt(),
    describeToken: (signal) => session.describe(signal),
    state: (signal) => vaultState(transport, signal),
    setCaCert: (pem) => transport.setCaCert(pem),
    close: () => session.revoke(),
  };
}
