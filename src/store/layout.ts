/**
 * The cert dir layout, the one kubelet uses for Secret volumes:
 *
 *   CERT_DIR/ca-cert.pem    -> ..data/ca-cert.pem        (fixed relative symlinks, made once)
 *   CERT_DIR/..data         -> .gen/<generation>          (replaced by one rename(2) per publish)
 *   CERT_DIR/.gen/<generation>/{ca-cert,ca-key,cert-chain,root-cert}.pem
 *
 * istiod watches CERT_DIR only (not subfolders) with fsnotify, so staging inside .gen/ is invisible to
 * it and each publish is exactly one event (the rename onto ..data), after which every visible name
 * resolves into one complete generation.
 *
 * Everything the agent makes there is one of these names; nothing else under CERT_DIR is followed:
 * `..data` is ours only when it is a symlink to `.gen/<generation name>` (see generationOfDataTarget),
 * a visible name only when it is the symlink `..data/<name>` (or a regular file in a dir without
 * `..data`). `.gen`, `..data_tmp`, `*.tmp` names and generation folders are the agent's own namespace:
 * whatever else is found there was planted or left by a crash, and is removed without being followed.
 */
export const DATA_LINK = '..data';
export const GEN_DIR = '.gen';
/** Temporary symlink, created inside GEN_DIR so its creation is not an event in CERT_DIR. */
export const DATA_TMP_LINK = '..data_tmp';
/** Suffix of the temporary entries under GEN_DIR (visible-name links before their rename, probes). */
export const TMP_SUFFIX = '.tmp';

export const KEY_MODE = 0o600;
export const CERT_MODE = 0o644;
export const DIR_MODE = 0o755;

/** Generation folder names sort by time: `20261125T164744123Z-0001`. */
export function generationName(now: number, seq: number): string {
  const stamp = new Date(now).toISOString().replace(/[-:.]/g, '');
  return `${stamp}-${String(seq % 10000).padStart(4, '0')}`;
}

export const GENERATION_PATTERN = /^\d{8}T\d{9}Z-\d{4}$/;

/** A temporary entry under GEN_DIR: never needed once the operation that made it has ended. */
export function isTempName(name: string): boolean {
  return name === DATA_TMP_LINK || name.endsWith(TMP_SUFFIX);
}

/** Creation time encoded in a generation name, or undefined for a name this agent did not make. */
export function generationTime(name: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z-\d{4}$/.exec(name);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, ms] = m.map(Number) as number[];
  return Date.UTC(y!, mo! - 1, d!, h!, mi!, s!, ms!);
}

/** Target string stored in ..data (relative, so the dir can be mounted anywhere). */
export function dataLinkTarget(gen: string): string {
  return `${GEN_DIR}/${gen}`;
}

/**
 * The generation a `..data` target names when the agent made it (exactly `.gen/<generation name>`),
 * else undefined: absolute paths, `..` and any other shape are not ours and are never followed.
 */
export function generationOfDataTarget(target: string): string | undefined {
  const prefix = `${GEN_DIR}/`;
  if (!target.startsWith(prefix)) return undefined;
  const gen = target.slice(prefix.length);
  return GENERATION_PATTERN.test(gen) ? gen : undefined;
}

/** Target string of a visible name's symlink: `ca-cert.pem -> ..data/ca-cert.pem`. */
export function visibleLinkTarget(name: string): string {
  return `${DATA_LINK}/${name}`;
}
