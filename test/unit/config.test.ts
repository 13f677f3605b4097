import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/errors.js';
import { SETTINGS, loadSettings, mergeFlags } from '../../src/config.js';

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
});
