import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/errors.js';
import { mergeFlags } from '../../src/config/flags.js';
import { SETTINGS, loadSettings } from '../../src/config/settings.js';

const BASE = { VAULT_ADDR: 'https://vault.example:8200', AUTH_ROLE: 'istiod' };

function problems(env: Record<string, string>, needsVault = true): string[] {
  try {
    loadSettings(env, { needsVault });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  return [];
}

describe('settings', () => {
  it('applies the DESIGN defaults', () => {
    const s = loadSettings(BASE, { needsVault: true });
    expect(s).toMatchObject({
      authMethod: 'kubernetes',
      authMount: 'kubernetes',
      saTokenPath: '/var/run/secrets/kubernetes.io/serviceaccount/token',
      pkiSignPath: 'pki/root/sign-intermediate',
      pkiMount: 'pki',
      pkiIssuerRef: 'default',
      certTtlMs: 720 * 3600_000,
      renewBeforeMs: undefined,
      keyType: 'rsa',
      keySize: 2048,
      certCommonName: 'Intermediate CA',
      certOrganization: 'Istio',
      certDnsSans: ['istiod.istio-system.svc'],
      certDir: '/etc/cacerts',
      initTimeoutMs: 300_000,
      minPublishIntervalMs: 2000,
      metricsAddr: { host: '0.0.0.0', port: 15099 },
      istiodMetricsUrl: 'http://localhost:15014/metrics',
      logLevel: 'info',
      vaultSkipVerify: false,
      vaultClientTimeoutMs: 30_000,
      rotateEndpoint: false,
    });
  });

  it('derives mount and issuer from PKI_SIGN_PATH', () => {
    const s = loadSettings({ ...BASE, PKI_SIGN_PATH: '/v1/mesh/pki/issuer/root-2026/sign-intermediate/' }, { needsVault: true });
    expect(s.pkiSignPath).toBe('mesh/pki/issuer/root-2026/sign-intermediate');
    expect(s.pkiMount).toBe('mesh/pki');
    expect(s.pkiIssuerRef).toBe('root-2026');
  });

  it('parses everything it is given', () => {
    const s = loadSettings({ ...BASE, AUTH_METHOD: 'JWT', AUTH_MOUNT: 'auth/kube-c1-mesh-auth/', KEY_TYPE: 'ec', KEY_SIZE: '384', CERT_TTL: '1h30m', RENEW_BEFORE: '45m', CERT_DNS_SANS: 'a.b, c.d ,', METRICS_ADDR: '127.0.0.1:9000', ISTIOD_METRICS_URL: '', VAULT_SKIP_VERIFY: 'false' }, { needsVault: true });
    expect(s).toMatchObject({ authMethod: 'jwt', authMount: 'kube-c1-mesh-auth', keyType: 'ec', keySize: 384, certTtlMs: 5400_000, renewBeforeMs: 2700_000, certDnsSans: ['a.b', 'c.d'], metricsAddr: { host: '127.0.0.1', port: 9000 }, istiodMetricsUrl: undefined });
  });

  it('treats an empty value as the default, except where empty switches something off', () => {
    const s = loadSettings({ ...BASE, CERT_TTL: '', KEY_TYPE: ' ', METRICS_ADDR: '', CERT_DNS_SANS: '' }, { needsVault: true });
    expect(s.certTtlMs).toBe(720 * 3600_000);
    expect(s.keyType).toBe('rsa');
    expect(s.metricsAddr).toBeUndefined();
    expect(s.certDnsSans).toEqual([]);
  });

  it.each([
    [{ CERT_TTL: '30x' }, 'CERT_TTL: "30x" is not a duration (use 90s, 15m, 720h)'],
    [{ CERT_TTL: '30' }, 'CERT_TTL: "30" is not a duration (use 90s, 15m, 720h)'],
    [{ CERT_TTL: '5s' }, 'CERT_TTL: "5s" is too short (CERT_TTL must be at least 10s)'],
    [{ RENEW_BEFORE: 'soon' }, 'RENEW_BEFORE: "soon" is not a duration (use 90s, 15m, 720h)'],
    [{ CERT_TTL: '1h', RENEW_BEFORE: '2h' }, 'RENEW_BEFORE: must be shorter than CERT_TTL (2h >= 1h)'],
    [{ INIT_TIMEOUT: '-1s' }, 'INIT_TIMEOUT: "-1s" is not a duration (use 90s, 15m, 720h)'],
    [{ VAULT_CLIENT_TIMEOUT: 'forever' }, 'VAULT_CLIENT_TIMEOUT: "forever" is not a duration (use 90s, 15m, 720h)'],
    [{ VAULT_CLIENT_TIMEOUT: '30d' }, 'VAULT_CLIENT_TIMEOUT: "30d" is too long (VAULT_CLIENT_TIMEOUT must be at most 600s)'],
    [{ ISTIOD_SYNC_TIMEOUT: '1ms' }, 'ISTIOD_SYNC_TIMEOUT: "1ms" is too short (ISTIOD_SYNC_TIMEOUT must be at least 1s)'],
    [{ VAULT_ADDR: 'vault.example:8200' }, 'VAULT_ADDR: "vault.example:8200" must start with http:// or https://'],
    [{ VAULT_ADDR: 'not a url' }, 'VAULT_ADDR: "not a url" is not a URL (use https://vault.example:8200)'],
    [{ VAULT_ADDR: 'https://vault-0:8200,http://vault-1:8200' }, 'VAULT_ADDR: mixes https:// and http:// addresses; use one scheme for every node'],
    [{ VAULT_ADDR: ' , ' }, 'VAULT_ADDR: must not be empty'],
    [{ VAULT_SKIP_VERIFY: 'maybe' }, 'VAULT_SKIP_VERIFY: "maybe" is not a boolean (use true or false)'],
    [{ ROTATE_ENDPOINT: 'on' }, 'ROTATE_ENDPOINT: "on" is not a boolean (use true or false)'],
    [{ AUTH_METHOD: 'ldap' }, 'AUTH_METHOD: "ldap" is not one of kubernetes, jwt, approle, token'],
    [{ AUTH_MOUNT: 'has space' }, 'AUTH_MOUNT: "has space" is not a mount path (letters, digits, - _ . /)'],
    [{ KEY_TYPE: 'dsa' }, 'KEY_TYPE: "dsa" is not one of rsa, ec'],
    [{ KEY_SIZE: '1024' }, 'KEY_SIZE: 1024 is not allowed for KEY_TYPE=rsa (use 2048 or 3072 or 4096)'],
    [{ KEY_TYPE: 'ec', KEY_SIZE: '2048' }, 'KEY_SIZE: 2048 is not allowed for KEY_TYPE=ec (use 256 or 384)'],
    [{ KEY_SIZE: 'big' }, 'KEY_SIZE: "big" is not a whole number'],
    [{ PKI_SIGN_PATH: 'pki/sign/istiod' }, 'PKI_SIGN_PATH: must be <mount>/root/sign-intermediate or <mount>/issuer/<ref>/sign-intermediate'],
    [{ CERT_DNS_SANS: 'ok.example,bad name' }, 'CERT_DNS_SANS: must be a comma-separated list of DNS names'],
    [{ METRICS_ADDR: '15099' }, 'METRICS_ADDR: "15099" is not host:port (use :15099 or 127.0.0.1:15099)'],
    [{ METRICS_ADDR: ':99999' }, 'METRICS_ADDR: ":99999" is not host:port (use :15099 or 127.0.0.1:15099)'],
    [{ ISTIOD_METRICS_URL: 'localhost:15014' }, 'ISTIOD_METRICS_URL: "localhost:15014" is not an http(s) URL (or empty to disable)'],
    [{ MIN_PUBLISH_INTERVAL: 'often' }, 'MIN_PUBLISH_INTERVAL: "often" is not a duration (use 90s, 15m, 720h)'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL: "loud" is not one of trace, debug, info, warn, error, fatal, silent'],
    [{ VAULT_CACERT: '/ca.pem', VAULT_SKIP_VERIFY: 'true' }, 'VAULT_SKIP_VERIFY: true contradicts VAULT_CACERT (set only one)'],
    [{ AUTH_ROLE: '' }, "AUTH_ROLE: required for AUTH_METHOD=kubernetes (the Vault role bound to istiod's service account)"],
    [{ AUTH_METHOD: 'approle' }, 'APPROLE_ROLE_ID: required for AUTH_METHOD=approle'],
    [{ AUTH_METHOD: 'token' }, 'VAULT_TOKEN: required for AUTH_METHOD=token'],
  ])('rejects %o with one line naming the setting', (env, line) => {
    expect(problems({ ...BASE, ...env })).toContain(line);
  });

  it('reports every problem, not just the first', () => {
    const p = problems({ CERT_TTL: '30x', KEY_SIZE: '512', LOG_LEVEL: 'loud' });
    expect(p).toEqual(expect.arrayContaining([
      expect.stringMatching(/^CERT_TTL:/),
      expect.stringMatching(/^KEY_SIZE:/),
      expect.stringMatching(/^LOG_LEVEL:/),
      'VAULT_ADDR: required (e.g. https://vault.example:8200)',
    ]));
    for (const line of p) expect(line).not.toMatch(/\n/);
  });

  it('does not require Vault settings for commands that do not talk to Vault', () => {
    expect(problems({}, false)).toEqual([]);
  });

  it('lets --flags win over the environment, in both spellings', () => {
    const { source, positional } = mergeFlags({ CERT_TTL: '1h', KEY_TYPE: 'rsa' }, ['init', '--cert-ttl', '2h', '--key-type=ec']);
    expect(positional).toEqual(['init']);
    expect(source.CERT_TTL).toBe('2h');
    expect(source.KEY_TYPE).toBe('ec');
  });

  it('keeps the Vault token off the command line', () => {
    expect(() => mergeFlags({}, ['init', '--vault-token', 'hvs.x'])).toThrow(/--vault-token: not accepted on the command line .*set VAULT_TOKEN in the environment/);
    expect(() => mergeFlags({}, ['init', '--vault-token=hvs.x'])).toThrow(/not accepted on the command line/);
    try {
      mergeFlags({}, ['init', '--vault-token', 'hvs.SECRET']);
    } catch (err) {
      expect(String(err)).not.toContain('hvs.SECRET');
    }
  });

  it('rejects unknown flags and flags without a value', () => {
    expect(() => mergeFlags({}, ['--nope', 'x'])).toThrow(/--nope: unknown flag/);
    expect(() => mergeFlags({}, ['init', '--cert-ttl'])).toThrow(/--cert-ttl: needs a value/);
  });

  it('documents every setting the parser knows', () => {
    const names = SETTINGS.map((s) => s.env);
    expect(new Set(names).size).toBe(names.length);
    for (const s of SETTINGS) expect(s.help.length).toBeGreaterThan(5);
  });

  // The settings are a contract with every install: removing or renaming one breaks deployments, so the
  // list is spelled out here, and each row must really reach the Settings the agent runs with.
  const SAMPLES: Record<string, [string, unknown]> = {
    VAULT_ADDR: ['https://vault-0.example:8200, https://vault-1.example:8200/', ['https://vault-0.example:8200', 'https://vault-1.example:8200']],
    VAULT_CACERT: ['/vault-ca/ca.crt', '/vault-ca/ca.crt'],
    VAULT_NAMESPACE: ['team-a', 'team-a'],
    VAULT_TOKEN: ['hvs.x', 'hvs.x'],
    VAULT_SKIP_VERIFY: ['yes', true],
    VAULT_CLIENT_TIMEOUT: ['5s', 5000],
    VAULT_REDIRECT_ORIGINS: ['https://vault-1:8200, https://vault-2:8200/', ['https://vault-1:8200', 'https://vault-2:8200']],
    AUTH_METHOD: ['jwt', 'jwt'],
    AUTH_MOUNT: ['auth/kube-c1/', 'kube-c1'],
    AUTH_ROLE: ['istiod-canary', 'istiod-canary'],
    SA_TOKEN_PATH: ['/var/run/secrets/tokens/vault-token', '/var/run/secrets/tokens/vault-token'],
    APPROLE_ROLE_ID: ['role-1', 'role-1'],
    APPROLE_SECRET_ID_FILE: ['/approle/secret-id', '/approle/secret-id'],
    PKI_SIGN_PATH: ['pki_int/issuer/next/sign-intermediate', 'pki_int/issuer/next/sign-intermediate'],
    CERT_TTL: ['48h', 48 * 3_600_000],
    RENEW_BEFORE: ['25h', 25 * 3_600_000],
    KEY_TYPE: ['ec', 'ec'],
    KEY_SIZE: ['4096', 4096],
    CLUSTER_NAME: ['cluster1', 'cluster1'],
    CERT_COMMON_NAME: ['Mesh CA', 'Mesh CA'],
    CERT_ORGANIZATION: ['Example', 'Example'],
    CERT_DNS_SANS: ['istiod.mesh-cp.svc', ['istiod.mesh-cp.svc']],
    CERT_DIR: ['/var/run/cacerts', '/var/run/cacerts'],
    ROOT_ROTATION: ['hold', 'hold'],
    ISTIO_MULTIROOT_MESH: ['true', true],
    ROOT_SWITCH_SOAK: ['48h', 48 * 3_600_000],
    ROOT_REMOVE_AFTER: ['30h', 30 * 3_600_000],
    ISSUER_POLL_INTERVAL: ['1m', 60_000],
    EXTRA_TRUST_ROOTS_FILE: ['/extra/roots.pem', '/extra/roots.pem'],
    MIN_PUBLISH_INTERVAL: ['5s', 5000],
    INIT_TIMEOUT: ['1m', 60_000],
    METRICS_ADDR: ['127.0.0.1:9000', { host: '127.0.0.1', port: 9000 }],
    ISTIOD_METRICS_URL: ['http://127.0.0.1:15014/metrics', 'http://127.0.0.1:15014/metrics'],
    ISTIOD_SYNC_TIMEOUT: ['2m', 120_000],
    ROTATE_ENDPOINT: ['1', true],
    LOG_LEVEL: ['debug', 'debug'],
    LOG_FORMAT: ['pretty', 'pretty'],
  };
  const FIELD: Record<string, string> = { AUTH_MOUNT: 'authMount', KEY_SIZE: 'keySize' };

  it('keeps every setting users configure (a row removed is a breaking change)', () => {
    expect(SETTINGS.map((s) => s.env)).toEqual(Object.keys(SAMPLES));
  });

  it.each(SETTINGS.map((s) => [s.env, s.key] as const))('%s is read from the environment and from its flag into Settings', (env, key) => {
    const [raw, want] = SAMPLES[env]!;
    const base = { ...BASE, ...(env === 'RENEW_BEFORE' ? { CERT_TTL: '72h' } : {}) };
    const field = FIELD[env] ?? key;
    expect((loadSettings({ ...base, [env]: raw }, { needsVault: false }) as Record<string, unknown>)[field]).toEqual(want);
    if (env === 'VAULT_TOKEN') return; // never a flag
    const { source } = mergeFlags(base, [`--${env.toLowerCase().replace(/_/g, '-')}=${raw}`]);
    expect((loadSettings(source, { needsVault: false }) as Record<string, unknown>)[field]).toEqual(want);
  });

  it.each([
    [{ VAULT_ADDR: 'ftp://agent:s3cret-pw@vault:8200' }, 'VAULT_ADDR: "ftp://<user:password>@vault:8200" must start with http:// or https://'],
    [{ VAULT_REDIRECT_ORIGINS: 'https://agent:s3cret-pw@vault-1:8200' }, 'VAULT_REDIRECT_ORIGINS: "https://<user:password>@vault-1:8200" must be an origin only (scheme://host:port)'],
    [{ VAULT_ADDR: 'http//agent:s3cret-pw@vault' }, 'VAULT_ADDR: "http//<hidden>@vault" is not a URL (use https://vault.example:8200)'],
    [{ ISTIOD_METRICS_URL: 'x://u:s3cret-pw@istiod' }, 'ISTIOD_METRICS_URL: "x://<user:password>@istiod" is not an http(s) URL (or empty to disable)'],
  ])('a refused address never echoes its password: %o', (env, line) => {
    const p = problems({ ...BASE, ...env });
    expect(p).toContain(line);
    expect(p.join('\n')).not.toContain('s3cret-pw');
  });

  it('refuses a relative CERT_DIR (it would depend on the container\'s working directory)', () => {
    expect(problems({ ...BASE, CERT_DIR: 'cacerts' })).toContain('CERT_DIR: "cacerts" is a relative path; use an absolute one (e.g. /etc/cacerts)');
    expect(problems({ ...BASE, CERT_DIR: './etc/cacerts' })).toHaveLength(1);
  });

  it('suggests the closest flag for a typo', () => {
    expect(() => mergeFlags({}, ['init', '--cert-tll', '1h'])).toThrow('--cert-tll: unknown flag (did you mean --cert-ttl? see --help)');
    expect(() => mergeFlags({}, ['init', '--vault-adress=x'])).toThrow(/did you mean --vault-addr\?/);
    expect(() => mergeFlags({}, ['init', '--frobnicate'])).toThrow('--frobnicate: unknown flag (see --help)');
  });
});
