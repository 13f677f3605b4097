/**
 * Maps whatever node-vault or the HTTP layer threw into a VaultRequestError that carries only safe facts: the
 * operation, the Vault path, the HTTP status, Vault's own `errors` text and a network error code.
 * The original object is dropped on purpose (its `config.headers` holds X-Vault-Token and its
 * `config.data` the login JWT), so nothing secret can reach a log line through `cause`.
 */
import { AgentError, type FailureReason } from '../common/errors.js';

/** What a Vault call was doing, for messages ("while <doing> at <path>") and metrics (`operation`). */
export interface VaultCallContext {
  /** Bounded label for vault_request_duration_seconds{operation}. */
  operation: 'login' | 'sign' | 'read_issuer' | 'read' | 'health' | 'token_lookup' | 'token_renew' | 'token_revoke';
  /** Path under /v1/, e.g. `pki/root/sign-intermediate`. */
  path: string;
  /** Human phrase, e.g. "signing the intermediate CSR". */
  doing: string;
  /** Extra advice appended when Vault answers 403. */
  deniedHint?: string;
  /** Extra advice appended when Vault answers 404 (which setting names this path). */
  notFoundHint?: string;
}

/** Where a request went: VAULT_ADDR, or a redirect target it was sent on to. Never carries credentials. */
export interface RequestTarget {
  /** Origin only (scheme://host:port): no user info, no path. */
  origin: string;
  redirected: boolean;
}

function describeTarget(t: RequestTarget | undefined): string {
  if (!t) return 'VAULT_ADDR';
  return t.redirected ? `${t.origin} (a redirect target Vault sent the request to)` : `VAULT_ADDR (${t.origin})`;
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
]);

const NETWORK_ADVICE: Record<string, (where: string) => string> = {
  ECONNREFUSED: (w) => `nothing listens at ${w}; check the address, port and that Vault is running`,
  ENOTFOUND: (w) => `the host name of ${w} does not resolve; check VAULT_ADDR and cluster DNS`,
  EAI_AGAIN: (w) => `DNS lookup of ${w} failed temporarily`,
  ECONNRESET: (w) => `the connection to ${w} was reset; check network policies and load balancers between the pod and Vault`,
  ETIMEDOUT: (w) => `no answer in time from ${w}; check network policies and that Vault is up`,
  EHOSTUNREACH: (w) => `${w} is unreachable; check network policies and routes to Vault`,
  ENETUNREACH: (w) => `network unreachable towards ${w}; check network policies and routes to Vault`,
};

/** OpenSSL's way of saying the peer answered a TLS hello with something else (plain HTTP). */
const NOT_TLS = /wrong version number|ERR_SSL_WRONG_VERSION_NUMBER|packet length too long|http request/i;

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

export function vaultTimeoutError(ctx: VaultCallContext, timeoutMs: number, target?: RequestTarget): VaultRequestError {
  return new VaultRequestError(
    `while ${ctx.doing} at ${ctx.path}: no answer from ${describeTarget(target)} within ${timeoutMs} ms (VAULT_CLIENT_TIMEOUT; check that Vault is up and reachable)`,
    { ctx, networkCode: 'ETIMEDOUT', reason: 'vault_unreachable', retryable: true, code: 'VAULT_TIMEOUT' },
  );
}

/** The response body was over the cap: a broken proxy or a hostile server, never a real bundle. */
export function responseTooLargeError(ctx: VaultCallContext, maxBytes: number, target: RequestTarget): VaultRequestError {
  return new VaultRequestError(
    `while ${ctx.doing} at ${ctx.path}: the answer from ${describeTarget(target)} is larger than ${Math.round(maxBytes / 1024)} KiB (a signed intermediate and its chain are a few KiB); a proxy or another server may be answering; it will be retried`,
    { ctx, networkCode: 'ERESPONSETOOLARGE', reason: 'invalid_response', retryable: true, code: 'VAULT_RESPONSE_TOO_LARGE' },
  );
}

/**
 * Vault (or something answering as Vault) redirected somewhere the agent does not send credentials.
 * `retryable` when asking again can get another answer (see redirect-policy.ts).
 */
export function redirectRefusedError(ctx: VaultCallContext, status: number, location: string | undefined, why: string, target: RequestTarget, retryable: boolean): VaultRequestError {
  const loc = location === undefined ? '' : ` to ${location.length > 200 ? `${location.slice(0, 200)}...` : location}`;
  return new VaultRequestError(
    `while ${ctx.doing} at ${ctx.path}: ${describeTarget(target)} redirected (HTTP ${status})${loc}; not followed: ${why} (the token, login credentials and the CSR go only to VAULT_ADDR and VAULT_REDIRECT_ORIGINS)`,
    { ctx, status, networkCode: 'redirect', reason: 'vault_error', retryable, code: 'VAULT_REDIRECT_REFUSED' },
  );
}

/** Converts anything thrown by node-vault or the HTTP layer into a VaultRequestError. Idempotent. */
export function toVaultRequestError(err: unknown, ctx: VaultCallContext, timeoutMs: number, target?: RequestTarget): VaultRequestError {
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
        : status === 404 && ctx.notFoundHint
          ? ctx.notFoundHint
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
  const where = describeTarget(target);
  if (code === 'ECONNABORTED' || code === 'ETIMEDOUT' || code === 'ERR_CANCELED') return vaultTimeoutError(ctx, timeoutMs, target);
  if (NOT_TLS.test(`${code} ${String(e?.message ?? '')}`)) {
    return new VaultRequestError(
      `while ${ctx.doing} at ${ctx.path}: ${where} does not speak TLS (${code}): the address says https:// but the server answered in plain HTTP; use http:// or the TLS port`,
      { ctx, networkCode: code, reason: 'vault_unreachable', retryable: false, code: 'VAULT_NOT_TLS' },
    );
  }
  if (TLS_CODES.has(code) || /certificate|self[- ]signed|SSL|TLS/i.test(String(e?.message ?? ''))) {
    return new VaultRequestError(
      `while ${ctx.doing} at ${ctx.path}: TLS verification of ${where} failed (${code}) (set VAULT_CACERT to the CA that signed Vault's certificate, and check that VAULT_ADDR's host name is in that certificate)`,
      { ctx, networkCode: code, reason: 'vault_unreachable', retryable: false, code: 'VAULT_TLS' },
    );
  }
  const advice = NETWORK_ADVICE[code]?.(where) ?? `check ${where} and the network path to Vault`;
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
