/**
 * JSON logs (pino) to stdout. Secrets are kept out twice: callers never put them in log fields, and
 * `redact` censors the field names that could hold one, at any depth we log. Errors are serialised to
 * their safe facts only (message chain, code, reason, retryable, HTTP status, Vault path); the default
 * serialiser would copy every enumerable property, and an HTTP client error carries request headers.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { AgentError, describeError } from '../common/errors.js';

export type { Logger };

const SECRET_KEYS = ['token', 'jwt', 'secret_id', 'secretId', 'client_token', 'privateKey', 'privateKeyPem', 'caKey', 'key', 'password', 'X-Vault-Token', 'authorization'];

export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'headers["x-vault-token"]',
  '*.headers["x-vault-token"]',
];

/** Safe shape of an error in a log line. */
export function serializeError(err: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = { message: describeError(err) };
  if (err instanceof Error) out.type = err.name;
  if (err instanceof AgentError) {
    out.code = err.code;
    out.reason = err.reason;
    out.retryable = err.retryable;
  }
  const e = err as { status?: unknown; path?: unknown };
  if (typeof e?.status === 'number') out.status = e.status;
  if (typeof e?.path === 'string') out.path = e.path;
  return out;
}

export interface LoggerOptions {
  level: string;
  /** `json` (default): one object per line. `pretty`: one readable line per event, for a terminal. */
  format?: 'json' | 'pretty';
  /** Where lines go; stdout (synchronously, so no line is lost at exit) when omitted. */
  destination?: DestinationStream;
  base?: Record<string, unknown>;
}

/** pino-pretty as a synchronous stream (no worker thread), loaded only when asked for. */
async function prettyStream(): Promise<DestinationStream> {
  const { default: pretty } = await import('pino-pretty');
  return pretty({ sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,component,mode' });
}

/** A logger for the CLI: JSON lines, or pretty ones for a person at a terminal. */
export async function createCliLogger(opts: Omit<LoggerOptions, 'destination'>): Promise<Logger> {
  return createLogger({ ...opts, destination: opts.format === 'pretty' ? await prettyStream() : undefined });
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level,
      base: { component: 'istiod-vault-agent', ...opts.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      serializers: { err: serializeError, error: serializeError },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
