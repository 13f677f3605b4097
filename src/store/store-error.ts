/**
 * The one error type of the store, and what to tell the operator for each errno. Permanent faults
 * (permissions, a read-only volume, CERT_DIR not a directory, an entry the agent will not remove) are
 * not retryable: retrying cannot help until someone acts. A full volume or an I/O error may pass.
 */
import { AgentError } from '../common/errors.js';

/** errno-like code for an entry in CERT_DIR that the agent did not make and will not remove. */
export const PLANTED = 'PLANTED';

/** errno-like code for a CERT_DIR that does not exist (outside `dev` the agent does not create it). */
export const CERT_DIR_MISSING = 'NOCERTDIR';

const NOT_RETRYABLE = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', PLANTED, CERT_DIR_MISSING]);

export class StoreError extends AgentError {
  constructor(message: string, errno: string | undefined, cause?: unknown) {
    super(message, { code: `STORE_${errno ?? 'ERROR'}`, reason: 'write_failed', retryable: !NOT_RETRYABLE.has(errno ?? ''), cause });
  }
}

export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code : undefined;
}

/** An Error carrying an errno code, for faults the store finds itself (e.g. too little free space). */
export function errnoError(code: string, detail: string): Error {
  return Object.assign(new Error(`${code}: ${detail}`), { code, detail });
}

const ADVICE: Record<string, string> = {
  ENOSPC: 'the volume is full: raise the emptyDir sizeLimit or free space',
  EDQUOT: 'the volume quota is exhausted: raise the emptyDir sizeLimit',
  EACCES: 'permission denied: CERT_DIR must be writable by the agent (run as 1337 with fsGroup 1337)',
  EPERM: 'operation not permitted: CERT_DIR must be writable by the agent (run as 1337 with fsGroup 1337)',
  EROFS: 'the volume is read-only: mount CERT_DIR read-write in the agent container',
  ENOENT: 'CERT_DIR does not exist: mount the emptyDir there',
  [CERT_DIR_MISSING]: "mount the memory emptyDir istiod reads (ROOT_CA_DIR) there; the agent does not create CERT_DIR, so the key never lands on the container's own filesystem",
  ENOTDIR: 'CERT_DIR is not a directory: point it at the mounted emptyDir',
};

/** "while <doing> in <certDir>: <errno>[: detail] (<advice>)". A StoreError passes unchanged. */
export function storeError(doing: string, certDir: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const errno = errnoOf(err);
  const detail = (err as { detail?: unknown })?.detail;
  const advice = (errno && ADVICE[errno]) ?? 'check CERT_DIR';
  const what = errno ?? (err instanceof Error ? err.message : String(err));
  return new StoreError(`${doing} in ${certDir}: ${what}${typeof detail === 'string' ? `: ${detail}` : ''} (${advice})`, errno, err);
}

/** Refusal of an entry the agent did not make and will not remove (outside its own namespace). */
export function plantedError(doing: string, certDir: string, entry: string, what: string): StoreError {
  return new StoreError(
    `${doing} in ${certDir}: ${entry} is ${what}, which the agent did not make (remove it; check what else writes into CERT_DIR: only the agent should)`,
    PLANTED,
  );
}
