/**
 * Maps whatever node-vault/axios threw into a VaultRequestError that carries only safe facts: the
 * operation, the Vault path, the HTTP status, Vault's own `errors` text and a network error code.
 * The original object is dropped on purpose (its `config.headers` holds X-Vault-Token and its
 * `config.data` the login JWT), so nothing secret can reach a log line through `cause`.
 */
import { AgentError, type FailureReason } from '../common/errors.js';

/** What a Vault call was doing, for messages ("while <doing> at <path>") and metrics (`operation`). */
export interface VaultCallContext {
  /** Bounded label for vault_request_duration_seconds{operation}. */
  operation: 'login' | 'sign' | 'read_issuer' | 'token_lookup' | 'token_renew' | 'token_revoke';
  /** Path under /v1/, e.g. `pki/root/sign-intermediate`. */
  path: string;
  /** Human phrase, e.g. "signing the intermediate CSR". */
  doing: string;
  /** Extra advice appended when Vault answers 403. */
  deniedHint?: string;
}

export class VaultRequestError extends AgentError {
  readonly operation: VaultCallContext['operation'];
  readonly path: string;
  readonly status: number | undefined;
  readonly vaultErrors: readonly string[];
  /** ECONNREFUSED, ETIMEDOUT, TLS error code..., or 'http' when Vault answered. */
  readonly networkCode: string;

  constructor(
    message: string,
    fields: {
      ctx: VaultCallContext;
      status?: number;
      vaultErrors?: readonly string[];
      networkCode: string;
      reason: FailureReason;
      retryable: boolean;
      code: string;
    },
  ) {
    super(message, { code: fields.code, reason: fields.reason, retryable: fields.retryable });
    this.operation = fields.ctx.operation;
    this.path = fields.ctx.path;
    this.status = fields.status;
    this.vaultErrors = fields.vaultErrors ?? [];
    this.networkCode = fields.networkCode;
  }
}

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

const NETWORK_ADVICE: Record<string, string> = {
  ECONNREFUSED: 'nothing listens at VAULT_ADDR; check the address, port and that Vault is running',
  ENOTFOUND: 'the host name in VAULT_ADDR does not resolve; check VAULT_ADDR and cluster DNS',
  EAI_AGAIN: 'DNS lookup of the VAULT_ADDR host failed temporarily',
  ECONNRESET: 'the connection was reset; check network policies and load balancers between the pod and Vault',
  ETIMEDOUT: 'no answer in time; check network policies and that Vault is up',
  EHOSTUNREACH: 'host unreachable; check network policies and routes to Vault',
  ENETUNREACH: 'network unreachable; check network policies and routes to Vault',
};

/** Vault's `{"errors": [...]}` texts, trimmed and bounded so a hostile body cannot flood the logs. */
function vaultErrorTexts(body: unknown): string[] {
  if (body && typeof body === 'object' && Array.isArray((body as { errors?: unknown }).errors)) {
    return ((body as { errors: unknown[] }).errors)
      .filter((e): e is string => typeof e === 'string')
      .slice(0, 5)
      .map((e) => (e.length > 300 ? `${e.slice(0, 300)}...` : e.replace(/\s+/g, ' ').trim()));
  }
  return [];
}

function statusOutcome(status: number): { reason: FailureReason; retryable: boolean; code: string; advice: string } {
  if (status === 401 || status === 403) {
    return { reason: 'vault_denied', retryable: false, code: 'VAULT_DENIED', advice: '' };
  }
  if (status === 429) {
    return { reason: 'vault_error', retryable: true, code: 'VAULT_RATE_LIMITED', advice: 'Vault rate-limited the request; it will be retried' };
  }
  if (status === 503) {
    return { reason: 'vault_unreachable', retryable: true, code: 'VAULT_UNAVAILABLE', advice: 'Vault is sealed, in standby without forwarding, or overloaded; it will be retried' };
  }
  if (status >= 500) {
    return { reason: 'vault_error', retryable: true, code: 'VAULT_SERVER_ERROR', advice: 'a Vault-side error; see the Vault server log; it will be retried' };
  }
  if (status === 404) {
    return { reason: 'vault_error', retryable: false, code: 'VAULT_NOT_FOUND', advice: 'the path does not exist: check the mount name in the setting that names this path' };
  }
  return { reason: 'vault_error', retryable: false, code: 'VAULT_BAD_REQUEST', advice: 'Vault rejected the request; check the settings that shape it' };
}

export function vaultTimeoutError(ctx: VaultCallContext, timeoutMs: number): VaultRequestError {
  return new VaultRequestError(
    `while ${ctx.doing} at ${ctx.path}: no answer within ${timeoutMs} ms (VAULT_CLIENT_TIMEOUT; check that Vault is up and reachable)`,
    { ctx, networkCode: 'ETIMEDOUT', reason: 'vault_unreachable', retryable: true, code: 'VAULT_TIMEOUT' },
  );
}

/** Converts anything thrown by node-vault/axios into a VaultRequestError. Idempotent. */
export function toVaultRequestError(err: unknown, ctx: VaultCallContext, timeoutMs: number): VaultRequestError {
  if (err instanceof VaultRequestError) return err;
  const e = err as { response?: { statusCode?: unknown; body?: unknown }; code?: unknown; message?: unknown } | null;
  const status = typeof e?.response?.statusCode === 'number' ? e.response.statusCode : undefined;
  if (status !== undefined) {
    const texts = vaultErrorTexts(e?.response?.body);
    const o = statusOutcome(status);
    const advice = texts.some((t) => /namespace not found/i.test(t))
      ? 'check VAULT_NAMESPACE'
      : o.reason === 'vault_denied'
        ? (ctx.deniedHint ?? 'check the Vault policy attached to the role')
        : o.advice;
    const said = texts.length ? texts.join('; ') : 'no error text';
    return new VaultRequestError(`while ${ctx.doing} at ${ctx.path}: HTTP ${status}: ${said} (${advice})`, {
      ctx,
      status,
      vaultErrors: texts,
      networkCode: 'http',
      reason: o.reason,
      retryable: o.retryable,
      code: o.code,
    });
  }
  const code = typeof e?.code === 'string' ? e.code : 'UNKNOWN';
  if (code === 'ECONNABORTED' || code === 'ETIMEDOUT' || code === 'ERR_CANCELED') return vaultTimeoutError(ctx, timeoutMs);
  if (TLS_CODES.has(code) || /certificate|self[- ]signed|SSL|TLS/i.test(String(e?.message ?? ''))) {
    return new VaultRequestError(
      `while ${ctx.doing} at ${ctx.path}: TLS verification of Vault failed (${code}) (set VAULT_CACERT to the CA that signed Vault's certificate, and check that VAULT_ADDR's host name is in that certificate)`,
      { ctx, networkCode: code, reason: 'vault_unreachable', retryable: false, code: 'VAULT_TLS' },
    );
  }
  const advice = NETWORK_ADVICE[code] ?? 'check VAULT_ADDR and the network path to Vault';
  // The message of a plain network error holds only the address and errno, never headers: keep its first line.
  const detail = typeof e?.message === 'string' ? e.message.split('\n')[0]!.slice(0, 200) : code;
  return new VaultRequestError(`while ${ctx.doing} at ${ctx.path}: ${detail} (${advice})`, {
    ctx,
    networkCode: code,
    reason: 'vault_unreachable',
    retryable: true,
    code: 'VAULT_UNREACHABLE',
  });
}
