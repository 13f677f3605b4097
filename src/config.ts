/**
 * Settings: the DESIGN.md table, read from environment variables and `--kebab-case` flags (flags win),
 * validated once at start. Every problem becomes one line naming the setting and what is allowed; the
 * CLI prints them and exits 2. Nothing here touches process.env: the CLI passes the environment in.
 */
import * as z from 'zod/mini';
import { ConfigError } from './common/errors.js';
import { parseDuration } from './common/duration.js';

export const AUTH_METHODS = ['kubernetes', 'jwt', 'approle', 'token'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];
export const KEY_TYPES = ['rsa', 'ec'] as const;
export type KeyType = (typeof KEY_TYPES)[number];
export const KEY_SIZES: Record<KeyType, readonly number[]> = { rsa: [2048, 3072, 4096], ec: [256, 384] };
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `<mount>/root/sign-intermediate` or `<mount>/issuer/<ref>/sign-intermediate`. */
const SIGN_PATH = /^([A-Za-z0-9_.\-/]+?)\/(?:root|issuer\/([A-Za-z0-9_.-]+))\/sign-intermediate$/;

export interface Settings {
  vaultAddr: string | undefined;
  vaultCaCert: string | undefined;
  vaultNamespace: string | undefined;
  vaultToken: string | undefined;
  vaultSkipVerify: boolean;
  vaultClientTimeoutMs: number;
  vaultRedirectOrigins: string[];
  authMethod: AuthMethod;
  authMount: string;
  authRole: string | undefined;
  saTokenPath: string;
  approleRoleId: string | undefined;
  approleSecretIdFile: string | undefined;
  pkiSignPath: string;
  /** Mount of the signing issuer, derived from pkiSignPath (used to read the issuer's certificate). */
  pkiMount: string;
  /** Issuer reference from pkiSignPath, or "default" for `<mount>/root/sign-intermediate`. */
  pkiIssuerRef: string;
  certTtlMs: number;
  /** Undefined: one third of the granted lifetime. */
  renewBeforeMs: number | undefined;
  keyType: KeyType;
  keySize: number;
  clusterName: string | undefined;
  certCommonName: string;
  certOrganization: string;
  certDnsSans: string[];
  certDir: string;
  extraTrustRootsFile: string | undefined;
  minPublishIntervalMs: number;
  initTimeoutMs: number;
  metricsAddr: { host: string; port: number } | undefined;
  istiodMetricsUrl: string | undefined;
  istiodSyncTimeoutMs: number;
  rotateEndpoint: boolean;
  logLevel: LogLevel;
}

/** One row of the settings table: used for parsing, `--help`, and the README table test. */
export interface SettingSpec {
  env: string;
  default: string | undefined;
  help: string;
}

const DURATION_HINT = 'use 90s, 15m, 720h';

/** A value a parser refuses; `message` completes "<SETTING>: ". */
class Bad {
  constructor(readonly message: string) {}
}

/** A zod (mini) schema for one string setting, from a plain parser that returns a value or a Bad. */
function setting<T>(parse: (v: string) => T | Bad) {
  return z.pipe(
    z.string(),
    z.transform((v: string, ctx) => {
      const out = parse(v);
      if (!(out instanceof Bad)) return out;
      ctx.issues.push({ code: 'custom', message: out.message, input: v });
      return z.NEVER;
    }),
  );
}

function duration(name: string, { min = 0, max = Infinity, allowZero = false } = {}) {
  return setting((v) => {
    const ms = parseDuration(v);
    if (ms === undefined) return new Bad(`"${v}" is not a duration (${DURATION_HINT})`);
    if ((ms === 0 && !allowZero) || ms < min) return new Bad(`"${v}" is too short (${name} must be at least ${min / 1000}s)`);
    if (ms > max) return new Bad(`"${v}" is too long (${name} must be at most ${max / 1000}s)`);
    return ms;
  });
}

function oneOf<T extends string>(values: readonly T[]) {
  return setting((v) => {
    const lower = v.trim().toLowerCase();
    return (values as readonly string[]).includes(lower) ? (lower as T) : new Bad(`"${v}" is not one of ${values.join(', ')}`);
  });
}

const bool = setting((v) => {
  const lower = v.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(lower)) return true;
  if (['false', '0', 'no', ''].includes(lower)) return false;
  return new Bad(`"${v}" is not a boolean (use true or false)`);
});

const nonEmpty = setting((v) => (v.trim() === '' ? new Bad('must not be empty') : v.trim()));

const optional = z.optional(setting((v) => (v.trim() === '' ? undefined : v.trim())));

const httpUrl = setting((v) => {
  let url: URL;
  try {
    url = new URL(v.trim());
  } catch {
    return new Bad(`"${v}" is not a URL (use https://vault.example:8200)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return new Bad(`"${v}" must start with http:// or https://`);
  return url.toString().replace(/\/$/, '');
});

const listenAddr = setting((v) => {
  if (v.trim() === '') return undefined;
  const m = /^(.*):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) return new Bad(`"${v}" is not host:port (use :15099 or 127.0.0.1:15099)`);
  const host = (m[1] ?? '').replace(/^\[(.*)\]$/, '$1');
  return { host: host === '' ? '0.0.0.0' : host, port };
});

const origins = setting((v) => {
  const out: string[] = [];
  for (const item of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    let u: URL;
    try {
      u = new URL(item);
    } catch {
      return new Bad(`"${item}" is not a URL (use https://vault-1.example:8200)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return new Bad(`"${item}" must start with http:// or https://`);
    if (u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search) return new Bad(`"${item}" must be an origin only (scheme://host:port)`);
    out.push(u.origin);
  }
  return out;
});

const positiveInt = setting((v) => (/^\d+$/.test(v.trim()) ? Number(v.trim()) : new Bad(`"${v}" is not a whole number`)));

const signPath = setting((v) => {
  const path = v.trim().replace(/^\/+|\/+$/g, '').replace(/^v1\//, '');
  return SIGN_PATH.test(path) ? path : new Bad('must be <mount>/root/sign-intermediate or <mount>/issuer/<ref>/sign-intermediate');
});

const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

const dnsNames = setting((v) => {
  const names = v.split(',').map((s) => s.trim()).filter(Boolean);
  return names.every((n) => DNS_NAME.test(n)) ? names : new Bad('must be a comma-separated list of DNS names');
});

const httpUrlOrEmpty = setting((v) => {
  if (v.trim() === '') return undefined;
  try {
    const u = new URL(v.trim());
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.toString();
  } catch {
    /* reported below */
  }
  return new Bad(`"${v}" is not an http(s) URL (or empty to disable)`);
});

/** The settings table. Order is the order of `--help` and of the README table. */
export const SETTINGS: readonly SettingSpec[] = [
  { env: 'VAULT_ADDR', default: undefined, help: 'Vault/OpenBao address (required, except for `dev`)' },
  { env: 'VAULT_CACERT', default: undefined, help: "PEM file of the CA that signed Vault's TLS certificate (system roots if unset); re-read when it changes" },
  { env: 'VAULT_NAMESPACE', default: undefined, help: 'Vault Enterprise / OpenBao namespace, sent as X-Vault-Namespace' },
  { env: 'VAULT_TOKEN', default: undefined, help: 'Vault token, only for AUTH_METHOD=token; environment only (never a flag: it would show in the process list)' },
  { env: 'VAULT_SKIP_VERIFY', default: 'false', help: 'true disables TLS verification of Vault (never in production); only true/false/1/0 are accepted' },
  { env: 'VAULT_CLIENT_TIMEOUT', default: '30s', help: 'timeout of every Vault request (at most 10m)' },
  { env: 'VAULT_REDIRECT_ORIGINS', default: undefined, help: 'comma-separated origins (https://vault-1:8200,...) besides VAULT_ADDR\'s that a 307/308 from Vault may lead to, with the token and request: the nodes of an HA cluster whose standbys redirect instead of forwarding' },
  { env: 'AUTH_METHOD', default: 'kubernetes', help: '`kubernetes`, `jwt`, `approle` or `token`' },
  { env: 'AUTH_MOUNT', default: 'method name', help: 'mount path under `auth/`, e.g. `kube-cluster1-mesh-auth`' },
  { env: 'AUTH_ROLE', default: undefined, help: 'role to log in as (kubernetes, jwt)' },
  { env: 'SA_TOKEN_PATH', default: '/var/run/secrets/kubernetes.io/serviceaccount/token', help: 'JWT for kubernetes/jwt auth, re-read at every login' },
  { env: 'APPROLE_ROLE_ID', default: undefined, help: 'AppRole role_id' },
  { env: 'APPROLE_SECRET_ID_FILE', default: undefined, help: 'file holding the AppRole secret_id; re-read when it changes' },
  { env: 'PKI_SIGN_PATH', default: 'pki/root/sign-intermediate', help: 'signing endpoint: `<mount>/root/sign-intermediate` or `<mount>/issuer/<ref>/sign-intermediate`' },
  { env: 'CERT_TTL', default: '720h', help: 'requested lifetime of the intermediate (capped at the issuer\'s own expiry)' },
  { env: 'RENEW_BEFORE', default: 'one third of the lifetime', help: 'renew when this much lifetime remains; keep it above 24h plus a margin' },
  { env: 'KEY_TYPE', default: 'rsa', help: '`rsa` or `ec`' },
  { env: 'KEY_SIZE', default: '2048 (rsa), 256 (ec)', help: 'rsa: 2048, 3072, 4096; ec: 256, 384' },
  { env: 'CLUSTER_NAME', default: undefined, help: 'goes into the subject as `L=` so an intermediate says which cluster it serves' },
  { env: 'CERT_COMMON_NAME', default: 'Intermediate CA', help: 'subject CN' },
  { env: 'CERT_ORGANIZATION', default: 'Istio', help: 'subject O' },
  { env: 'CERT_DNS_SANS', default: 'istiod.istio-system.svc', help: 'comma-separated DNS SANs of the intermediate (empty for none)' },
  { env: 'CERT_DIR', default: '/etc/cacerts', help: 'where the four files go (a memory emptyDir; istiod\'s ROOT_CA_DIR)' },
  { env: 'EXTRA_TRUST_ROOTS_FILE', default: undefined, help: 'PEM file of extra trust anchors appended to root-cert.pem (e.g. an old root during a migration); re-read when it changes' },
  { env: 'MIN_PUBLISH_INTERVAL', default: '2s', help: 'minimum time between two publishes into CERT_DIR; istiod reloads 100 ms after the first event, so keep it at seconds (lower only for tests)' },
  { env: 'INIT_TIMEOUT', default: '5m', help: 'how long `init` keeps retrying retryable failures' },
  { env: 'METRICS_ADDR', default: ':15099', help: '`/metrics`, `/healthz`, `/readyz` listen address (empty disables)' },
  { env: 'ISTIOD_METRICS_URL', default: 'http://localhost:15014/metrics', help: "istiod's metrics, read after each publish to confirm istiod loaded it; empty disables" },
  { env: 'ISTIOD_SYNC_TIMEOUT', default: '60s', help: 'how long to wait for istiod to report the new intermediate' },
  { env: 'ROTATE_ENDPOINT', default: 'false', help: 'true enables `POST /rotate` on METRICS_ADDR' },
  { env: 'LOG_LEVEL', default: 'info', help: 'trace, debug, info, warn, error, fatal, silent' },
];

/** `CERT_TTL` -> `--cert-ttl`. */
export function flagName(env: string): string {
  return `--${env.toLowerCase().replace(/_/g, '-')}`;
}

const KNOWN = new Set(SETTINGS.map((s) => s.env));
/** Secrets: accepted from the environment only. */
const SECRET_SETTINGS = new Set(['VAULT_TOKEN']);
/** Settings where an empty value switches something off rather than selecting the default. */
const EMPTY_MEANS_OFF = new Set(['METRICS_ADDR', 'ISTIOD_METRICS_URL', 'CERT_DNS_SANS']);

/**
 * Overlays `--flag value` / `--flag=value` on top of the environment. Returns the merged source and
 * the remaining positional arguments. Unknown flags are configuration errors.
 */
export function mergeFlags(
  env: Readonly<Record<string, string | undefined>>,
  args: readonly string[],
): { source: Record<string, string | undefined>; positional: string[] } {
  const source: Record<string, string | undefined> = { ...env };
  const positional: string[] = [];
  const problems: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const name = flag.slice(2).toUpperCase().replace(/-/g, '_');
    if (!KNOWN.has(name)) {
      problems.push(`${flag}: unknown flag (see --help)`);
      continue;
    }
    if (SECRET_SETTINGS.has(name)) {
      // A command line is visible to every process on the node (ps, /proc/<pid>/cmdline) and in the pod spec.
      problems.push(`${flag}: not accepted on the command line (it would show in the process list); set ${name} in the environment`);
      if (eq === -1) i++;
      continue;
    }
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (i + 1 < args.length) value = args[++i];
    if (value === undefined) {
      problems.push(`${flag}: needs a value`);
      continue;
    }
    source[name] = value;
  }
  if (problems.length) throw new ConfigError(problems);
  return { source, positional };
}

const rawSchema = z.object({
  VAULT_ADDR: z.optional(httpUrl),
  VAULT_CACERT: optional,
  VAULT_NAMESPACE: optional,
  VAULT_TOKEN: optional,
  VAULT_SKIP_VERIFY: z._default(bool, false),
  // Bounded: a request timeout must stay far below timer limits (24.8 days) and below INIT_TIMEOUT.
  VAULT_CLIENT_TIMEOUT: z._default(duration('VAULT_CLIENT_TIMEOUT', { min: 100, max: 600_000 }), 30_000),
  VAULT_REDIRECT_ORIGINS: z._default(origins, []),
  AUTH_METHOD: z._default(oneOf(AUTH_METHODS), 'kubernetes'),
  AUTH_MOUNT: optional,
  AUTH_ROLE: optional,
  SA_TOKEN_PATH: z._default(nonEmpty, '/var/run/secrets/kubernetes.io/serviceaccount/token'),
  APPROLE_ROLE_ID: optional,
  APPROLE_SECRET_ID_FILE: optional,
  PKI_SIGN_PATH: z._default(signPath, 'pki/root/sign-intermediate'),
  CERT_TTL: z._default(duration('CERT_TTL', { min: 10_000 }), 720 * 3_600_000),
  RENEW_BEFORE: z.optional(duration('RENEW_BEFORE', { min: 1000 })),
  KEY_TYPE: z._default(oneOf(KEY_TYPES), 'rsa'),
  KEY_SIZE: z.optional(positiveInt),
  CLUSTER_NAME: optional,
  CERT_COMMON_NAME: z._default(nonEmpty, 'Intermediate CA'),
  CERT_ORGANIZATION: z._default(nonEmpty, 'Istio'),
  CERT_DNS_SANS: z.optional(dnsNames),
  CERT_DIR: z._default(nonEmpty, '/etc/cacerts'),
  EXTRA_TRUST_ROOTS_FILE: optional,
  MIN_PUBLISH_INTERVAL: z._default(duration('MIN_PUBLISH_INTERVAL', { allowZero: true }), 2000),
  INIT_TIMEOUT: z._default(duration('INIT_TIMEOUT', { min: 1000 }), 300_000),
  METRICS_ADDR: z.optional(listenAddr),
  ISTIOD_METRICS_URL: z.optional(httpUrlOrEmpty),
  ISTIOD_SYNC_TIMEOUT: z._default(duration('ISTIOD_SYNC_TIMEOUT', { min: 1000 }), 60_000),
  ROTATE_ENDPOINT: z._default(bool, false),
  LOG_LEVEL: z._default(oneOf(LOG_LEVELS), 'info'),
});

/** What a command needs beyond syntax: `init`/`sidecar`/`run` talk to Vault, `check` does not. */
export interface LoadOptions {
  needsVault: boolean;
}

/**
 * Parses and validates every setting. Throws ConfigError listing all problems, one line each,
 * each starting with the setting's name.
 */
export function loadSettings(source: Readonly<Record<string, string | undefined>>, opts: LoadOptions): Settings {
  const picked: Record<string, string> = {};
  for (const { env } of SETTINGS) {
    const v = source[env];
    // An empty value (common with ConfigMap templates) means "default", except where empty has a meaning.
    if (v !== undefined && (v.trim() !== '' || EMPTY_MEANS_OFF.has(env))) picked[env] = v;
  }
  // Each setting is parsed on its own so that every bad value is reported, not just the first.
  const problems: string[] = [];
  const parsed: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(rawSchema.shape)) {
    const res = z.safeParse(schema as z.ZodMiniType, picked[name]);
    if (res.success) parsed[name] = res.data;
    else problems.push(...res.error.issues.map((i) => `${name}: ${i.message}`));
  }
  const r = parsed as z.output<typeof rawSchema>;

  const keySize = r.KEY_SIZE ?? KEY_SIZES[r.KEY_TYPE ?? 'rsa'][0]!;
  if (r.KEY_TYPE !== undefined && !KEY_SIZES[r.KEY_TYPE].includes(keySize)) {
    problems.push(`KEY_SIZE: ${keySize} is not allowed for KEY_TYPE=${r.KEY_TYPE} (use ${KEY_SIZES[r.KEY_TYPE].join(' or ')})`);
  }
  if (r.RENEW_BEFORE !== undefined && r.CERT_TTL !== undefined && r.RENEW_BEFORE >= r.CERT_TTL) {
    problems.push(`RENEW_BEFORE: must be shorter than CERT_TTL (${source.RENEW_BEFORE} >= ${source.CERT_TTL ?? '720h'})`);
  }
  if (r.VAULT_CACERT !== undefined && r.VAULT_SKIP_VERIFY) {
    problems.push('VAULT_SKIP_VERIFY: true contradicts VAULT_CACERT (set only one)');
  }
  if (opts.needsVault) {
    if (picked.VAULT_ADDR === undefined) problems.push('VAULT_ADDR: required (e.g. https://vault.example:8200)');
    if ((r.AUTH_METHOD === 'kubernetes' || r.AUTH_METHOD === 'jwt') && r.AUTH_ROLE === undefined) {
      problems.push(`AUTH_ROLE: required for AUTH_METHOD=${r.AUTH_METHOD} (the Vault role bound to istiod's service account)`);
    }
    if (r.AUTH_METHOD === 'approle') {
      if (r.APPROLE_ROLE_ID === undefined) problems.push('APPROLE_ROLE_ID: required for AUTH_METHOD=approle');
      if (r.APPROLE_SECRET_ID_FILE === undefined) problems.push('APPROLE_SECRET_ID_FILE: required for AUTH_METHOD=approle');
    }
    if (r.AUTH_METHOD === 'token' && r.VAULT_TOKEN === undefined) {
      problems.push('VAULT_TOKEN: required for AUTH_METHOD=token');
    }
  }
  if (r.AUTH_MOUNT !== undefined && !/^[A-Za-z0-9_.\-/]+$/.test(r.AUTH_MOUNT)) {
    problems.push(`AUTH_MOUNT: "${r.AUTH_MOUNT}" is not a mount path (letters, digits, - _ . /)`);
  }
  if (problems.length) throw new ConfigError(problems);

  const sign = SIGN_PATH.exec(r.PKI_SIGN_PATH)!;
  return {
    vaultAddr: r.VAULT_ADDR,
    vaultCaCert: r.VAULT_CACERT,
    vaultNamespace: r.VAULT_NAMESPACE,
    vaultToken: r.VAULT_TOKEN,
    vaultSkipVerify: r.VAULT_SKIP_VERIFY,
    vaultClientTimeoutMs: r.VAULT_CLIENT_TIMEOUT,
    vaultRedirectOrigins: r.VAULT_REDIRECT_ORIGINS,
    authMethod: r.AUTH_METHOD,
    authMount: (r.AUTH_MOUNT ?? r.AUTH_METHOD).replace(/^\/+|\/+$/g, '').replace(/^auth\//, ''),
    authRole: r.AUTH_ROLE,
    saTokenPath: r.SA_TOKEN_PATH,
    approleRoleId: r.APPROLE_ROLE_ID,
    approleSecretIdFile: r.APPROLE_SECRET_ID_FILE,
    pkiSignPath: r.PKI_SIGN_PATH,
    pkiMount: sign[1]!,
    pkiIssuerRef: sign[2] ?? 'default',
    certTtlMs: r.CERT_TTL,
    renewBeforeMs: r.RENEW_BEFORE,
    keyType: r.KEY_TYPE,
    keySize,
    clusterName: r.CLUSTER_NAME,
    certCommonName: r.CERT_COMMON_NAME,
    certOrganization: r.CERT_ORGANIZATION,
    // zod's default() would also replace the `undefined` an empty value maps to, so these three
    // defaults apply only when the setting is absent.
    certDnsSans: picked.CERT_DNS_SANS === undefined ? ['istiod.istio-system.svc'] : r.CERT_DNS_SANS!,
    certDir: r.CERT_DIR,
    extraTrustRootsFile: r.EXTRA_TRUST_ROOTS_FILE,
    minPublishIntervalMs: r.MIN_PUBLISH_INTERVAL,
    initTimeoutMs: r.INIT_TIMEOUT,
    metricsAddr: picked.METRICS_ADDR === undefined ? { host: '0.0.0.0', port: 15099 } : r.METRICS_ADDR,
    istiodMetricsUrl: picked.ISTIOD_METRICS_URL === undefined ? 'http://localhost:15014/metrics' : r.ISTIOD_METRICS_URL,
    istiodSyncTimeoutMs: r.ISTIOD_SYNC_TIMEOUT,
    rotateEndpoint: r.ROTATE_ENDPOINT,
    logLevel: r.LOG_LEVEL,
  };
}
