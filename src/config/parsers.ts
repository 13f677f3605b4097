/**
 * Value parsers for settings: each takes the raw string and returns the typed value or a Bad whose
 * message completes "<SETTING>: ". A row of the settings table names its parser; the default text of a
 * row goes through the same parser, so a default is written once, as a user would write it.
 */
import { parseDuration } from '../common/duration.js';

/**
 * A URL as it may appear in a message: a user:password in it is replaced, since the message goes to
 * stderr and into pod logs. Text that does not parse as a URL is shown up to its first '@' only.
 */
export function shownUrl(v: string): string {
  try {
    const u = new URL(v.trim());
    if (u.username || u.password) {
      u.username = '';
      u.password = '';
      return u.toString().replace(/^([a-z]+:\/\/)/i, '$1<user:password>@').replace(/\/$/, '');
    }
    return v;
  } catch {
    const at = v.lastIndexOf('@');
    if (at === -1) return v;
    const scheme = v.indexOf('//');
    const start = scheme !== -1 && scheme < at ? scheme + 2 : 0;
    return `${v.slice(0, start)}<hidden>@${v.slice(at + 1)}`;
  }
}

/** A value a parser refuses; `message` completes "<SETTING>: ". */
export class Bad {
  constructor(readonly message: string) {}
}

export type Parser<T> = (raw: string, env: string) => T | Bad;

const DURATION_HINT = 'use 90s, 15m, 720h';

export function duration({ min = 0, max = Infinity, allowZero = false } = {}): Parser<number> {
  return (v, env) => {
    const ms = parseDuration(v);
    if (ms === undefined) return new Bad(`"${v}" is not a duration (${DURATION_HINT})`);
    if ((ms === 0 && !allowZero) || ms < min) return new Bad(`"${v}" is too short (${env} must be at least ${min / 1000}s)`);
    if (ms > max) return new Bad(`"${v}" is too long (${env} must be at most ${max / 1000}s)`);
    return ms;
  };
}

export function oneOf<T extends string>(values: readonly T[]): Parser<T> {
  return (v) => {
    const lower = v.trim().toLowerCase();
    return (values as readonly string[]).includes(lower) ? (lower as T) : new Bad(`"${v}" is not one of ${values.join(', ')}`);
  };
}

export const BOOL_WORDS = { true: ['true', '1', 'yes'], false: ['false', '0', 'no'] } as const;

export const bool: Parser<boolean> = (v) => {
  const lower = v.trim().toLowerCase();
  if ((BOOL_WORDS.true as readonly string[]).includes(lower)) return true;
  if ((BOOL_WORDS.false as readonly string[]).includes(lower) || lower === '') return false;
  return new Bad(`"${v}" is not a boolean (use true or false)`);
};

export const text: Parser<string> = (v) => (v.trim() === '' ? new Bad('must not be empty') : v.trim());

/** An absolute path (a relative one would depend on the container's working directory). */
export const absolutePath: Parser<string> = (v) => {
  const p = v.trim();
  if (p === '') return new Bad('must not be empty');
  return p.startsWith('/') ? p : new Bad(`"${p}" is a relative path; use an absolute one (e.g. /etc/cacerts)`);
};

export const httpUrl: Parser<string> = (v) => {
  let url: URL;
  try {
    url = new URL(v.trim());
  } catch {
    return new Bad(`"${shownUrl(v)}" is not a URL (use https://vault.example:8200)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return new Bad(`"${shownUrl(v)}" must start with http:// or https://`);
  return url.toString().replace(/\/$/, '');
};

/**
 * One Vault address, or several separated by commas (the nodes of an HA cluster, tried in turn when one
 * does not answer). One scheme for all: a list must not mix TLS and plain HTTP.
 */
export const httpUrls: Parser<string[]> = (v, env) => {
  const out: string[] = [];
  for (const item of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    const u = httpUrl(item, env);
    if (u instanceof Bad) return u;
    out.push(u);
  }
  if (out.length === 0) return new Bad('must not be empty');
  if (new Set(out.map((u) => new URL(u).protocol)).size > 1) return new Bad('mixes https:// and http:// addresses; use one scheme for every node');
  return out;
};

/** An http(s) URL, or empty to switch the feature off. */
export const httpUrlOrOff: Parser<string | undefined> = (v) => {
  if (v.trim() === '') return undefined;
  try {
    const u = new URL(v.trim());
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.toString();
  } catch {
    /* reported below */
  }
  return new Bad(`"${shownUrl(v)}" is not an http(s) URL (or empty to disable)`);
};

/** Comma-separated origins (scheme://host:port), nothing else. */
export const origins: Parser<string[]> = (v) => {
  const out: string[] = [];
  for (const item of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    let u: URL;
    try {
      u = new URL(item);
    } catch {
      return new Bad(`"${shownUrl(item)}" is not a URL (use https://vault-1.example:8200)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return new Bad(`"${shownUrl(item)}" must start with http:// or https://`);
    if (u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search) return new Bad(`"${shownUrl(item)}" must be an origin only (scheme://host:port)`);
    out.push(u.origin);
  }
  return out;
};

/** host:port to listen on, or empty to switch the listener off. */
export const listenAddr: Parser<{ host: string; port: number } | undefined> = (v) => {
  if (v.trim() === '') return undefined;
  const m = /^(.*):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) return new Bad(`"${v}" is not host:port (use :15099 or 127.0.0.1:15099)`);
  const host = (m[1] ?? '').replace(/^\[(.*)\]$/, '$1');
  return { host: host === '' ? '0.0.0.0' : host, port };
};

export const wholeNumber: Parser<number> = (v) => (/^\d+$/.test(v.trim()) ? Number(v.trim()) : new Bad(`"${v}" is not a whole number`));

const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

export const dnsNames: Parser<string[]> = (v) => {
  const names = v.split(',').map((s) => s.trim()).filter(Boolean);
  return names.every((n) => DNS_NAME.test(n)) ? names : new Bad('must be a comma-separated list of DNS names');
};

/** A Vault mount path under auth/ or a secrets mount: letters, digits, - _ . / */
export const mountPath: Parser<string> = (v) => {
  const p = v.trim().replace(/^\/+|\/+$/g, '').replace(/^auth\//, '');
  return /^[A-Za-z0-9_.\-/]+$/.test(p) ? p : new Bad(`"${v}" is not a mount path (letters, digits, - _ . /)`);
};
