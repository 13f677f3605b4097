/**
 * BUNDLE_SOURCE and the `*_FROM` settings: the `<path>#<field>` syntax, which paths are PKI reads (no
 * field needed), the two presets (each layout in one or two settings), overrides, and the lines a bad
 * combination produces.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/common/errors.js';
import { pkiDefaultField, vaultRef, kvSecretPath } from '../../src/config/bundle-paths.js';
import { Bad } from '../../src/config/parsers.js';
import { loadSettings } from '../../src/config/settings.js';

const BASE = { VAULT_ADDR: 'https://vault.example:8200', AUTH_ROLE: 'istiod' };

function problems(env: Record<string, string>): string[] {
  try {
    loadSettings({ ...BASE, ...env }, { needsVault: true });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  return [];
}

describe('bundle paths', () => {
  it.each([
    ['istioca/cert/ca', 'certificate'],
    ['istioca/cert/ca_chain', 'ca_chain'],
    ['pki/issuer/default/json', 'certificate'],
    ['mesh/pki/issuer/root-2026/json', 'certificate'],
    ['pki/cert/17:3a:0b:ff', 'certificate'],
    ['pki/cert/173a0bff', 'certificate'],
    ['secret/istioca', undefined],
    ['kubernetes-cluster1-secrets/istiod-service/certs', undefined],
    ['pki/cert/crl', undefined],
    ['cert/ca', undefined],
  ])('%s is read as %s', (path, field) => {
    expect(pkiDefaultField(path)).toBe(field);
  });

  it.each([
    ['secret/istioca#ca-key.pem', { path: 'secret/istioca', field: 'ca-key.pem' }],
    [' /v1/secret/istioca/#ca-key.pem ', { path: 'secret/istioca', field: 'ca-key.pem' }],
    ['istioca/cert/ca', { path: 'istioca/cert/ca', field: undefined }],
  ])('parses %j', (raw, want) => {
    expect(vaultRef(raw, 'CA_KEY_FROM')).toEqual(want);
  });

  it.each(['', '#field', 'secret/../sys/policies#x', 'secret//istioca#x', 'secret/ist ioca#x', 'secret/istioca#', 'secret/istioca?version=1#x'])('refuses %j', (raw) => {
    expect(vaultRef(raw, 'CA_KEY_FROM')).toBeInstanceOf(Bad);
  });

  it('refuses a field or a PKI read as the KV bundle path', () => {
    expect((kvSecretPath('kv/certs#ca_key', 'KV_BUNDLE_PATH') as Bad).message).toMatch(/names a field; give the secret's path only/);
    expect((kvSecretPath('pki/cert/ca', 'KV_BUNDLE_PATH') as Bad).message).toBe('"pki/cert/ca" is a PKI read, not a KV secret');
  });

  it('kv-bundle: two settings give the four files from one secret, with the injector layout\'s field names', () => {
    const s = loadSettings({ ...BASE, BUNDLE_SOURCE: 'kv-bundle', KV_BUNDLE_PATH: 'kubernetes-cluster1-secrets/istiod-service/certs' }, { needsVault: true });
    const p = 'kubernetes-cluster1-secrets/istiod-service/certs';
    expect(s.bundlePaths).toEqual({
      caKey: { path: p, field: 'ca_key', engine: 'kv', setting: 'KV_BUNDLE_PATH' },
      caCert: { path: p, field: 'ca_cert', engine: 'kv', setting: 'KV_BUNDLE_PATH' },
      certChain: { path: p, field: 'cert_chain', engine: 'kv', setting: 'KV_BUNDLE_PATH' },
      rootCert: { path: p, field: 'root_cert', engine: 'kv', setting: 'KV_BUNDLE_PATH' },
    });
  });

  it("tsb: one setting gives the paths of Tetrate TSB's guide; a *_FROM setting overrides its file", () => {
    const s = loadSettings({ ...BASE, BUNDLE_SOURCE: 'tsb' }, { needsVault: true });
    expect(Object.fromEntries(Object.entries(s.bundlePaths!).map(([k, r]) => [k, `${r.engine}:${r.path}#${r.field}`]))).toEqual({
      caKey: 'kv:secret/istioca#ca-key.pem',
      caCert: 'pki:istioca/cert/ca#certificate',
      certChain: 'pki:istioca/cert/ca_chain#ca_chain',
      rootCert: 'pki:pki/cert/ca#certificate',
    });
    expect(s.bundlePaths!.caKey.setting).toBe('CA_KEY_FROM (BUNDLE_SOURCE=tsb reads secret/istioca#ca-key.pem)');
    const o = loadSettings({ ...BASE, BUNDLE_SOURCE: 'tsb', CA_KEY_FROM: 'kv-cluster2/istioca#key', ROOT_CERT_FROM: 'mesh-root/cert/ca' }, { needsVault: true });
    expect(o.bundlePaths!.caKey).toEqual({ path: 'kv-cluster2/istioca', field: 'key', engine: 'kv', setting: 'CA_KEY_FROM' });
    expect(o.bundlePaths!.rootCert).toEqual({ path: 'mesh-root/cert/ca', field: 'certificate', engine: 'pki', setting: 'ROOT_CERT_FROM' });
    expect(o.bundlePaths!.caCert.path).toBe('istioca/cert/ca');
  });

  it('pki-sign (the default) has no bundle paths', () => {
    expect(loadSettings(BASE, { needsVault: true }).bundlePaths).toBeUndefined();
  });

  it.each([
    [{ BUNDLE_SOURCE: 'kv-bundle' }, ['KV_BUNDLE_PATH: required for BUNDLE_SOURCE=kv-bundle (the KV secret holding ca_key, ca_cert, cert_chain, root_cert, as for "vault kv get")']],
    [{ BUNDLE_SOURCE: 'vault-paths', CA_KEY_FROM: 'secret/istioca#k' }, [
      'CA_CERT_FROM: required for BUNDLE_SOURCE=vault-paths (<vault path>#<field>)',
      'CERT_CHAIN_FROM: required for BUNDLE_SOURCE=vault-paths (<vault path>#<field>)',
      'ROOT_CERT_FROM: required for BUNDLE_SOURCE=vault-paths (<vault path>#<field>)',
    ]],
    [{ BUNDLE_SOURCE: 'tsb', CA_KEY_FROM: 'secret/istioca' }, ['CA_KEY_FROM: "secret/istioca" is a KV secret: name the field that holds the PEM (secret/istioca#<field>)']],
    [{ CA_KEY_FROM: 'secret/istioca#k' }, ['CA_KEY_FROM: only used when the bundle is stored in Vault (BUNDLE_SOURCE=kv-bundle, tsb or vault-paths); BUNDLE_SOURCE is pki-sign']],
    [{ KV_BUNDLE_PATH: 'kv/certs' }, ['KV_BUNDLE_PATH: only used when the bundle is stored in Vault (BUNDLE_SOURCE=kv-bundle, tsb or vault-paths); BUNDLE_SOURCE is pki-sign']],
    [{ BUNDLE_SOURCE: 'tsb', KV_BUNDLE_PATH: 'kv/certs' }, ['KV_BUNDLE_PATH: only used with BUNDLE_SOURCE=kv-bundle (BUNDLE_SOURCE is tsb)']],
    [{ BUNDLE_SOURCE: 'vault', }, ['BUNDLE_SOURCE: "vault" is not one of pki-sign, kv-bundle, tsb, vault-paths']],
    [{ BUNDLE_SOURCE: 'tsb', BUNDLE_POLL_INTERVAL: '100ms' }, ['BUNDLE_POLL_INTERVAL: "100ms" is too short (BUNDLE_POLL_INTERVAL must be at least 1s)']],
  ])('%j is refused with one line per problem', (env, lines) => {
    expect(problems(env as Record<string, string>)).toEqual(lines);
  });

  it('says once that a value does not parse (not also that it is missing)', () => {
    const p = problems({ BUNDLE_SOURCE: 'vault-paths', CA_KEY_FROM: 'a b#c', CA_CERT_FROM: 'x/cert/ca', CERT_CHAIN_FROM: 'x/cert/ca_chain', ROOT_CERT_FROM: 'p/cert/ca' });
    expect(p).toEqual(['CA_KEY_FROM: "a b" is not a Vault path (use <vault path>#<field>, e.g. secret/istioca#ca-key.pem)']);
  });
});
