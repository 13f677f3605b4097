/**
 * The narrow interface the PKI source uses to talk to Vault: read the issuer, sign a CSR, revoke at exit.
 * Everything else about Vault (node-vault, auth methods, tokens, error mapping) stays behind it.
 * A fake of this interface (test/helpers/fake-vault-ca.ts) drives the agent's unit tests.
 */
import { readIssuer, signIntermediate, type IssuerInfo, type SignIntermediateParams, type SignIntermediateResult } from './pki-api.js';
import { openConnection, type ConnectionOptions, type VaultConnection } from './vault-connection.js';

export interface VaultCa extends VaultConnection {
  /** Certificate and chain of the issuer that PKI_SIGN_PATH signs with (logs in if needed). */
  readIssuer(signal?: AbortSignal): Promise<IssuerInfo>;
  /** Logs in if needed and signs. Throws VaultRequestError / AgentError with reason and retryable set. */
  signIntermediate(params: Omit<SignIntermediateParams, 'format'>, signal?: AbortSignal): Promise<SignIntermediateResult>;
}

export interface VaultCaOptions extends ConnectionOptions {
  signPath: string;
  pkiMount: string;
  issuerRef: string;
}

export function createVaultCa(opts: VaultCaOptions): VaultCa {
  const { transport, session, connection } = openConnection(opts);
  return {
    ...connection,
    readIssuer: (signal) => session.withToken((token) => readIssuer(transport, opts.pkiMount, opts.issuerRef, token, signal), signal),
    signIntermediate: (params, signal) =>
      session.withToken((token) => signIntermediate(transport, opts.signPath, { ...params, format: 'pem' }, token, signal), signal),
  };
}
