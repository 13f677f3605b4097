/**
 * The narrow interface the agent uses to talk to Vault: read the issuer, sign a CSR, revoke at exit.
 * Everything else about Vault (node-vault, auth methods, tokens, error mapping) stays behind it.
 * A fake of this interface (test/helpers/fake-vault-ca.ts) drives the agent's unit tests.
 */
import type { Clock } from '../common/clock.js';
import type { AuthSpec } from './auth.js';
import { listIssuers, readIssuer, signIntermediate, type IssuerEntry, type IssuerInfo, type SignIntermediateParams, type SignIntermediateResult } from './pki-api.js';
import { vaultState, type VaultState } from './health.js';
import { TokenSession, type TokenSessionLogger } from './token-session.js';
import type { TransportOptions, VaultTransport } from './transport.js';

export interface VaultCa {
  /** Certificate and chain of the issuer PKI_SIGN_PATH signs with, or of issuer `ref` (logs in if needed). */
  readIssuer(signal?: AbortSignal, ref?: string): Promise<IssuerInfo>;
  /** Every issuer of the PKI mount (for root rotation). */
  listIssuers(signal?: AbortSignal): Promise<IssuerEntry[]>;
  /**
   * Logs in if needed and signs, at PKI_SIGN_PATH or, with `issuerId`, at `<mount>/issuer/<id>/sign-intermediate`
   * (a root rotation keeps signing with the old root until the new one may sign).
   * Throws VaultRequestError / AgentError with reason and retryable set.
   */
  signIntermediate(params: Omit<SignIntermediateParams, 'format'>, signal?: AbortSignal, issuerId?: string): Promise<SignIntermediateResult>;
  /** The issuer reference PKI_SIGN_PATH names ("default" for `<mount>/root/sign-intermediate`). */
  readonly signerRef: string;
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

/** `transport` is made with the same options (createVaultTransport); the caller loads it, with node:http(s). */
export function createVaultCa(opts: VaultCaOptions, transport: VaultTransport): VaultCa {
  const session = new TokenSession(transport, opts.auth, opts.clock, opts.log);
  return {
    readIssuer: (signal, ref) => session.withToken((token) => readIssuer(transport, opts.pkiMount, ref ?? opts.issuerRef, token, signal), signal),
    // Unauthenticated (both reads are, in Vault and OpenBao): polled for root rotations without a login.
    listIssuers: (signal) => listIssuers(transport, opts.pkiMount, undefined, signal),
    signIntermediate: (params, signal, issuerId) => {
      const path = issuerId === undefined ? opts.signPath : `${opts.pkiMount}/issuer/${issuerId}/sign-intermediate`;
      return session.withToken((token) => signIntermediate(transport, path, { ...params, format: 'pem' }, token, signal), signal);
    },
    signerRef: opts.issuerRef,
    tokenExpiresAt: () => session.expiresAt(),
    describeToken: (signal) => session.describe(signal),
    state: (signal) => vaultState(transport, signal),
    setCaCert: (pem) => transport.setCaCert(pem),
    close: () => session.revoke(),
  };
}
