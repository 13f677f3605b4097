/**
 * One error base for the whole agent. Every failure that can reach a user carries:
 * - `code`: stable identifier, safe for tests and logs;
 * - `reason`: the bounded metric label (see FailureReason) so logs and metrics agree;
 * - `retryable`: whether trying again later can help (network, 429, 5xx) or the operator must act;
 * - `cause`: the underlying error, already sanitised (never a raw HTTP client error: those carry tokens).
 * Messages read "while <doing X>: <what happened> (<what to check>)".
 */

/** Bounded label set for `issuances_total{reason}` and the `reason` log field. */
export const FAILURE_REASONS = [
  'vault_unreachable',
  'vault_denied',
  'vault_error',
  'invalid_response',
  'verification_failed',
  'write_failed',
  'root_changed',
  'lifetime_too_short',
  'credentials_unreadable',
  'input_invalid',
  'internal',
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

export interface AgentErrorOptions {
  code: string;
  reason: FailureReason;
  retryable: boolean;
  cause?: unknown;
}

export class AgentError extends Error {
  readonly code: string;
  readonly reason: FailureReason;
  readonly retryable: boolean;

  constructor(message: string, opts: AgentErrorOptions) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = opts.code;
    this.reason = opts.reason;
    this.retryable = opts.retryable;
  }
}

/** A setting is missing or malformed. The CLI prints each problem as one line and exits 2. */
export class ConfigError extends AgentError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('\n'), { code: 'CONFIG', reason: 'input_invalid', retryable: false });
    this.problems = problems;
  }
}

/** Anything returned by Vault failed a check: nothing is published. */
export class VerificationError extends AgentError {
  constructor(message: string, code: string, cause?: unknown) {
    super(message, { code, reason: 'verification_failed', retryable: true, cause });
  }
}

/** Normalises anything thrown into an AgentError without leaking the original object's fields. */
export function asAgentError(err: unknown, doing: string): AgentError {
  if (err instanceof AgentError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new AgentError(`while ${doing}: ${detail}`, { code: 'INTERNAL', reason: 'internal', retryable: true });
}

/** Message of an error followed by its causes, one per "caused by", for one-line logs and CLI output. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    if (cur instanceof Error) {
      if (!parts.some((p) => p.includes(cur instanceof Error ? cur.message : ''))) parts.push(cur.message);
      cur = cur.cause;
    } else {
      parts.push(String(cur));
      break;
    }
  }
  return parts.join(': caused by: ');
}
