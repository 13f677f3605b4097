/**
 * Evidence (issue 6, item 4): bad settings and bad inputs, through the real binary.
 *
 * Settings: a table of bad values keyed by every row of SETTINGS (src/config/settings.ts). A setting
 * added there without a row here fails the coverage test. A bad value must end the process with exit 2
 * and exactly one stderr line per problem, starting with the setting's name; nothing may appear in
 * CERT_DIR (an empty directory, made as the pod's emptyDir would be: the agent does not create it).
 * Free-form settings (a namespace, a token, a subject attribute) have no syntax to reject: their rows
 * probe a hostile or wrong value against a real OpenBao and state what must happen.
 *
 * Runtime inputs: a missing/empty/unreadable service-account token (bad configuration found at start:
 * exit 2), a VAULT_ADDR host that does not resolve or a port nobody listens on (retryable: exit 1 at
 * INIT_TIMEOUT naming the address), a CERT_DIR that is missing, a file, not writable for uid 1337
 * (setpriv) or on a full tmpfs, with and without a previous bundle. Whatever can be found without
 * Vault must be found before any Vault call: those cases point VAULT_ADDR at a sentinel that counts
 * connections, and it must count none. Runtime failures exit 1 with one clear `init failed` line
 * (`init failed: ...` after retrying until INIT_TIMEOUT, `init failed (not retried: ...)` when a retry
 * cannot help), and leave nothing half-written: no file or folder in CERT_DIR that was not there
 * before (not even an empty `.gen/`: bug 4 of agent-bugs.test.ts), or only the complete previous
 * generation, byte-identical.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKOFF_BASE_MS, NOTHING_VALID_CAP_MS } from '../../src/agent/backoff.js';
import { SETTINGS } from '../../src/config/settings.js';
import { freePort } from '../../src/dev/dev-server.js';
import { x509 } from '../../src/pki/x509.js';
import { BUNDLE, cleanEnv, runAgent, type AgentRun } from '../helpers/agent-process.js';
import { IN_CI } from '../helpers/tools.js';
import { useOpenBao } from '../helpers/openbao.js';
import { judgeDir, sameSnapshot, snapshot } from './support/cert-dir.js';
import { AFTER_SEED, DUE_SEED } from './support/lifetimes.js';
import { makeLabRoot, mint } from './support/pki-lab.js';
import { publishEvidence, table } from './support/report.js';

const bao = useOpenBao();
let work: string;
const files: Record<string, string> = {};

type Expect =
  | { exit: 2; lines: RegExp[] }
  | { exit: 1; error: RegExp }
  | { exit: 0; check: (dir: string, run: AgentRun) => Promise<void> };

interface Case {
  value: string;
  /** Settings for this case; `undefined` removes a base setting. Values may name files: `@token`. */
  env: Record<string, string | undefined>;
  /** Needs the real OpenBao (runtime probes). */
  vault?: boolean;
  /** Must be found before any Vault call: VAULT_ADDR is a sentinel that must see no connection. */
  beforeVault?: boolean;
  args?: string[];
  expect: Expect;
}

/** The final line of a failed `init`: after retrying until INIT_TIMEOUT, or at once when a retry cannot help. */
const GAVE_UP = 'init failed: giving up after INIT_TIMEOUT';
const NOT_RETRIED = 'init failed (not retried: a retry cannot fix this): ';
const isFinal = (l: { msg?: unknown }) => /^(init failed[: ]|failed: )/.test(String(l.msg));
const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A TCP listener standing in for Vault that counts connections (and answers none). */
async function startSentinel(): Promise<{ url: string; connections: () => number; close: () => void }> {
  let n = 0;
  const server = net.createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, connections: () => n, close: () => server.close() };
}

const DUR = (n: string, v: string) => new RegExp(`^${n}: "${v}" is not a duration \\(use 90s, 15m, 720h\\)$`);
const SHORT = (n: string, v: string) => new RegExp(`^${n}: "${v}" is too short \\(${n} must be at least [\\d.]+s\\)$`);
const ONE_OF = (n: string, v: string) => new RegExp(`^${n}: "${v}" is not one of `);
const BOOL = (n: string, v: string) => new RegExp(`^${n}: "${v}" is not a boolean \\(use true or false\\)$`);
const SA_UNREADABLE = (pathRe: string, why: string) => new RegExp(`^SA_TOKEN_PATH: cannot read ${pathRe} \\(${why}\\); check the projected service-account token volume$`);

/** One or more bad values for every setting. */
const BAD: Record<string, Case[]> = {
  VAULT_ADDR: [
    { value: 'vault.example:8200 (no scheme)', env: { VAULT_ADDR: 'vault.example:8200' }, expect: { exit: 2, lines: [/^VAULT_ADDR: "vault.example:8200" must start with http:\/\/ or https:\/\/$/] } },
    { value: '127.0.0.1:8200 (no scheme)', env: { VAULT_ADDR: '127.0.0.1:8200' }, expect: { exit: 2, lines: [/^VAULT_ADDR: "127.0.0.1:8200" is not a URL/] } },
    { value: 'ftp://vault:8200', env: { VAULT_ADDR: 'ftp://vault:8200' }, expect: { exit: 2, lines: [/^VAULT_ADDR: "ftp:\/\/vault:8200" must start with http/] } },
    { value: '(unset)', env: { VAULT_ADDR: undefined }, expect: { exit: 2, lines: [/^VAULT_ADDR: required/] } },
  ],
  VAULT_CACERT: [{ value: 'a file that does not exist', env: { VAULT_CACERT: '/nonexistent/vault-ca.pem' }, expect: { exit: 2, lines: [/^VAULT_CACERT: cannot read \/nonexistent\/vault-ca\.pem/] } }],
  VAULT_NAMESPACE: [{ value: 'free-form; a namespace OpenBao does not have', vault: true, env: { VAULT_NAMESPACE: 'no-such-namespace' }, expect: { exit: 1, error: new RegExp(`^${esc(NOT_RETRIED)}.*namespace not found.*\\(check VAULT_NAMESPACE\\)`) } }],
  VAULT_TOKEN: [
    { value: 'unset with AUTH_METHOD=token', env: { AUTH_METHOD: 'token' }, expect: { exit: 2, lines: [/^VAULT_TOKEN: required for AUTH_METHOD=token$/] } },
    { value: 'free-form; a token OpenBao never issued', vault: true, env: { AUTH_METHOD: 'token', VAULT_TOKEN: 'hvs.not-a-real-token' }, expect: { exit: 1, error: new RegExp(`^${esc(NOT_RETRIED)}.*VAULT_TOKEN is invalid, expired or revoked`) } },
  ],
  VAULT_SKIP_VERIFY: [
    { value: 'maybe', env: { VAULT_SKIP_VERIFY: 'maybe' }, expect: { exit: 2, lines: [BOOL('VAULT_SKIP_VERIFY', 'maybe')] } },
    { value: 'true together with VAULT_CACERT', env: { VAULT_SKIP_VERIFY: 'true', VAULT_CACERT: '@token' }, expect: { exit: 2, lines: [/^VAULT_SKIP_VERIFY: true contradicts VAULT_CACERT/] } },
  ],
  VAULT_CLIENT_TIMEOUT: [
    { value: '30 (no unit)', env: { VAULT_CLIENT_TIMEOUT: '30' }, expect: { exit: 2, lines: [DUR('VAULT_CLIENT_TIMEOUT', '30')] } },
    { value: '50ms', env: { VAULT_CLIENT_TIMEOUT: '50ms' }, expect: { exit: 2, lines: [SHORT('VAULT_CLIENT_TIMEOUT', '50ms')] } },
    { value: '-1s', env: { VAULT_CLIENT_TIMEOUT: '-1s' }, expect: { exit: 2, lines: [DUR('VAULT_CLIENT_TIMEOUT', '-1s')] } },
  ],
  VAULT_REDIRECT_ORIGINS: [
    { value: 'https://vault-1.example:8200/v1 (a path, not an origin)', env: { VAULT_REDIRECT_ORIGINS: 'https://vault-1.example:8200/v1' }, expect: { exit: 2, lines: [/^VAULT_REDIRECT_ORIGINS: "https:\/\/vault-1\.example:8200\/v1" must be an origin only \(scheme:\/\/host:port\)$/] } },
    { value: 'https://vault-1:8200,ftp://vault-2:8200', env: { VAULT_REDIRECT_ORIGINS: 'https://vault-1:8200,ftp://vault-2:8200' }, expect: { exit: 2, lines: [/^VAULT_REDIRECT_ORIGINS: "ftp:\/\/vault-2:8200" must start with http:\/\/ or https:\/\/$/] } },
    { value: 'vault-1 vault-2 (not URLs)', env: { VAULT_REDIRECT_ORIGINS: 'vault-1 vault-2' }, expect: { exit: 2, lines: [/^VAULT_REDIRECT_ORIGINS: "vault-1 vault-2" is not a URL/] } },
  ],
  AUTH_METHOD: [{ value: 'ldap', env: { AUTH_METHOD: 'ldap' }, expect: { exit: 2, lines: [ONE_OF('AUTH_METHOD', 'ldap')] } }],
  AUTH_MOUNT: [{ value: 'kube mesh?auth', env: { AUTH_MOUNT: 'kube mesh?auth' }, expect: { exit: 2, lines: [/^AUTH_MOUNT: "kube mesh\?auth" is not a mount path/] } }],
  AUTH_ROLE: [{ value: 'unset with AUTH_METHOD=jwt', env: { AUTH_ROLE: undefined }, expect: { exit: 2, lines: [/^AUTH_ROLE: required for AUTH_METHOD=jwt/] } }],
  // Bad configuration found at start, before any Vault call: a projected token volume that is missing.
  SA_TOKEN_PATH: [
    { value: 'a file that does not exist', beforeVault: true, env: { SA_TOKEN_PATH: '/nonexistent/token' }, expect: { exit: 2, lines: [SA_UNREADABLE('\\/nonexistent\\/token', 'ENOENT')] } },
    { value: 'an empty file', beforeVault: true, env: { SA_TOKEN_PATH: '@empty' }, expect: { exit: 2, lines: [SA_UNREADABLE('\\/\\S+\\/empty-token', 'empty')] } },
    { value: 'a directory', beforeVault: true, env: { SA_TOKEN_PATH: '@work' }, expect: { exit: 2, lines: [SA_UNREADABLE('\\/\\S+', 'EISDIR')] } },
  ],
  APPROLE_ROLE_ID: [{ value: 'unset with AUTH_METHOD=approle', env: { AUTH_METHOD: 'approle', APPROLE_SECRET_ID_FILE: '@token' }, expect: { exit: 2, lines: [/^APPROLE_ROLE_ID: required for AUTH_METHOD=approle$/] } }],
  APPROLE_SECRET_ID_FILE: [
    { value: 'unset with AUTH_METHOD=approle', env: { AUTH_METHOD: 'approle', APPROLE_ROLE_ID: 'r' }, expect: { exit: 2, lines: [/^APPROLE_SECRET_ID_FILE: required for AUTH_METHOD=approle$/] } },
    { value: 'a file that does not exist', env: { AUTH_METHOD: 'approle', APPROLE_ROLE_ID: 'r', APPROLE_SECRET_ID_FILE: '/nonexistent/secret-id' }, expect: { exit: 2, lines: [/^APPROLE_SECRET_ID_FILE: cannot read \/nonexistent\/secret-id/] } },
  ],
  BUNDLE_SOURCE: [{ value: 'vault', env: { BUNDLE_SOURCE: 'vault' }, expect: { exit: 2, lines: [ONE_OF('BUNDLE_SOURCE', 'vault')] } }],
  KV_BUNDLE_PATH: [
    { value: 'unset with BUNDLE_SOURCE=kv-bundle', env: { BUNDLE_SOURCE: 'kv-bundle' }, expect: { exit: 2, lines: [/^KV_BUNDLE_PATH: required for BUNDLE_SOURCE=kv-bundle \(the KV secret holding ca_key, ca_cert, cert_chain, root_cert/] } },
    { value: 'kv/certs#ca_key (a field)', env: { BUNDLE_SOURCE: 'kv-bundle', KV_BUNDLE_PATH: 'kv/certs#ca_key' }, expect: { exit: 2, lines: [/^KV_BUNDLE_PATH: "kv\/certs#ca_key" names a field; give the secret's path only/] } },
    {
      value: 'a secret the policy does not cover', vault: true, env: { BUNDLE_SOURCE: 'kv-bundle', KV_BUNDLE_PATH: 'secret/istiod/certs' },
      expect: { exit: 1, error: /^init failed \(not retried: a retry cannot fix this\): while finding the KV mount and version of "secret\/istiod\/certs" at sys\/internal\/ui\/mounts\/secret\/istiod\/certs: HTTP 403: .*check the policy attached to the auth role, and KV_BUNDLE_PATH\)$/ },
    },
  ],
  CA_KEY_FROM: [{ value: 'secret/istioca (no field) with BUNDLE_SOURCE=tsb', env: { BUNDLE_SOURCE: 'tsb', CA_KEY_FROM: 'secret/istioca' }, expect: { exit: 2, lines: [/^CA_KEY_FROM: "secret\/istioca" is a KV secret: name the field that holds the PEM \(secret\/istioca#<field>\)$/] } }],
  CA_CERT_FROM: [{ value: 'istioca/../sys/cert/ca', env: { BUNDLE_SOURCE: 'tsb', CA_CERT_FROM: 'istioca/../sys/cert/ca' }, expect: { exit: 2, lines: [/^CA_CERT_FROM: "istioca\/\.\.\/sys\/cert\/ca" is not a Vault path/] } }],
  CERT_CHAIN_FROM: [{ value: 'set with BUNDLE_SOURCE=pki-sign', env: { CERT_CHAIN_FROM: 'istioca/cert/ca_chain' }, expect: { exit: 2, lines: [/^CERT_CHAIN_FROM: only used when the bundle is stored in Vault \(BUNDLE_SOURCE=kv-bundle, tsb or vault-paths\); BUNDLE_SOURCE is pki-sign$/] } }],
  ROOT_CERT_FROM: [{ value: 'unset with BUNDLE_SOURCE=vault-paths', env: { BUNDLE_SOURCE: 'vault-paths', CA_KEY_FROM: 'kv/ca#key', CA_CERT_FROM: 'ca/cert/ca', CERT_CHAIN_FROM: 'ca/cert/ca_chain' }, expect: { exit: 2, lines: [/^ROOT_CERT_FROM: required for BUNDLE_SOURCE=vault-paths \(<vault path>#<field>\)$/] } }],
  BUNDLE_POLL_INTERVAL: [{ value: '100ms', env: { BUNDLE_SOURCE: 'tsb', BUNDLE_POLL_INTERVAL: '100ms' }, expect: { exit: 2, lines: [SHORT('BUNDLE_POLL_INTERVAL', '100ms')] } }],
  PKI_SIGN_PATH: [
    { value: 'pki/sign/istiod (a leaf role)', env: { PKI_SIGN_PATH: 'pki/sign/istiod' }, expect: { exit: 2, lines: [/^PKI_SIGN_PATH: must be <mount>\/root\/sign-intermediate or <mount>\/issuer\/<ref>\/sign-intermediate$/] } },
    { value: 'a mount that does not exist', vault: true, env: { PKI_SIGN_PATH: 'no-such-pki/root/sign-intermediate' }, expect: { exit: 1, error: new RegExp(`^${esc(NOT_RETRIED)}while listing the PKI issuers at no-such-pki\\/issuers: HTTP 403: .*permission denied \\(Vault answers 403 for a PKI mount that does not exist: check that "no-such-pki" in PKI_SIGN_PATH is the PKI mount`) } },
  ],
  CERT_TTL: [
    { value: '5s (under 10s)', env: { CERT_TTL: '5s' }, expect: { exit: 2, lines: [SHORT('CERT_TTL', '5s')] } },
    { value: '0', env: { CERT_TTL: '0' }, expect: { exit: 2, lines: [SHORT('CERT_TTL', '0')] } },
    { value: '30days', env: { CERT_TTL: '30days' }, expect: { exit: 2, lines: [DUR('CERT_TTL', '30days')] } },
  ],
  RENEW_BEFORE: [
    { value: '2h with CERT_TTL=1h', env: { RENEW_BEFORE: '2h' }, expect: { exit: 2, lines: [/^RENEW_BEFORE: must be shorter than CERT_TTL \(2h >= 1h\)$/] } },
    { value: 'soon', env: { RENEW_BEFORE: 'soon' }, expect: { exit: 2, lines: [DUR('RENEW_BEFORE', 'soon')] } },
    { value: '500ms', env: { RENEW_BEFORE: '500ms' }, expect: { exit: 2, lines: [SHORT('RENEW_BEFORE', '500ms')] } },
  ],
  KEY_TYPE: [{ value: 'dsa', env: { KEY_TYPE: 'dsa' }, expect: { exit: 2, lines: [ONE_OF('KEY_TYPE', 'dsa')] } }],
  KEY_SIZE: [
    { value: '1024 with rsa', env: { KEY_TYPE: 'rsa', KEY_SIZE: '1024' }, expect: { exit: 2, lines: [/^KEY_SIZE: 1024 is not allowed for KEY_TYPE=rsa \(use 2048 or 3072 or 4096\)$/] } },
    { value: '521 with ec', env: { KEY_TYPE: 'ec', KEY_SIZE: '521' }, expect: { exit: 2, lines: [/^KEY_SIZE: 521 is not allowed for KEY_TYPE=ec \(use 256 or 384\)$/] } },
    { value: 'big', env: { KEY_SIZE: 'big' }, expect: { exit: 2, lines: [/^KEY_SIZE: "big" is not a whole number$/] } },
  ],
  CLUSTER_NAME: [{
    value: 'free-form; DN syntax "c1,CN=evil+O=x;"', vault: true, env: { CLUSTER_NAME: 'c1,CN=evil+O=x;' },
    expect: { exit: 0, check: async (dir) => expect(await subjectOf(dir)).toEqual({ CN: ['Intermediate CA'], O: ['Istio'], L: ['c1,CN=evil+O=x;'] }) },
  }],
  CERT_COMMON_NAME: [{
    value: 'free-form; "Mesh CA, O=Evil+L=x"', vault: true, env: { CERT_COMMON_NAME: 'Mesh CA, O=Evil+L=x' },
    expect: { exit: 0, check: async (dir) => expect(await subjectOf(dir)).toEqual({ CN: ['Mesh CA, O=Evil+L=x'], O: ['Istio'] }) },
  }],
  CERT_ORGANIZATION: [{
    value: 'free-form; "Istio, CN=x+L=y"', vault: true, env: { CERT_ORGANIZATION: 'Istio, CN=x+L=y' },
    expect: { exit: 0, check: async (dir) => expect(await subjectOf(dir)).toEqual({ CN: ['Intermediate CA'], O: ['Istio, CN=x+L=y'] }) },
  }],
  CERT_DNS_SANS: [{ value: 'istiod.istio-system.svc,not a name!', env: { CERT_DNS_SANS: 'istiod.istio-system.svc,not a name!' }, expect: { exit: 2, lines: [/^CERT_DNS_SANS: must be a comma-separated list of DNS names$/] } }],
  // CERT_DIR is checked before Vault signs anything; a fault a retry cannot fix ends `init` at once.
  CERT_DIR: [
    { value: 'a relative path', env: { CERT_DIR: 'cacerts' }, expect: { exit: 2, lines: [/^CERT_DIR: "cacerts" is a relative path; use an absolute one \(e\.g\. \/etc\/cacerts\)$/] } },
    { value: 'a regular file', beforeVault: true, env: { CERT_DIR: '@token-copy' }, expect: { exit: 1, error: new RegExp(`^${esc(NOT_RETRIED)}while checking CERT_DIR in (\\S+): ENOTDIR: \\1 is a regular file \\(CERT_DIR is not a directory: point it at the mounted emptyDir\\)$`) } },
    {
      value: 'a directory that does not exist (no emptyDir mounted)', beforeVault: true, env: { CERT_DIR: '@missing-dir' },
      expect: { exit: 1, error: new RegExp(`^${esc(NOT_RETRIED)}while checking CERT_DIR in (\\S+): NOCERTDIR: \\1 does not exist \\(mount the memory emptyDir istiod reads \\(ROOT_CA_DIR\\) there; the agent does not create CERT_DIR`) },
    },
  ],
  ROOT_ROTATION: [{ value: 'manual', env: { ROOT_ROTATION: 'manual' }, expect: { exit: 2, lines: [/^ROOT_ROTATION: "manual" is not one of auto, hold, off$/] } }],
  ISTIO_MULTIROOT_MESH: [{ value: 'enabled', env: { ISTIO_MULTIROOT_MESH: 'enabled' }, expect: { exit: 2, lines: [BOOL('ISTIO_MULTIROOT_MESH', 'enabled')] } }],
  ROOT_SWITCH_SOAK: [
    { value: '1 day', env: { ROOT_SWITCH_SOAK: '1 day' }, expect: { exit: 2, lines: [DUR('ROOT_SWITCH_SOAK', '1 day')] } },
    { value: '500ms', env: { ROOT_SWITCH_SOAK: '500ms' }, expect: { exit: 2, lines: [SHORT('ROOT_SWITCH_SOAK', '500ms')] } },
  ],
  ROOT_REMOVE_AFTER: [{ value: 'later', env: { ROOT_REMOVE_AFTER: 'later' }, expect: { exit: 2, lines: [DUR('ROOT_REMOVE_AFTER', 'later')] } }],
  ISSUER_POLL_INTERVAL: [{ value: '10ms', env: { ISSUER_POLL_INTERVAL: '10ms' }, expect: { exit: 2, lines: [SHORT('ISSUER_POLL_INTERVAL', '10ms')] } }],
  EXTRA_TRUST_ROOTS_FILE: [
    { value: 'a file that does not exist', env: { EXTRA_TRUST_ROOTS_FILE: '/nonexistent/roots.pem' }, expect: { exit: 2, lines: [/^EXTRA_TRUST_ROOTS_FILE: cannot read \/nonexistent\/roots\.pem/] } },
    { value: 'not PEM', env: { EXTRA_TRUST_ROOTS_FILE: '@token' }, expect: { exit: 2, lines: [/^EXTRA_TRUST_ROOTS_FILE holds no PEM certificate$/] } },
    { value: 'a certificate that is not a self-signed CA', env: { EXTRA_TRUST_ROOTS_FILE: '@leaf' }, expect: { exit: 2, lines: [/^EXTRA_TRUST_ROOTS_FILE: ".*" is not a self-signed CA certificate$/] } },
  ],
  MIN_PUBLISH_INTERVAL: [{ value: 'fast', env: { MIN_PUBLISH_INTERVAL: 'fast' }, expect: { exit: 2, lines: [DUR('MIN_PUBLISH_INTERVAL', 'fast')] } }],
  INIT_TIMEOUT: [
    { value: '0', env: { INIT_TIMEOUT: '0' }, expect: { exit: 2, lines: [SHORT('INIT_TIMEOUT', '0')] } },
    { value: '500ms', env: { INIT_TIMEOUT: '500ms' }, expect: { exit: 2, lines: [SHORT('INIT_TIMEOUT', '500ms')] } },
  ],
  METRICS_ADDR: [
    { value: 'localhost (no port)', env: { METRICS_ADDR: 'localhost' }, expect: { exit: 2, lines: [/^METRICS_ADDR: "localhost" is not host:port/] } },
    { value: ':99999', env: { METRICS_ADDR: ':99999' }, expect: { exit: 2, lines: [/^METRICS_ADDR: ":99999" is not host:port/] } },
    { value: 'a port already in use (run)', vault: true, args: ['run'], env: { METRICS_ADDR: '@busy-port' }, expect: { exit: 1, error: /METRICS_ADDR: cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/ } },
  ],
  ISTIOD_METRICS_URL: [{ value: 'localhost:15014/metrics (no scheme)', env: { ISTIOD_METRICS_URL: 'localhost:15014/metrics' }, expect: { exit: 2, lines: [/^ISTIOD_METRICS_URL: "localhost:15014\/metrics" is not an http\(s\) URL/] } }],
  ISTIOD_SYNC_TIMEOUT: [{ value: '10ms', env: { ISTIOD_SYNC_TIMEOUT: '10ms' }, expect: { exit: 2, lines: [SHORT('ISTIOD_SYNC_TIMEOUT', '10ms')] } }],
  ROTATE_ENDPOINT: [{ value: 'enabled', env: { ROTATE_ENDPOINT: 'enabled' }, expect: { exit: 2, lines: [BOOL('ROTATE_ENDPOINT', 'enabled')] } }],
  LOG_LEVEL: [{ value: 'verbose', env: { LOG_LEVEL: 'verbose' }, expect: { exit: 2, lines: [ONE_OF('LOG_LEVEL', 'verbose')] } }],
  LOG_FORMAT: [{ value: 'yaml', env: { LOG_FORMAT: 'yaml' }, expect: { exit: 2, lines: [/^LOG_FORMAT: "yaml" is not one of json, pretty$/] } }],
};

/** Command-line mistakes that are not a single setting. */
const OTHER: (Case & { name: string })[] = [
  { name: 'three bad settings at once', value: 'CERT_TTL=5s KEY_TYPE=dsa LOG_LEVEL=loud', env: { CERT_TTL: '5s', KEY_TYPE: 'dsa', LOG_LEVEL: 'loud' }, expect: { exit: 2, lines: [SHORT('CERT_TTL', '5s'), ONE_OF('KEY_TYPE', 'dsa'), ONE_OF('LOG_LEVEL', 'loud')] } },
  { name: 'unknown flag, a typo', value: '--cert-tll 1h', args: ['init', '--cert-tll', '1h'], env: {}, expect: { exit: 2, lines: [/^--cert-tll: unknown flag \(did you mean --cert-ttl\? see --help\)$/] } },
  { name: 'unknown flag, nothing close', value: '--frobnicate yes', args: ['init', '--frobnicate', 'yes'], env: {}, expect: { exit: 2, lines: [/^--frobnicate: unknown flag \(see --help\)$/] } },
  { name: 'flag without a value', value: '--cert-ttl', args: ['init', '--cert-ttl'], env: {}, expect: { exit: 2, lines: [/^--cert-ttl: needs a value$/] } },
  { name: 'bad value as a flag', value: '--key-type=dsa', args: ['init', '--key-type=dsa'], env: {}, expect: { exit: 2, lines: [ONE_OF('KEY_TYPE', 'dsa')] } },
  { name: 'unknown command', value: 'renew', args: ['renew'], env: {}, expect: { exit: 2, lines: [/^renew: unknown command/] } },
  { name: 'extra argument', value: 'init now', args: ['init', 'now'], env: {}, expect: { exit: 2, lines: [/^init: unexpected argument "now"$/] } },
];

/** Subject attributes of the published intermediate (CN, O, L), values as issued, unescaped. */
async function subjectOf(dir: string): Promise<Record<string, string[]>> {
  const c = new x509.X509Certificate(await fs.readFile(path.join(dir, 'ca-cert.pem'), 'utf8'));
  const out: Record<string, string[]> = {};
  for (const f of ['CN', 'O', 'L']) {
    const v = c.subjectName.getField(f);
    if (v.length) out[f] = v;
  }
  return out;
}

function resolveFiles(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) out[k] = v?.startsWith('@') ? files[v.slice(1)] : v;
  return out;
}

function baseEnv(vault: boolean, certDir: string): Record<string, string | undefined> {
  const common = { CERT_DIR: certDir, KEY_TYPE: 'ec', CERT_TTL: '1h', INIT_TIMEOUT: '3s', VAULT_CLIENT_TIMEOUT: '1s' };
  // A real OpenBao on a loaded machine can take seconds to answer: a timeout would be retried, and
  // these cases show what happens when it answers.
  if (vault) return { ...bao.get().env, ...common, INIT_TIMEOUT: '60s', VAULT_CLIENT_TIMEOUT: '20s' };
  return { VAULT_ADDR: 'http://127.0.0.1:9', AUTH_METHOD: 'jwt', AUTH_MOUNT: 'jwt', AUTH_ROLE: 'istiod', SA_TOKEN_PATH: files.token, ...common };
}

/** Every file and directory under `dir` (recursively), relative, directories with a trailing `/`. */
async function contents(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        out.push(`${path.relative(dir, p)}/`);
        await walk(p);
      } else out.push(path.relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

const rows: (string | number)[][] = [];
let caseNo = 0;

async function runCase(setting: string, c: Case): Promise<void> {
  const certDir = path.join(work, `cert-dir-${++caseNo}`);
  // The pod's emptyDir: CERT_DIR exists and is empty before the agent starts.
  await fs.mkdir(certDir);
  const sentinel = c.beforeVault ? await startSentinel() : undefined;
  const env = resolveFiles({ ...baseEnv(!!c.vault, certDir), ...(sentinel ? { VAULT_ADDR: sentinel.url } : {}), ...c.env });
  const resolvedDir = env.CERT_DIR!;
  const existed = await fs.lstat(resolvedDir).then(() => true, () => false);
  const preexisting = await contents(resolvedDir);
  const t0 = Date.now();
  const run = await runAgent(c.args ?? ['init'], cleanEnv(env), 30_000);
  const ms = Date.now() - t0;
  sentinel?.close();
  const stderrLines = run.stderr.split('\n').filter((l) => l.trim() !== '');
  let shown: string;
  try {
    expect(run.code, `exit code; stderr: ${run.stderr.slice(0, 500)}; stdout: ${run.stdout.slice(-800)}`).toBe(c.expect.exit);
    if (sentinel) expect(sentinel.connections(), 'connections to VAULT_ADDR: found before any Vault call').toBe(0);
    if (c.expect.exit === 2) {
      expect(stderrLines.length, stderrLines.join('\n')).toBe(c.expect.lines.length);
      c.expect.lines.forEach((re, i) => expect(stderrLines[i]).toMatch(re));
      shown = stderrLines.join(' / ');
      // Nothing touched: the cert dir is as empty as it was.
      expect(await contents(resolvedDir)).toEqual(preexisting);
    } else if (c.expect.exit === 1) {
      const errors = run.lines.filter((l) => l.level === 'error');
      const final = errors.at(-1);
      expect(final?.msg, run.stdout.slice(-1500)).toMatch(c.expect.error);
      expect(run.lines.filter(isFinal).length, 'one final failure line').toBe(1);
      expect(run.stderr).toBe('');
      // At once: no attempt was retried (each retry would be an `issuance failed` warning first).
      expect(run.lines.filter((l) => String(l.msg).startsWith('issuance failed')), 'retries').toEqual([]);
      shown = String(final?.msg);
      expect(await contents(resolvedDir)).toEqual(preexisting);
    } else {
      await c.expect.check(resolvedDir, run);
      shown = 'accepted (exit 0): value kept verbatim, no injection';
    }
    expect(await fs.lstat(resolvedDir).then(() => true, () => false), 'CERT_DIR neither created nor removed').toBe(existed);
    rows.push([setting, c.value, c.expect.exit, `${shown.slice(0, 160)}${shown.length > 160 ? '...' : ''}`, `${ms} ms`]);
  } catch (err) {
    rows.push([setting, c.value, `**${run.code}** (wanted ${c.expect.exit})`, `${(stderrLines[0] ?? String(run.lines.at(-1)?.msg ?? '')).slice(0, 160)}`, `${ms} ms`]);
    throw err;
  }
}

let busy: net.Server;

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-evidence-inputs-'));
  await fs.chmod(work, 0o755);
  files.work = work;
  files.token = path.join(work, 'token');
  await fs.writeFile(files.token, 'not-a-jwt\n');
  files.empty = path.join(work, 'empty-token');
  await fs.writeFile(files.empty, '\n');
  files['token-copy'] = path.join(work, 'a-regular-file');
  await fs.writeFile(files['token-copy'], 'x');
  files['missing-dir'] = path.join(work, 'no-emptydir-mounted');
  const r = await makeLabRoot('CN=Bad Inputs Root');
  files.leaf = path.join(work, 'leaf.pem');
  await fs.writeFile(files.leaf, (await mint({ subject: 'CN=leaf', ca: false }, r)).pem);
  busy = net.createServer();
  const port = await freePort();
  await new Promise<void>((res) => busy.listen(port, '127.0.0.1', () => res()));
  files['busy-port'] = `127.0.0.1:${port}`;
});

afterAll(async () => {
  busy?.close();
  await fs.rm(work, { recursive: true, force: true });
  if (rows.length) {
    // Table order: SETTINGS order, then the command line, then the runtime cases in the order they ran.
    const order = (r: (string | number)[]) => {
      const i = SETTINGS.findIndex((s) => s.env === r[0]);
      return i === -1 ? SETTINGS.length : i;
    };
    rows.sort((a, b) => order(a) - order(b));
    await publishEvidence('bad-inputs', [
      `Bad settings and inputs: ${rows.length} cases through the real binary (\`init\` unless noted). Exit 2 = rejected at start with one line per problem naming the setting; exit 1 = runtime failure with one final line (\`init failed: giving up after INIT_TIMEOUT ...\` after retries, \`init failed (not retried: ...)\` when a retry cannot help); CERT_DIR (an empty dir, as the pod's emptyDir) checked for leftovers after every case; "no Vault call" = VAULT_ADDR was a sentinel that saw no connection.`,
      '',
      table(['setting', 'bad value', 'exit', 'what the operator sees', 'time'], rows),
    ].join('\n'));
  }
});

describe('every setting has bad-value cases', () => {
  it('the table covers SETTINGS exactly (a new setting needs a row here)', () => {
    expect(Object.keys(BAD).sort()).toEqual(SETTINGS.map((s) => s.env).sort());
    for (const s of SETTINGS) expect(BAD[s.env]!.length, s.env).toBeGreaterThan(0);
  });
});

const all = Object.entries(BAD).flatMap(([setting, cases]) => cases.map((c) => ({ setting, ...c })));
const configCases = all.filter((c) => !c.vault && c.expect.exit === 2);
const localRuntimeCases = all.filter((c) => !c.vault && c.expect.exit !== 2);
const vaultCases = all.filter((c) => c.vault);

describe('bad settings: exit 2, one line per problem naming the setting, CERT_DIR untouched', () => {
  it.concurrent.each(configCases)('$setting = $value', async (c) => runCase(c.setting, c), 20_000);
  it.concurrent.each(OTHER)('$name: $value', async (c) => runCase('(command line)', c), 20_000);
});

describe('runtime inputs found before any Vault call', () => {
  it.concurrent.each(localRuntimeCases)('$setting = $value', async (c) => runCase(c.setting, c), 20_000);
});

describe.skipIf(!bao.available)('free-form settings and runtime inputs against a real OpenBao', () => {
  it.concurrent.each(vaultCases)('$setting = $value', async (c) => runCase(c.setting, c), 30_000);

  it.concurrent.each([
    // Errors name the address (VAULT_ADDR and its origin), and what to check.
    ['http://vault.invalid:8200 (does not resolve)', 'http://vault.invalid:8200', /(the host name of VAULT_ADDR \(http:\/\/vault\.invalid:8200\) does not resolve|DNS lookup of VAULT_ADDR \(http:\/\/vault\.invalid:8200\) failed temporarily)/, /ENOTFOUND|EAI_AGAIN/],
    ['http://127.0.0.1:1 (nothing listens)', 'http://127.0.0.1:1', /nothing listens at VAULT_ADDR \(http:\/\/127\.0\.0\.1:1\)/, /ECONNREFUSED/],
  ])('VAULT_ADDR %s: retried, exit 1 at INIT_TIMEOUT with a message naming the address', async (label, addr, where, code) => {
    const certDir = path.join(work, `cert-dir-${++caseNo}`);
    await fs.mkdir(certDir);
    const t0 = Date.now();
    const run = await runAgent(['init'], cleanEnv({ ...baseEnv(true, certDir), VAULT_ADDR: addr, INIT_TIMEOUT: '3s', VAULT_CLIENT_TIMEOUT: '1s' }));
    const ms = Date.now() - t0;
    expect(run.code).toBe(1);
    const final = run.lines.filter((l) => l.level === 'error').at(-1)!;
    expect(final.msg).toMatch(new RegExp(`^${esc(GAVE_UP)} \\(3s\\): `));
    expect(final.msg).toMatch(where);
    expect(final.msg).toMatch(code);
    expect(run.lines.filter(isFinal)).toEqual([final]);
    // Every earlier attempt: one warning saying when the next comes (nothing valid: within seconds).
    const retries = run.lines.filter((l) => String(l.msg).startsWith('issuance failed: '));
    expect(final.attempts).toBeGreaterThanOrEqual(2);
    expect(retries.length).toBe(Number(final.attempts) - 1);
    for (const r of retries) {
      expect(r.level).toBe('warn');
      expect(String(r.msg)).toMatch(where);
      expect(String(r.msg)).toMatch(/; retrying in \S+$/);
      expect(Number(r.retryInMs)).toBeLessThanOrEqual(NOTHING_VALID_CAP_MS);
    }
    // Given up at INIT_TIMEOUT on the agent's own clock (process start-up on a loaded machine aside):
    // not before its last second (a retry needs BACKOFF_BASE_MS), and not seconds after it.
    const starting = run.lines.find((l) => l.msg === 'starting')!;
    const gaveUpAfter = Date.parse(String(final.time)) - Date.parse(String(starting.time));
    expect(gaveUpAfter).toBeGreaterThanOrEqual(3000 - BACKOFF_BASE_MS);
    expect(gaveUpAfter).toBeLessThan(3000 + 3000);
    expect(await contents(certDir)).toEqual([]);
    rows.push(['VAULT_ADDR', label, 1, `${String(final.msg).slice(0, 160)}... (${String(final.attempts)} attempts)`, `${ms} ms (gave up ${gaveUpAfter} ms after start)`]);
  }, 20_000);
});

/** Runs the agent as uid/gid 1337 (istiod's and the agent's user in the pod). */
async function asIstio(args: string[], env: Record<string, string | undefined>): Promise<{ status: number | null; stdout: string; stderr: string; lines: Record<string, unknown>[] }> {
  const child = spawn('setpriv', ['--reuid=1337', '--regid=1337', '--clear-groups', process.execPath, BUNDLE, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const status = await new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  clearTimeout(t);
  return { status, stdout, stderr, lines: parse(stdout) };
}
const parse = (stdout: string) => stdout.split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return { msg: l }; } });
const canSetpriv = process.getuid?.() === 0 && spawnSync('setpriv', ['--reuid=1337', '--regid=1337', '--clear-groups', 'true']).status === 0;
/** What `init` says when it keeps a due but valid bundle after a failed renewal (src/agent/first-bundle.ts). */
const KEPT_VALID = 'renewal failed, but the current bundle is still valid';

describe.skipIf(!bao.available || !canSetpriv)('CERT_DIR and SA token as uid 1337 (setpriv)', () => {
  let tokenFor1337: string;
  beforeAll(async () => {
    tokenFor1337 = path.join(work, 'token-1337');
    await fs.copyFile(bao.get().saTokenPath, tokenFor1337);
    await fs.chown(tokenFor1337, 1337, 1337);
    await fs.chmod(tokenFor1337, 0o600);
  });

  it('CERT_DIR owned by root (0755), empty: exit 1 at once, before any Vault call, permission denied named, nothing written', async () => {
    const dir = path.join(work, 'root-owned');
    await fs.mkdir(dir, { mode: 0o755 });
    const sentinel = await startSentinel();
    const r = await asIstio(['init'], { ...bao.get().env, VAULT_ADDR: sentinel.url, SA_TOKEN_PATH: tokenFor1337, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', INIT_TIMEOUT: '10s' });
    sentinel.close();
    const final = r.lines.filter((l) => l.level === 'error').at(-1);
    expect(r.status, r.stdout.slice(-800)).toBe(1);
    expect(final?.msg).toMatch(new RegExp(`^${esc(NOT_RETRIED)}while creating \\.gen in \\S+: EACCES \\(permission denied: CERT_DIR must be writable by the agent`));
    expect(r.lines.filter(isFinal)).toEqual([final]);
    expect(sentinel.connections(), 'connections to VAULT_ADDR').toBe(0);
    expect(await fs.readdir(dir)).toEqual([]);
    rows.push(['CERT_DIR', 'not writable by uid 1337 (root-owned 0755), empty', 1, String(final?.msg).slice(0, 160), 'no retry (EACCES is permanent), no Vault call']);
  });

  it('CERT_DIR not writable but holding a valid, due bundle: exit 0 with a warning, before any Vault call, the bundle untouched', async () => {
    const dir = path.join(work, 'root-owned-with-bundle');
    await fs.mkdir(dir, { mode: 0o755 });
    const seed = await runAgent(['init'], cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: 'ec', ...DUE_SEED }));
    expect(seed.code, seed.stdout.slice(-800)).toBe(0);
    // Files readable by the agent (as in the pod), the folders not writable.
    for (const g of await fs.readdir(path.join(dir, '.gen'))) for (const f of await fs.readdir(path.join(dir, '.gen', g))) await fs.chown(path.join(dir, '.gen', g, f), 1337, 1337);
    const before = await snapshot(dir);
    const sentinel = await startSentinel();
    const r = await asIstio(['init'], { ...bao.get().env, VAULT_ADDR: sentinel.url, SA_TOKEN_PATH: tokenFor1337, CERT_DIR: dir, KEY_TYPE: 'ec', ...AFTER_SEED, INIT_TIMEOUT: '10s' });
    sentinel.close();
    expect(r.status, r.stdout.slice(-800)).toBe(0);
    const warn = r.lines.find((l) => String(l.msg).startsWith(KEPT_VALID));
    expect(warn?.level).toBe('warn');
    expect(warn?.reason).toBe('write_failed');
    expect(sentinel.connections(), 'connections to VAULT_ADDR').toBe(0);
    expect(sameSnapshot(before, await snapshot(dir))).toBe(true);
    expect((await judgeDir(dir)).ok).toBe(true);
    rows.push(['CERT_DIR', 'not writable by uid 1337, valid due bundle inside', 0, `${String(warn?.msg)} (reason write_failed); previous generation byte-identical`, 'no Vault call']);
  });

  it('SA token owned by root (0600): exit 2 at start naming SA_TOKEN_PATH and EACCES, before any Vault call', async () => {
    const dir = path.join(work, 'sa-unreadable');
    await fs.mkdir(dir, { mode: 0o755 });
    await fs.chown(dir, 1337, 1337);
    const rootOnly = path.join(work, 'token-root-only');
    await fs.copyFile(bao.get().saTokenPath, rootOnly);
    await fs.chmod(rootOnly, 0o600);
    const sentinel = await startSentinel();
    const r = await asIstio(['init'], { ...bao.get().env, VAULT_ADDR: sentinel.url, SA_TOKEN_PATH: rootOnly, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', INIT_TIMEOUT: '10s' });
    sentinel.close();
    expect(r.status).toBe(2);
    const stderrLines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(stderrLines).toEqual([expect.stringMatching(SA_UNREADABLE(esc(rootOnly), 'EACCES'))]);
    expect(sentinel.connections(), 'connections to VAULT_ADDR').toBe(0);
    expect(await fs.readdir(dir)).toEqual([]);
    rows.push(['SA_TOKEN_PATH', 'unreadable by uid 1337 (root 0600)', 2, stderrLines[0]!.slice(0, 160), 'no Vault call']);
  });
});

/** Mounts a tmpfs of `size` at `dir`; undefined when mounting is not possible here. */
function mountTmpfs(dir: string, size: string): string | undefined {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' });
  return r.status === 0 ? undefined : (r.stderr.trim() || `mount exited ${r.status}`);
}
async function fill(dir: string): Promise<void> {
  // Fill to the last byte: a big write, then small ones until ENOSPC.
  const fh = await fs.open(path.join(dir, 'filler'), 'w');
  try {
    for (let chunk = 1 << 20; chunk >= 1; chunk >>= 1) {
      for (;;) {
        try {
          await fh.write(Buffer.alloc(chunk));
        } catch {
          break;
        }
      }
    }
  } finally {
    await fh.close();
  }
}

describe.skipIf(!bao.available)('CERT_DIR on a full filesystem (tmpfs)', () => {
  let mountProblem: string | undefined;
  const mounts: string[] = [];
  beforeAll(async () => {
    const probe = path.join(work, 'mount-probe');
    await fs.mkdir(probe);
    mountProblem = process.getuid?.() === 0 ? mountTmpfs(probe, '16k') : 'not root';
    if (!mountProblem) spawnSync('umount', [probe]);
    if (mountProblem) console.warn(`skipping the full-filesystem cases: cannot mount a tmpfs here (${mountProblem})${IN_CI ? ' (CI)' : ''}`);
  });
  afterAll(() => {
    for (const m of mounts) spawnSync('umount', ['-l', m]);
  });

  it('empty and full: retried (ENOSPC may clear), exit 1 at INIT_TIMEOUT naming the full volume, no Vault call, no file left', async (ctx) => {
    if (mountProblem) return ctx.skip();
    const dir = path.join(work, 'full-empty');
    await fs.mkdir(dir);
    expect(mountTmpfs(dir, '16k')).toBeUndefined();
    mounts.push(dir);
    await fill(dir);
    const sentinel = await startSentinel();
    const t0 = Date.now();
    const run = await runAgent(['init'], cleanEnv({ ...baseEnv(true, dir), VAULT_ADDR: sentinel.url, INIT_TIMEOUT: '3s' }));
    sentinel.close();
    const final = run.lines.filter((l) => l.level === 'error').at(-1);
    expect(run.code).toBe(1);
    expect(final?.msg).toMatch(new RegExp(`^${esc(GAVE_UP)} \\(3s\\): while writing a probe file in \\.gen in \\S+: ENOSPC \\(the volume is full: raise the emptyDir sizeLimit or free space\\)`));
    expect(run.lines.filter(isFinal)).toEqual([final]);
    expect(final?.attempts).toBeGreaterThanOrEqual(2);
    const retries = run.lines.filter((l) => String(l.msg).startsWith('issuance failed: '));
    expect(retries.length).toBe(Number(final?.attempts) - 1);
    for (const r of retries) expect(r).toMatchObject({ level: 'warn', reason: 'write_failed', retryable: true });
    expect(sentinel.connections(), 'connections to VAULT_ADDR: the full volume is found before Vault signs').toBe(0);
    expect(await contents(dir)).toEqual(['filler']);
    rows.push(['CERT_DIR', 'full tmpfs (16k), empty', 1, String(final?.msg).slice(0, 160), `${Date.now() - t0} ms (retried until INIT_TIMEOUT=3s), no Vault call`]);
  }, 20_000);

  it('full, holding a valid due bundle: exit 0 with a warning, no Vault call, the previous generation byte-identical, no partial folder', async (ctx) => {
    if (mountProblem) return ctx.skip();
    const dir = path.join(work, 'full-with-bundle');
    await fs.mkdir(dir);
    expect(mountTmpfs(dir, '64k')).toBeUndefined();
    mounts.push(dir);
    const seed = await runAgent(['init'], cleanEnv({ ...baseEnv(true, dir), ...DUE_SEED }));
    expect(seed.code, seed.stdout.slice(-800)).toBe(0);
    await fill(dir);
    const before = await snapshot(dir);
    const listing = await contents(dir);
    const sentinel = await startSentinel();
    const run = await runAgent(['init'], cleanEnv({ ...baseEnv(true, dir), ...AFTER_SEED, VAULT_ADDR: sentinel.url }));
    sentinel.close();
    expect(run.code, run.stdout.slice(-800)).toBe(0);
    const warn = run.lines.find((l) => String(l.msg).startsWith(KEPT_VALID));
    expect(warn?.level).toBe('warn');
    expect(warn?.reason).toBe('write_failed');
    expect(sentinel.connections(), 'connections to VAULT_ADDR').toBe(0);
    expect(sameSnapshot(before, await snapshot(dir))).toBe(true);
    expect(await contents(dir)).toEqual(listing);
    rows.push(['CERT_DIR', 'full tmpfs (64k) holding a valid due bundle', 0, `${String(warn?.msg)} (reason write_failed); previous generation byte-identical, no partial folder`, 'no Vault call']);
  }, 20_000);
});
