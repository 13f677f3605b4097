/**
 * Where the four files come from when the bundle is stored in Vault (BUNDLE_SOURCE other than
 * `pki-sign`): each file is a Vault path and a field, written `<path>#<field>`. A KV secret's path is
 * the one `vault kv get` takes (KV v1 or v2: the agent finds out); a PKI read (`<mount>/cert/ca`,
 * `<mount>/cert/ca_chain`, `<mount>/cert/<serial>`, `<mount>/issuer/<ref>/json`) needs no field.
 * Presets spell out the layouts people already run, so each is one or two settings:
 * - `kv-bundle`: one KV secret holding the four PEMs (the Vault Agent Injector layout, fields ca_key,
 *   ca_cert, cert_chain, root_cert), at KV_BUNDLE_PATH;
 * - `tsb`: Tetrate TSB's Vault guide: the key in KV v2 `secret/istioca` (field `ca-key.pem`), the
 *   intermediate and its chain from the `istioca` PKI mount, the root from the `pki` mount.
 * A `*_FROM` setting overrides the preset for its file.
 */
import { Bad, type Parser } from './parsers.js';

export const BUNDLE_SOURCES = ['pki-sign', 'kv-bundle', 'tsb', 'vault-paths'] as const;
export type BundleSourceName = (typeof BUNDLE_SOURCES)[number];

export type BundleFile = 'caKey' | 'caCert' | 'certChain' | 'rootCert';

/** The setting that names each file's source, in the order the files are listed everywhere. */
export const FILE_SETTINGS: Readonly<Record<BundleFile, string>> = {
  caKey: 'CA_KEY_FROM',
  caCert: 'CA_CERT_FROM',
  certChain: 'CERT_CHAIN_FROM',
  rootCert: 'ROOT_CERT_FROM',
};

/** `<path>#<field>` as written, before the preset and the path kind are applied. */
export interface RawRef {
  path: string;
  field: string | undefined;
}

/** One file's source, resolved. */
export interface VaultFieldRef {
  /** A KV secret's path as `vault kv get` takes it, or a PKI read path. */
  path: string;
  /** The field of the answer that holds the PEM (a list of PEMs is joined with newlines). */
  field: string;
  engine: 'kv' | 'pki';
  /** The setting to check when this path fails, for messages (e.g. `KV_BUNDLE_PATH`). */
  setting: string;
}

export type BundlePaths = Readonly<Record<BundleFile, VaultFieldRef>>;

/** Field names of the kv-bundle preset: the Vault Agent Injector layout's `kv put` keys. */
export const KV_BUNDLE_FIELDS: Readonly<Record<BundleFile, string>> = { caKey: 'ca_key', caCert: 'ca_cert', certChain: 'cert_chain', rootCert: 'root_cert' };

/** The tsb preset: the paths of Tetrate TSB's Vault guide. */
export const TSB_PATHS: Readonly<Record<BundleFile, string>> = {
  caKey: 'secret/istioca#ca-key.pem',
  caCert: 'istioca/cert/ca',
  certChain: 'istioca/cert/ca_chain',
  rootCert: 'pki/cert/ca',
};

/** PKI endpoints that return certificates without a token; the field each one is read from. */
const PKI_READ = /^.+\/(?:cert\/(ca_chain|ca|[0-9A-Fa-f]{2}(?:[:-]?[0-9A-Fa-f]{2})*)|issuer\/[^/]+\/json)$/;

/** The default field of a PKI read path; undefined when `path` is not one (then it is a KV secret). */
export function pkiDefaultField(path: string): string | undefined {
  const m = PKI_READ.exec(path);
  if (!m) return undefined;
  return m[1] === 'ca_chain' ? 'ca_chain' : 'certificate';
}

function cleanPath(v: string): string | Bad {
  const p = v.trim().replace(/^\/+|\/+$/g, '').replace(/^v1\//, '');
  if (p === '') return new Bad('must not be empty');
  if (/[\s?#]/.test(p) || p.split('/').some((s) => s === '' || s === '.' || s === '..')) return new Bad(`"${v.trim()}" is not a Vault path`);
  return p;
}

/** `<path>[#<field>]`: a Vault path, optionally with the field that holds the PEM. */
export const vaultRef: Parser<RawRef> = (v) => {
  const hash = v.indexOf('#');
  const path = cleanPath(hash === -1 ? v : v.slice(0, hash));
  if (path instanceof Bad) return new Bad(`${path.message} (use <vault path>#<field>, e.g. secret/istioca#ca-key.pem)`);
  const field = hash === -1 ? undefined : v.slice(hash + 1).trim();
  if (field === '') return new Bad(`"${v.trim()}" has an empty field after # (use <vault path>#<field>)`);
  return { path, field };
};

/** A KV secret's path, as `vault kv get` takes it (no field). */
export const kvSecretPath: Parser<string> = (v) => {
  if (v.includes('#')) return new Bad(`"${v.trim()}" names a field; give the secret's path only (the fields are ${Object.values(KV_BUNDLE_FIELDS).join(', ')})`);
  const p = cleanPath(v);
  if (p instanceof Bad) return p;
  return pkiDefaultField(p) === undefined ? p : new Bad(`"${p}" is a PKI read, not a KV secret`);
};

/**
 * Resolves the four files' sources for `source`, from the preset and the `*_FROM` overrides. Returns
 * the paths, or the problems (each a line starting with the setting's name).
 */
export function resolveBundlePaths(
  source: Exclude<BundleSourceName, 'pki-sign'>,
  kvBundlePath: string | undefined,
  explicit: Readonly<Partial<Record<BundleFile, RawRef>>>,
): BundlePaths | string[] {
  const problems: string[] = [];
  if (source === 'kv-bundle' && kvBundlePath === undefined) {
    problems.push(`KV_BUNDLE_PATH: required for BUNDLE_SOURCE=kv-bundle (the KV secret holding ${Object.values(KV_BUNDLE_FIELDS).join(', ')}, as for "vault kv get")`);
  }
  const out: Partial<Record<BundleFile, VaultFieldRef>> = {};
  for (const file of Object.keys(FILE_SETTINGS) as BundleFile[]) {
    const setting = FILE_SETTINGS[file];
    let raw = explicit[file];
    let from = setting;
    if (!raw && source === 'kv-bundle' && kvBundlePath !== undefined) {
      raw = { path: kvBundlePath, field: KV_BUNDLE_FIELDS[file] };
      from = 'KV_BUNDLE_PATH';
    } else if (!raw && source === 'tsb') {
      raw = vaultRef(TSB_PATHS[file], setting) as RawRef;
      from = `${setting} (BUNDLE_SOURCE=tsb reads ${TSB_PATHS[file]})`;
    }
    if (!raw) {
      if (source === 'vault-paths') problems.push(`${setting}: required for BUNDLE_SOURCE=vault-paths (<vault path>#<field>)`);
      continue;
    }
    const pkiField = pkiDefaultField(raw.path);
    const field = raw.field ?? pkiField;
    if (field === undefined) {
      problems.push(`${setting}: "${raw.path}" is a KV secret: name the field that holds the PEM (${raw.path}#<field>)`);
      continue;
    }
    out[file] = { path: raw.path, field, engine: pkiField === undefined ? 'kv' : 'pki', setting: from };
  }
  return problems.length ? problems : (out as BundlePaths);
}
