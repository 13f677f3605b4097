/**
 * The narrow interface the PKI source uses to talk to Vault: read the issuer, sign a CSR, revoke at exit.
 * Everything else about Vault (node-vault, auth methods, tokens, error mapping) stays behind it.
 * A fake of this interface (test/helpers/fake-vault-ca.ts) drives the agent's unit tests.
 */
import { listIssuers, readIssuer, signIntermediate, type IssuerCache, type IssuerEntry, type IssuerInfo, type SignIntermediateParams, type SignIntermediateResult } from './pki-api.js';
import { openConnection, type ConnectionOptions, type VaultConnection } from './vault-connection.js';
import type { VaultTransport } from './transport.js';

export interface VaultCa extends VaultConnection {
  /** Certificate and chain of the issuer PKI_SIGN_PATH signs with, or of issuer `ref` (logs in if needed). */
  readIssuer(signal?: AbortSignal, ref?: string): Promise<IssuerInfo>;
  /**
   * Every issuer of the PKI mount (for root rotation). The certificates of issuers whose id and serial
   * were seen before are not read again (src/vault/pki-api.ts listIssuers says why that is safe), so a
   * poll, and an issuance retried after a failure, cost one LIST.
   */
  listIssuers(signal?: AbortSignal): Promise<IssuerEntry[]>;
  /**
   * Logs in if needed and signs, at PKI_SIGN_PATH or, with `issuerId`, at `<mount>/issuer/<id>/sign-intermediate`
   * (a root rotation keeps signing with the old root until the new one may sign).
   * Throws VaultRequestError / AgentError with reason and retryable set.
   */
  signIntermediate(params: Omit<SignIntermediateParams, 'format'>, signal?: AbortSignal, issuerId?: string): Promise<SignIntermediateResult>;
  /** The issuer reference PKI_SIGN_PATH names ("default" for `<mount>/root/sign-intermediate`). */
  readonly signerRef: string;
}

export interface VaultCaOptions extends ConnectionOptions {
  signPath: string;
  pkiMount: string;
  issuerRef: string;
}

export function createVaultCa(opts: VaultCaOptions, transport: VaultTransport): VaultCa {
  const { session, connection } = openConnection(opts, transport);
  const cache: IssuerCache = new Map();
  return {
    ...connection,
    readIssuer: (signal, ref) => session.withToken((token) => readIssuer(transport, opts.pkiMount, ref ?? opts.issuerRef, token, signal), signal),
    // Unauthenticated (both reads are, in Vault and OpenBao): polled for root rotations without a login.
    listIssuers: (signal) => listIssuers(transport, opts.pkiMount, undefined, signal, cache),
    signIntermediate: (params, signal, issuerId) => {
      const path = issuerId === undefined ? opts.signPath : `${opts.pkiMount}/issuer/${issuerId}/sign-intermediate`;
      return session.withToken((token) => signIntermediate(transport, path, { ...params, format: 'pem' }, token, signal), signal);
    },
    signerRef: opts.issuerRef,
  };
}
