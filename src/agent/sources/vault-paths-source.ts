/**
 * The vault-paths source: the four files are stored in Vault by someone else (a KV secret written by a
 * CI job or a portal, an intermediate imported into a PKI mount) and renewed there, out of band. Each
 * fetch reads every path once (one read serves all the fields of a path), assembles the chain by
 * signature, keeps the published root-cert.pem bytes while the root is the same, and verifies the
 * result exactly as an issued bundle is verified; nothing is minted. Between fetches, changed() asks
 * Vault cheaply whether anything moved: a KV v2 secret's version from its metadata (no secret data),
 * else a hash of what a read returns (a KV v1 secret has no version; PKI reads are public and small).
 * What a fetch read is remembered even when it is refused, so a broken bundle is refused once per
 * change, not at every poll (unless it is only not valid yet). Nothing secret is logged; the key never
 * appears in an error.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../../common/clock.js';
import { AgentError, VerificationError } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import type { BundleFile, BundlePaths, VaultFieldRef } from '../../config/bundle-paths.js';
import type { VerifiedBundle } from '../../pki/bundle.js';
import { certsFromPem, type CertInfo } from '../../pki/cert-info.js';
import { buildPath } from '../../pki/chain.js';
import { chooseRootCert, type PublishedRoots } from '../../pki/trust-roots.js';
import { verifyBundle } from '../../pki/verify.js';
import { VaultRequestError } from '../../vault/errors.js';
import type { VaultReader } from '../../vault/vault-reader.js';
import type { BundleSource } from '../bundle-source.js';
import { dueAt } from '../renewal-policy.js';

export interface VaultPathsSourceOptions {
  vault: VaultReader;
  clock: Clock;
  log: Logger;
  paths: BundlePaths;
  pollIntervalMs: number;
  /** RENEW_BEFORE, to say loudly when the stored bundle is already due. */
  renewBeforeMs: number | undefined;
  /** Extra anchors for root-cert.pem (EXTRA_TRUST_ROOTS_FILE). */
  extraRoots: () => readonly CertInfo[];
}

/** One Vault read, serving every file whose source is that path. */
interface PathRead {
  engine: 'kv' | 'pki';
  path: string;
  /** The setting(s) naming this path, for messages. */
  setting: string;
}

/** What a read returned, as changed() compares it: the KV v2 version, and a hash of the fields. */
interface Seen {
  version: number | undefined;
  hash: string;
}

const FILE_NAMES: Readonly<Record<BundleFile, string>> = { caKey: 'ca-key.pem', caCert: 'ca-cert.pem', certChain: 'cert-chain.pem', rootCert: 'root-cert.pem' };

const keyOf = (r: { engine: string; path: string }) => `${r.engine}:${r.path}`;

/** Field order does not matter to what a secret means. */
function hashOf(values: Readonly<Record<string, unknown>>): string {
  return createHash('sha256').update(JSON.stringify(Object.entries(values).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))).digest('hex');
}

/** The distinct reads behind the four files (the kv-bundle layout reads one secret for all four). */
export function pathReads(paths: BundlePaths): PathRead[] {
  const out = new Map<string, PathRead>();
  for (const ref of Object.values(paths)) {
    const r = out.get(keyOf(ref));
    if (!r) out.set(keyOf(ref), { engine: ref.engine, path: ref.path, setting: ref.setting });
    else if (!r.setting.split(', ').includes(ref.setting)) r.setting += `, ${ref.setting}`;
  }
  return [...out.values()];
}

/** `<path>#<field>`, as the settings write it. */
function where(ref: VaultFieldRef): string {
  return `${ref.path}#${ref.field}`;
}

/** The PEM text of one file, from the fields a read returned. Throws AgentError naming the field. */
function fieldText(file: BundleFile, ref: VaultFieldRef, values: Readonly<Record<string, unknown>>): string {
  let v = values[ref.field];
  // `cert/ca_chain` answers ca_chain null on a mount holding only a root; `certificate` is the same chain.
  if (v === undefined && ref.engine === 'pki' && ref.field === 'ca_chain') v = values.certificate;
  if (v === undefined || v === null) {
    const names = Object.keys(values).slice(0, 20);
    throw new AgentError(`while reading ${FILE_NAMES[file]} from Vault: ${ref.path} has no field "${ref.field}" (it has ${names.length ? names.map((n) => `"${n}"`).join(', ') : 'none'}; check ${ref.setting})`, {
      code: 'BUNDLE_FIELD_MISSING',
      reason: 'input_invalid',
      retryable: false,
    });
  }
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join('\n');
  throw new AgentError(`while reading ${FILE_NAMES[file]} from Vault: the field "${ref.field}" of ${ref.path} is not text (a ${Array.isArray(v) ? 'list' : typeof v}; check ${ref.setting})`, {
    code: 'BUNDLE_FIELD_NOT_TEXT',
    reason: 'input_invalid',
    retryable: false,
  });
}

export interface AssembleInputs {
  texts: Readonly<Record<BundleFile, string>>;
  paths: BundlePaths;
  extraRoots: readonly CertInfo[];
  published: PublishedRoots | undefined;
  now: number;
  log: Logger;
}

/**
 * Builds and verifies the bundle from the stored texts: the chain ordered by signature from ca-cert.pem
 * to the stored root (root last), root-cert.pem bytes kept while the root is the one published. Throws
 * VerificationError (the stored bundle is unusable) or RootChangedError (its root is not the published one).
 */
export function assembleStoredBundle(inp: AssembleInputs): VerifiedBundle {
  const { texts, paths } = inp;
  const label = (f: BundleFile) => `${FILE_NAMES[f]} (${where(paths[f])})`;
  try {
    const leaves = certsFromPem(texts.caCert, label('caCert'));
    if (leaves.length !== 1) throw new VerificationError(`${label('caCert')} holds ${leaves.length} certificates; it must hold the intermediate alone (check ${paths.caCert.setting})`, 'PEM_INVALID');
    const leaf = leaves[0]!;
    const chain = certsFromPem(texts.certChain, label('certChain'));
    const stored = certsFromPem(texts.rootCert, label('rootCert'));
    const published = inp.published?.roots ?? [];
    const path = buildPath(leaf, [...chain, ...stored], published.length ? published : stored);
    const anchor = path[path.length - 1]!;
    if (!stored.some((r) => r.der.equals(anchor.der))) {
      throw new VerificationError(
        `the chain of ca-cert.pem ("${leaf.subject}") ends at the root "${anchor.subject}" (SHA-256 ${anchor.fingerprint}), which is not in ${label('rootCert')} (${stored.map((r) => `"${r.subject}" SHA-256 ${r.fingerprint}`).join(', ')})`,
        'WRONG_ROOT',
      );
    }
    const root = chooseRootCert(anchor, [...stored.filter((r) => !r.der.equals(anchor.der)), ...inp.extraRoots], inp.published);
    if (root.replacedRoots) {
      inp.log.warn({ root: anchor.subject, fingerprint: anchor.fingerprint }, 'root-cert.pem gets a new root: the bundle on disk was unusable, so there was nothing to protect (a running istiod needs a restart, or ISTIO_MULTIROOT_MESH, to take it)');
    }
    if (root.extrasPending) {
      inp.log.warn({}, 'the roots stored in Vault (or EXTRA_TRUST_ROOTS_FILE) differ from the published root-cert.pem; the published bytes are kept while they hold the root, and the change applies when the pod restarts (istiod refuses a root-cert.pem change at run time without ISTIO_MULTIROOT_MESH)');
    }
    const key = texts.caKey.trim() + '\n';
    return verifyBundle({ caKey: key, caCert: leaf.pem, certChain: path.map((c) => c.pem).join(''), rootCert: root.rootCert }, { now: inp.now });
  } catch (err) {
    if (!(err instanceof VerificationError)) throw err;
    throw new VerificationError(`the bundle stored in Vault is not usable: ${err.message} (fix it where it is written; nothing was published from it)`, err.code);
  }
}

/** The source for a bundle stored in Vault and renewed out of band. */
export function vaultPathsSource(o: VaultPathsSourceOptions): BundleSource {
  const reads = pathReads(o.paths);
  /** What the latest fetch read, path by path; undefined before the first one. */
  let seen: Map<string, Seen> | undefined;
  /** KV v2 paths whose metadata the policy does not let us read: polled by content instead. */
  const noMetadata = new Set<string>();
  const warnedDue = new Set<string>();
  const readOne = async (r: PathRead, signal?: AbortSignal): Promise<{ values: Readonly<Record<string, unknown>>; version: number | undefined }> =>
    r.engine === 'kv' ? o.vault.readKv(r.path, r.setting, signal) : { ...(await o.vault.readPki(r.path, r.setting, signal)), version: undefined };

  /** The version of a KV v2 secret; undefined when only its content can tell (KV v1, metadata denied). */
  async function cheapVersion(r: PathRead, signal?: AbortSignal): Promise<number | undefined> {
    if (r.engine !== 'kv' || noMetadata.has(keyOf(r))) return undefined;
    try {
      return await o.vault.kvVersion(r.path, r.setting, signal);
    } catch (err) {
      if (!(err instanceof VaultRequestError && err.status === 403)) throw err;
      noMetadata.add(keyOf(r));
      o.log.info({ path: err.path }, `the policy does not grant "read" on ${err.path}: polling ${r.path} reads the whole secret instead of its version (grant it for a cheaper poll)`);
      return undefined;
    }
  }

  return {
    name: 'vault-paths',
    mints: false,
    pollIntervalMs: o.pollIntervalMs,
    fetch: async (req, signal) => {
      const t0 = performance.now();
      const got = new Map<string, { values: Readonly<Record<string, unknown>>; version: number | undefined }>();
      for (const r of reads) got.set(keyOf(r), await readOne(r, signal));
      const readNow = new Map([...got].map(([k, g]) => [k, { version: g.version, hash: hashOf(g.values) }]));
      const versions = Object.fromEntries(reads.filter((r) => got.get(keyOf(r))!.version !== undefined).map((r) => [r.path, got.get(keyOf(r))!.version]));
      o.log.info({ step: 'read', durationMs: Math.round((performance.now() - t0) * 10) / 10, paths: reads.map((r) => r.path), ...(Object.keys(versions).length ? { versions } : {}) }, 'read done');
      const now = o.clock.now();
      let bundle: VerifiedBundle;
      try {
        const texts = Object.fromEntries(
          (Object.keys(FILE_NAMES) as BundleFile[]).map((f) => [f, fieldText(f, o.paths[f], got.get(keyOf(o.paths[f]))!.values)]),
        ) as Record<BundleFile, string>;
        bundle = assembleStoredBundle({ texts, paths: o.paths, extraRoots: o.extraRoots(), published: req.published, now, log: o.log });
      } catch (err) {
        // Remembered although refused: it is not read again until it changes. Except a certificate that
        // is not valid yet (a clock ahead where it was made), which becomes valid by itself: read again.
        if (!(err instanceof AgentError && err.code === 'NOT_YET_VALID')) seen = readNow;
        throw err;
      }
      seen = readNow;
      const i = bundle.intermediate;
      const due = dueAt(i.notBefore, i.notAfter, o.renewBeforeMs);
      if (now >= due && !warnedDue.has(i.serial)) {
        warnedDue.add(i.serial);
        o.log.warn(
          { serial: i.serial, notAfter: new Date(i.notAfter).toISOString(), dueSince: new Date(due).toISOString(), left: formatDuration(Math.max(0, i.notAfter - now)), paths: reads.map((r) => r.path) },
          'the bundle stored in Vault is already due for renewal: the agent publishes it when nothing better is there, but renew it where it is written (the job that writes these paths); the renewed one is picked up within BUNDLE_POLL_INTERVAL',
        );
      }
      return { bundle };
    },
    changed: async (_current, signal) => {
      if (!seen) return true;
      const checked: { path: string; by: 'version' | 'content' }[] = [];
      let changed = false;
      for (const r of reads) {
        const before = seen.get(keyOf(r));
        const version = await cheapVersion(r, signal);
        checked.push({ path: r.path, by: version !== undefined ? 'version' : 'content' });
        if (version !== undefined) changed = version !== before?.version;
        else changed = hashOf((await readOne(r, signal)).values) !== before?.hash;
        if (changed) break;
      }
      o.log.debug({ changed, checked }, 'polled the bundle source');
      return changed;
    },
    tokenExpiresAt: () => o.vault.tokenExpiresAt(),
    close: () => o.vault.close(),
  };
}
