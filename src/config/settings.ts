/**
 * Settings: one row per setting (environment variable, flag, default, help, parser), from which the
 * parser, `--help`, the documentation table and the Settings type are all derived. A default is the
 * text a user would write ("720h"), parsed by the row's own parser, so it is written once. Read from
 * environment variables and `--kebab-case` flags (flags win), validated once at start; every problem is
 * one line naming the setting, and the CLI exits 2. Nothing here touches process.env.
 */
import { ConfigError } from '../common/errors.js';
import { BUNDLE_SOURCES, kvSecretPath, resolveBundlePaths, vaultRef, type BundleFile, type BundlePaths } from './bundle-paths.js';
import {
  Bad, absolutePath, bool, dnsNames, duration, httpUrls, httpUrlOrOff, listenAddr, mountPath, oneOf, origins, text, wholeNumber,
  type Parser,
} from './parsers.js';

export const AUTH_METHODS = ['kubernetes', 'jwt', 'approle', 'token'] as const;
export const KEY_TYPES = ['rsa', 'ec'] as const;
export type KeyType = (typeof KEY_TYPES)[number];
export const KEY_SIZES: Record<KeyType, readonly number[]> = { rsa: [2048, 3072, 4096], ec: [256, 384] };
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const LOG_FORMATS = ['json', 'pretty'] as const;
export const ROOT_ROTATION_MODES = ['auto', 'hold', 'off'] as const;

/** `<mount>/root/sign-intermediate` or `<mount>/issuer/<ref>/sign-intermediate`. */
const SIGN_PATH = /^([A-Za-z0-9_.\-/]+?)\/(?:root|issuer\/([A-Za-z0-9_.-]+))\/sign-intermediate$/;

const signPath: Parser<string> = (v) => {
  const path = v.trim().replace(/^\/+|\/+$/g, '').replace(/^v1\//, '');
  return SIGN_PATH.test(path) ? path : new Bad('must be <mount>/root/sign-intermediate or <mount>/issuer/<ref>/sign-intermediate');
};

/** Optional free text: empty is "not set". */
const optionalText: Parser<string | undefined> = (v) => (v.trim() === '' ? undefined : v.trim());

/** One row of the settings table. */
export interface SettingRow<K extends string = string, T = unknown> {
  env: string;
  /** Field of Settings this row fills. */
  key: K;
  /** The default as a user would write it; parsed by `parse`. */
  default: string | undefined;
  /** For documentation when the default is not a literal value ("a third of the lifetime"). */
  defaultText?: string;
  help: string;
  parse: Parser<T>;
  /** An empty value switches something off (it is parsed) instead of meaning "the default". */
  emptyMeansOff?: boolean;
  /** Accepted from the environment only: a command line shows in the process list and the pod spec. */
  secret?: boolean;
}

interface RowSpec<K extends string, T> extends Omit<SettingRow<K, T>, 'default'> {
  default?: string;
}

function row<const K extends string, T>(r: RowSpec<K, T> & { default: string }): SettingRow<K, T>;
function row<const K extends string, T>(r: RowSpec<K, T> & { default?: undefined }): SettingRow<K, T | undefined>;
function row<const K extends string, T>(r: RowSpec<K, T>): SettingRow<K, T | undefined> {
  return { ...r, default: r.default };
}

/** The settings table. Order is the order of `--help` and of docs/configuration.md. */
export const SETTINGS = [
  row({ env: 'VAULT_ADDR', key: 'vaultAddrs', parse: httpUrls, help: 'Vault/OpenBao address (required, except for `dev`): a load-balanced address, or the nodes of an HA cluster separated by commas (tried in turn when one does not answer)' }),
  row({ env: 'VAULT_CACERT', key: 'vaultCaCert', parse: optionalText, defaultText: 'system roots', help: "PEM file of the CA that signed Vault's TLS certificate; re-read when it changes" }),
  row({ env: 'VAULT_NAMESPACE', key: 'vaultNamespace', parse: optionalText, help: 'Vault Enterprise / OpenBao namespace, sent as X-Vault-Namespace' }),
  row({ env: 'VAULT_TOKEN', key: 'vaultToken', parse: optionalText, secret: true, help: 'Vault token, only for AUTH_METHOD=token; environment only (never a flag: it would show in the process list)' }),
  row({ env: 'VAULT_SKIP_VERIFY', key: 'vaultSkipVerify', parse: bool, default: 'false', help: 'true disables TLS verification of Vault (never in production); true/false, yes/no or 1/0' }),
  row({ env: 'VAULT_CLIENT_TIMEOUT', key: 'vaultClientTimeoutMs', parse: duration({ min: 100, max: 600_000 }), default: '30s', help: 'timeout of every Vault request (at most 10m)' }),
  row({ env: 'VAULT_REDIRECT_ORIGINS', key: 'vaultRedirectOrigins', parse: origins, default: '', defaultText: 'none', help: "comma-separated origins (https://vault-1:8200,...) besides VAULT_ADDR's that a 307/308 from Vault may lead to, with the token and request: the nodes of an HA cluster whose standbys redirect instead of forwarding" }),
  row({ env: 'AUTH_METHOD', key: 'authMethod', parse: oneOf(AUTH_METHODS), default: 'kubernetes', help: '`kubernetes`, `jwt`, `approle` or `token`' }),
  row({ env: 'AUTH_MOUNT', key: 'authMountSetting', parse: mountPath, defaultText: 'the method name', help: 'mount path under `auth/`, e.g. `kube-cluster1-mesh-auth`' }),
  row({ env: 'AUTH_ROLE', key: 'authRole', parse: optionalText, help: 'role to log in as (kubernetes, jwt)' }),
  row({ env: 'SA_TOKEN_PATH', key: 'saTokenPath', parse: text, default: '/var/run/secrets/kubernetes.io/serviceaccount/token', help: 'JWT for kubernetes/jwt auth, re-read at every login' }),
  row({ env: 'APPROLE_ROLE_ID', key: 'approleRoleId', parse: optionalText, help: 'AppRole role_id' }),
  row({ env: 'APPROLE_SECRET_ID_FILE', key: 'approleSecretIdFile', parse: optionalText, help: 'file holding the AppRole secret_id; re-read when it changes' }),
  row({ env: 'BUNDLE_SOURCE', key: 'bundleSource', parse: oneOf(BUNDLE_SOURCES), default: 'pki-sign', help: 'where the bundle comes from: `pki-sign` (Vault PKI signs an intermediate whose key is made here, in memory), or a bundle stored in Vault and renewed elsewhere: `kv-bundle` (one KV secret, KV_BUNDLE_PATH), `tsb` (Tetrate TSB\'s layout), `vault-paths` (each file from its `*_FROM` setting); see docs/migrate/' }),
  row({ env: 'KV_BUNDLE_PATH', key: 'kvBundlePath', parse: kvSecretPath, help: 'BUNDLE_SOURCE=kv-bundle: the KV secret (v1 or v2, as for `vault kv get`) holding the fields ca_key, ca_cert, cert_chain and root_cert' }),
  row({ env: 'CA_KEY_FROM', key: 'caKeyFrom', parse: vaultRef, defaultText: 'from BUNDLE_SOURCE', help: 'where ca-key.pem comes from: `<vault path>#<field>` (a KV secret as for `vault kv get`); overrides the preset' }),
  row({ env: 'CA_CERT_FROM', key: 'caCertFrom', parse: vaultRef, defaultText: 'from BUNDLE_SOURCE', help: 'where ca-cert.pem comes from: `<kv path>#<field>`, or a PKI read such as `<mount>/cert/ca` or `<mount>/issuer/<ref>/json` (field `certificate`)' }),
  row({ env: 'CERT_CHAIN_FROM', key: 'certChainFrom', parse: vaultRef, defaultText: 'from BUNDLE_SOURCE', help: 'where cert-chain.pem comes from: `<kv path>#<field>`, `<mount>/cert/ca_chain`, or `<mount>/issuer/<ref>/json#ca_chain` (a list, joined); re-ordered by signature, root last' }),
  row({ env: 'ROOT_CERT_FROM', key: 'rootCertFrom', parse: vaultRef, defaultText: 'from BUNDLE_SOURCE', help: 'where root-cert.pem comes from: `<kv path>#<field>` or a PKI read such as `pki/cert/ca`; its bytes are kept while the root stays the same' }),
  row({ env: 'BUNDLE_POLL_INTERVAL', key: 'bundlePollIntervalMs', parse: duration({ min: 1000 }), default: '60s', help: 'how often a bundle stored in Vault is checked for changes (KV v2: its version only; else the content), jittered up to 10% earlier' }),
  row({ env: 'PKI_SIGN_PATH', key: 'pkiSignPath', parse: signPath, default: 'pki/root/sign-intermediate', help: 'signing endpoint: `<mount>/root/sign-intermediate` or `<mount>/issuer/<ref>/sign-intermediate`' }),
  row({ env: 'CERT_TTL', key: 'certTtlMs', parse: duration({ min: 10_000 }), default: '720h', help: "requested lifetime of the intermediate (capped at the issuer's own expiry)" }),
  row({ env: 'RENEW_BEFORE', key: 'renewBeforeMs', parse: duration({ min: 1000 }), defaultText: 'a third of the lifetime', help: 'renew when this much lifetime remains; keep it above 24h plus a margin' }),
  row({ env: 'KEY_TYPE', key: 'keyType', parse: oneOf(KEY_TYPES), default: 'rsa', help: '`rsa` or `ec`' }),
  row({ env: 'KEY_SIZE', key: 'keySizeSetting', parse: wholeNumber, defaultText: '2048 (rsa), 256 (ec)', help: 'rsa: 2048, 3072, 4096; ec: 256, 384' }),
  row({ env: 'CLUSTER_NAME', key: 'clusterName', parse: optionalText, help: 'goes into the subject as `L=` so an intermediate says which cluster it serves' }),
  row({ env: 'CERT_COMMON_NAME', key: 'certCommonName', parse: text, default: 'Intermediate CA', help: 'subject CN' }),
  row({ env: 'CERT_ORGANIZATION', key: 'certOrganization', parse: text, default: 'Istio', help: 'subject O' }),
  row({ env: 'CERT_DNS_SANS', key: 'certDnsSans', parse: dnsNames, default: 'istiod.istio-system.svc', emptyMeansOff: true, help: 'comma-separated DNS SANs of the intermediate (empty for none)' }),
  row({ env: 'CERT_DIR', key: 'certDir', parse: absolutePath, default: '/etc/cacerts', help: "where the four files go (a memory emptyDir; istiod's ROOT_CA_DIR); an absolute path" }),
  row({ env: 'ROOT_ROTATION', key: 'rootRotation', parse: oneOf(ROOT_ROTATION_MODES), default: 'auto', help: "`auto`: follow a root rotation in Vault's PKI issuers (add the new root, switch after ROOT_SWITCH_SOAK, remove the old root after ROOT_REMOVE_AFTER); `hold`: keep root-cert.pem and the signing root as they are; `off`: refuse any root change (the agent before root rotation)" }),
  row({ env: 'ISTIO_MULTIROOT_MESH', key: 'istioMultiRootMesh', parse: bool, default: 'false', help: "set it as istiod's (true when istiod runs with ISTIO_MULTIROOT_MESH=true): then root changes are published live; otherwise only when istiod (re)starts, and the agent says when a rolling restart is due" }),
  row({ env: 'ROOT_SWITCH_SOAK', key: 'rootSwitchSoakMs', parse: duration({ min: 1000 }), default: '25h', help: "how long a new root is trusted before it signs, counted from the root's notBefore (proxies must hold it first; workload certificates, and with them trust bundles, renew within 24h by default); see docs/root-rotation.md" }),
  row({ env: 'ROOT_REMOVE_AFTER', key: 'rootRemoveAfterMs', parse: duration({ min: 1000 }), default: '25h', help: "how long after the switch the old root stays trusted (workload certificates the old intermediate signed live 24h by default); the switch is dated by the end of the soak or the new intermediate's notBefore, whichever is later" }),
  row({ env: 'ISSUER_POLL_INTERVAL', key: 'issuerPollIntervalMs', parse: duration({ min: 1000 }), default: '5m', help: "how often Vault's PKI issuers are checked for a root rotation: one unauthenticated LIST (each issuer's certificate is read again only when the list changes)" }),
  row({ env: 'EXTRA_TRUST_ROOTS_FILE', key: 'extraTrustRootsFile', parse: optionalText, help: 'PEM file of extra trust anchors appended to root-cert.pem (e.g. an old root during a migration); re-read when it changes' }),
  row({ env: 'MIN_PUBLISH_INTERVAL', key: 'minPublishIntervalMs', parse: duration({ allowZero: true }), default: '2s', help: 'minimum time between two publishes into CERT_DIR; istiod reloads 100 ms after the first event, so keep it at seconds (lower only for tests)' }),
  row({ env: 'INIT_TIMEOUT', key: 'initTimeoutMs', parse: duration({ min: 1000 }), default: '5m', help: 'how long `init` keeps retrying retryable failures' }),
  row({ env: 'METRICS_ADDR', key: 'metricsAddr', parse: listenAddr, default: ':15099', emptyMeansOff: true, help: '`/metrics`, `/healthz`, `/readyz` listen address (empty disables)' }),
  row({ env: 'ISTIOD_METRICS_URL', key: 'istiodMetricsUrl', parse: httpUrlOrOff, default: 'http://localhost:15014/metrics', emptyMeansOff: true, help: "istiod's metrics, read after each publish to confirm istiod loaded it, and at a root switch for istiod's release (>= 1.30 compares root bundles as sets); empty disables both" }),
  row({ env: 'ISTIOD_SYNC_TIMEOUT', key: 'istiodSyncTimeoutMs', parse: duration({ min: 1000 }), default: '60s', help: 'how long to wait for istiod to report the new intermediate' }),
  row({ env: 'ROTATE_ENDPOINT', key: 'rotateEndpoint', parse: bool, default: 'false', help: 'true enables `POST /rotate` on METRICS_ADDR' }),
  row({ env: 'LOG_LEVEL', key: 'logLevel', parse: oneOf(LOG_LEVELS), default: 'info', help: 'trace, debug, info, warn, error, fatal, silent' }),
  row({ env: 'LOG_FORMAT', key: 'logFormat', parse: oneOf(LOG_FORMATS), default: 'json', help: '`json` (one object per line, for log pipelines) or `pretty` (for a terminal; `dev` picks it when stdout is one)' }),
] as const;

type Rows = (typeof SETTINGS)[number];
/** The parsed table, field by field, as the rows declare them. */
export type ParsedSettings = { [R in Rows as R['key']]: R extends SettingRow<string, infer T> ? T : never };

/** What the agent runs with: the parsed rows, minus the raw ones that are refined, plus derived facts. */
export type Settings = Omit<ParsedSettings, 'authMountSetting' | 'keySizeSetting'> & {
  /** AUTH_MOUNT, or the method name. */
  authMount: string;
  /** KEY_SIZE, or the smallest size allowed for KEY_TYPE. */
  keySize: number;
  /** Mount of the signing issuer, derived from pkiSignPath (used to read the issuer's certificate). */
  pkiMount: string;
  /** Issuer reference from pkiSignPath, or "default" for `<mount>/root/sign-intermediate`. */
  pkiIssuerRef: string;
  /** Where the four files come from, when BUNDLE_SOURCE is not `pki-sign`. */
  bundlePaths: BundlePaths | undefined;
};

/** `CERT_TTL` -> `--cert-ttl`. */
export function flagName(env: string): string {
  return `--${env.toLowerCase().replace(/_/g, '-')}`;
}

/** What a command needs beyond syntax. */
export interface LoadOptions {
  /** `init`/`sidecar`/`run` talk to Vault; `check` does not. */
  needsVault: boolean;
}

/**
 * Parses and validates every setting. Throws ConfigError listing all problems, one line each,
 * each starting with the setting's name.
 */
export function loadSettings(source: Readonly<Record<string, string | undefined>>, opts: LoadOptions): Settings {
  const problems: string[] = [];
  const parsed: Record<string, unknown> = {};
  // Each setting is parsed on its own so that every bad value is reported, not just the first.
  for (const r of SETTINGS as readonly SettingRow[]) {
    const given = source[r.env];
    // An empty value (common with ConfigMap templates) means "default", except where empty has a meaning.
    const raw = given !== undefined && (given.trim() !== '' || r.emptyMeansOff) ? given : r.default;
    if (raw === undefined) {
      parsed[r.key] = undefined;
      continue;
    }
    const out = r.parse(raw, r.env);
    if (out instanceof Bad) problems.push(`${r.env}: ${out.message}`);
    else parsed[r.key] = out;
  }
  const p = parsed as ParsedSettings;

  const keySize = p.keySizeSetting ?? KEY_SIZES[p.keyType ?? 'rsa'][0]!;
  if (p.keyType !== undefined && !KEY_SIZES[p.keyType].includes(keySize)) {
    problems.push(`KEY_SIZE: ${keySize} is not allowed for KEY_TYPE=${p.keyType} (use ${KEY_SIZES[p.keyType].join(' or ')})`);
  }
  if (p.renewBeforeMs !== undefined && p.certTtlMs !== undefined && p.renewBeforeMs >= p.certTtlMs) {
    problems.push(`RENEW_BEFORE: must be shorter than CERT_TTL (${source.RENEW_BEFORE} >= ${source.CERT_TTL || SETTINGS.find((s) => s.env === 'CERT_TTL')!.default})`);
  }
  if (p.vaultCaCert !== undefined && p.vaultSkipVerify) {
    problems.push('VAULT_SKIP_VERIFY: true contradicts VAULT_CACERT (set only one)');
  }
  let bundlePaths: BundlePaths | undefined;
  const explicit: Partial<Record<BundleFile, { path: string; field: string | undefined }>> = {
    ...(p.caKeyFrom && { caKey: p.caKeyFrom }),
    ...(p.caCertFrom && { caCert: p.caCertFrom }),
    ...(p.certChainFrom && { certChain: p.certChainFrom }),
    ...(p.rootCertFrom && { rootCert: p.rootCertFrom }),
  };
  if (p.bundleSource === 'pki-sign') {
    // Silently ignoring them would leave an operator believing the agent reads their bundle.
    for (const [env, given] of [['KV_BUNDLE_PATH', p.kvBundlePath], ['CA_KEY_FROM', p.caKeyFrom], ['CA_CERT_FROM', p.caCertFrom], ['CERT_CHAIN_FROM', p.certChainFrom], ['ROOT_CERT_FROM', p.rootCertFrom]] as const) {
      if (given !== undefined) problems.push(`${env}: only used when the bundle is stored in Vault (BUNDLE_SOURCE=kv-bundle, tsb or vault-paths); BUNDLE_SOURCE is pki-sign`);
    }
  } else if (p.bundleSource !== undefined) {
    if (p.kvBundlePath !== undefined && p.bundleSource !== 'kv-bundle') problems.push(`KV_BUNDLE_PATH: only used with BUNDLE_SOURCE=kv-bundle (BUNDLE_SOURCE is ${p.bundleSource})`);
    const r = resolveBundlePaths(p.bundleSource, p.kvBundlePath, explicit);
    // A value that did not parse was reported already; "required" on top of it would say it twice.
    if (Array.isArray(r)) problems.push(...r.filter((line) => !problems.some((x) => x.startsWith(line.slice(0, line.indexOf(':') + 1)))));
    else bundlePaths = r;
  }
  if (opts.needsVault) {
    if (p.vaultAddrs === undefined && !problems.some((x) => x.startsWith('VAULT_ADDR:'))) problems.push('VAULT_ADDR: required (e.g. https://vault.example:8200)');
    if ((p.authMethod === 'kubernetes' || p.authMethod === 'jwt') && p.authRole === undefined) {
      problems.push(`AUTH_ROLE: required for AUTH_METHOD=${p.authMethod} (the Vault role bound to istiod's service account)`);
    }
    if (p.authMethod === 'approle') {
      if (p.approleRoleId === undefined) problems.push('APPROLE_ROLE_ID: required for AUTH_METHOD=approle');
      if (p.approleSecretIdFile === undefined) problems.push('APPROLE_SECRET_ID_FILE: required for AUTH_METHOD=approle');
    }
    if (p.authMethod === 'token' && p.vaultToken === undefined) {
      problems.push('VAULT_TOKEN: required for AUTH_METHOD=token');
    }
  }
  if (problems.length) throw new ConfigError(problems);

  const sign = SIGN_PATH.exec(p.pkiSignPath)!;
  const { authMountSetting, keySizeSetting: _k, ...rest } = p;
  return {
    ...rest,
    authMount: authMountSetting ?? p.authMethod,
    keySize,
    pkiMount: sign[1]!,
    pkiIssuerRef: sign[2] ?? 'default',
    bundlePaths,
  };
}
