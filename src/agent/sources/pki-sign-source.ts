/**
 * The PKI source: Vault PKI signs an intermediate whose key is made here, in memory. One issuance,
 * start to verified bundle, nothing written: read the issuer (to cap the TTL at its expiry and catch a
 * root change before asking Vault to sign), generate the key, build the CSR, have Vault sign it,
 * assemble the chain by signature, choose root bytes, and verify the result as istiod will. Each step
 * is logged with its duration; nothing secret is logged.
 */
import type { Logger } from 'pino';
import { raceAbort } from '../../common/abort.js';
import type { Clock } from '../../common/clock.js';
import { formatDuration, toVaultTtl } from '../../common/duration.js';
import { VerificationError } from '../../common/errors.js';
import type { VerifiedBundle } from '../../pki/bundle.js';
import { certsFromPem, type CertInfo } from '../../pki/cert-info.js';
import { assembleChain, buildPath } from '../../pki/chain.js';
import { buildCsr, subjectDn, type SubjectSpec } from '../../pki/csr.js';
import { generateKey, type GeneratedKey, type KeySpec } from '../../pki/keys.js';
import { RootChangedError, chooseRootCert, type PublishedRoots } from '../../pki/trust-roots.js';
import { verifyBundle } from '../../pki/verify.js';
import type { IssuerEntry, IssuerInfo } from '../../vault/pki-api.js';
import type { VaultCa } from '../../vault/vault-ca.js';
import type { BundleSource, SourceRequest } from '../bundle-source.js';
import { planRoots, type RootPlan, type VaultRoot } from '../root-rotation.js';

/** Never ask for a lifetime that ends closer than this to the issuer's own expiry. */
export const ISSUER_EXPIRY_MARGIN_MS = 60_000;

/** What every issuance of the source is made with. */
interface IssueSettings {
  vault: VaultCa;
  clock: Clock;
  log: Logger;
  key: KeySpec;
  subject: SubjectSpec;
  certTtlMs: number;
  signPath: string;
  /** Overridable for tests; defaults to WebCrypto key generation. */
  generate?: (spec: KeySpec) => Promise<GeneratedKey>;
}

export interface IssueInputs extends IssueSettings {
  /** Extra anchors for root-cert.pem (EXTRA_TRUST_ROOTS_FILE). */
  extraRoots: readonly CertInfo[];
  /** root-cert.pem on disk, if any: its bytes are kept; a different Vault root is refused while it protects a valid bundle. */
  published: PublishedRoots | undefined;
  /** notAfter of the intermediate istiod uses now, if any (a new one must not end in the same second). */
  currentNotAfter?: number;
  /**
   * Root rotation's decision (src/agent/root-rotation.ts): sign with issuer `signerIssuerId` (undefined:
   * PKI_SIGN_PATH), publish `rootBytes`, and the chain must end at `expectedRoot`. Without it a root
   * different from the published one is refused (ROOT_ROTATION=off).
   */
  roots?: { signerIssuerId: string | undefined; rootBytes: string; expectedRoot: CertInfo; issuer?: IssuerInfo };
}

export interface IssuedBundle {
  bundle: VerifiedBundle;
  requestedTtlMs: number;
  grantedMs: number;
  warnings: readonly string[];
}

/** The chain must end at the root the rotation plan chose; anything else is a root change nobody planned. */
function expectRoot(root: CertInfo, expected: CertInfo): void {
  if (!root.der.equals(expected.der)) {
    throw new RootChangedError(root, [expected]);
  }
}

/** At most this many distinct warnings are logged per answer, each cut to WARNING_MAX_CHARS. */
export const MAX_LOGGED_WARNINGS = 5;
export const WARNING_MAX_CHARS = 300;

/**
 * Logs Vault's warnings, deduplicated and bounded: a server answering 100 warnings of 10 KB must not
 * turn into a megabyte of log per issuance.
 */
export function logVaultWarnings(log: Logger, path: string, warnings: readonly string[]): void {
  const distinct = [...new Set(warnings)];
  for (const w of distinct.slice(0, MAX_LOGGED_WARNINGS)) {
    // Two warnings come with every correct issuance (pathlen 0 is what we ask for; AIA URLs are optional).
    const expected = /max path length of the signed certificate is zero|authority information access/i.test(w);
    const text = w.length > WARNING_MAX_CHARS ? `${w.slice(0, WARNING_MAX_CHARS)}...` : w;
    log[expected ? 'debug' : 'warn']({ path, vaultWarning: text }, 'Vault returned a warning');
  }
  if (distinct.length > MAX_LOGGED_WARNINGS || distinct.length < warnings.length) {
    log.warn({ path, warnings: warnings.length, distinct: distinct.length, logged: Math.min(distinct.length, MAX_LOGGED_WARNINGS) }, 'Vault returned more warnings than are logged');
  }
}

/** Runs one step and logs its duration (monotonic time: this is measurement, not scheduling). */
async function timed<T>(log: Logger, step: string, fields: object, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  log.info({ step, durationMs: Math.round((performance.now() - t0) * 10) / 10, ...fields }, `${step} done`);
  return out;
}

/**
 * Issues a new intermediate and returns it verified. Throws AgentError subclasses with `reason` set:
 * vault_* (VaultRequestError), invalid_response, verification_failed, root_changed.
 */
export async function issueBundle(inp: IssueInputs, signal?: AbortSignal): Promise<IssuedBundle> {
  const { vault, clock, log } = inp;

  const signerId = inp.roots?.signerIssuerId;
  // The issuer as the rotation plan just read it, when it did: then only the login (if the token needs
  // one) happens here, before the key is made, so a login that fails costs no key generation.
  const known = inp.roots?.issuer;
  const issuer = await timed(log, 'read_issuer', signerId ? { issuer: signerId } : {}, () =>
    known ? raceAbort(vault.describeToken(signal), signal).then(() => known) : raceAbort(vault.readIssuer(signal, signerId), signal),
  );
  const issuerCert = certsFromPem(issuer.certificate, "the issuer certificate in Vault's answer")[0]!;
  const trusted = inp.roots ? [inp.roots.expectedRoot] : (inp.published?.roots ?? []);
  const issuerPath = buildPath(issuerCert, issuer.caChain.flatMap((p, i) => certsFromPem(p, `issuer ca_chain[${i}]`)), trusted);
  const vaultRoot = issuerPath[issuerPath.length - 1]!;
  // Fail before signing when the root is not the one expected: a new intermediate under it is unusable.
  if (inp.roots) expectRoot(vaultRoot, inp.roots.expectedRoot);
  else chooseRootCert(vaultRoot, inp.extraRoots, inp.published);

  const now = clock.now();
  const issuerLimit = Math.min(...issuerPath.map((c) => c.notAfter)) - now - ISSUER_EXPIRY_MARGIN_MS;
  if (issuerLimit <= 0) {
    throw new VerificationError(`the signing issuer "${issuerCert.subject}" expires at ${new Date(issuerLimit + now + ISSUER_EXPIRY_MARGIN_MS).toISOString()}; rotate the root in Vault`, 'ISSUER_EXPIRING');
  }
  // istiod reports what it loaded only as the intermediate's notAfter second: two rotations within one
  // second would get the same one, and the in-sync check could not tell them apart. Then ask for a
  // second more than CERT_TTL, so the new one ends later (unless the issuer's expiry caps both).
  const sameSecond = inp.currentNotAfter !== undefined && Math.abs(now + inp.certTtlMs - inp.currentNotAfter) < 1000;
  const wantedMs = sameSecond ? Math.ceil((inp.currentNotAfter! - now) / 1000) * 1000 + 1000 : inp.certTtlMs;
  const requestedTtlMs = Math.min(wantedMs, issuerLimit);
  if (requestedTtlMs < inp.certTtlMs) {
    log.warn({ certTtl: formatDuration(inp.certTtlMs), cappedTo: formatDuration(requestedTtlMs), issuerNotAfter: new Date(issuerCert.notAfter).toISOString() }, 'CERT_TTL reaches past the issuer\'s expiry; asking for less');
  }

  const key = await timed(log, 'keygen', { keyType: inp.key.type, keySize: inp.key.size }, () => raceAbort((inp.generate ?? generateKey)(inp.key), signal));
  const csr = await timed(log, 'csr', { subject: subjectDn(inp.subject) }, () => buildCsr(key, inp.subject));

  const signed = await timed(log, 'sign', { path: inp.signPath, ...(signerId ? { issuer: signerId } : {}), ttl: toVaultTtl(requestedTtlMs) }, () =>
    raceAbort(
      vault.signIntermediate(
        {
          csr,
          common_name: inp.subject.commonName,
          organization: [inp.subject.organization],
          ...(inp.subject.locality ? { locality: [inp.subject.locality] } : {}),
          ...(inp.subject.dnsSans.length ? { alt_names: inp.subject.dnsSans.join(',') } : {}),
          ttl: toVaultTtl(requestedTtlMs),
          // The intermediate signs workload certificates only; pathlen 0 forbids it minting more CAs.
          max_path_length: 0,
          exclude_cn_from_sans: true,
          use_csr_values: false,
        },
        signal,
        signerId,
      ),
      signal,
    ),
  );
  logVaultWarnings(log, inp.signPath, signed.warnings);

  const bundle = await timed(log, 'verify', {}, async () => {
    const assembled = assembleChain(signed, trusted);
    if (inp.roots) expectRoot(assembled.root, inp.roots.expectedRoot);
    const root = inp.roots ? { rootCert: inp.roots.rootBytes, replacedRoots: false, extrasPending: false } : chooseRootCert(assembled.root, inp.extraRoots, inp.published);
    const verified = verifyBundle(
      {
        caKey: key.privateKeyPem,
        caCert: assembled.intermediate.pem,
        certChain: assembled.chain.map((c) => c.pem).join(''),
        rootCert: root.rootCert,
      },
      { now: clock.now() },
    );
    if (root.replacedRoots) {
      log.warn({ root: assembled.root.subject, fingerprint: assembled.root.fingerprint }, 'root-cert.pem gets a new root: the bundle on disk was unusable, so there was nothing to protect (a running istiod needs a restart, or ISTIO_MULTIROOT_MESH, to take it)');
    }
    if (root.extrasPending) {
      log.warn({}, 'EXTRA_TRUST_ROOTS_FILE differs from the published root-cert.pem; it is applied when the pod restarts (istiod refuses a root-cert.pem change at run time without ISTIO_MULTIROOT_MESH)');
    }
    return verified;
  });

  const granted = bundle.intermediate.notAfter - bundle.intermediate.notBefore;
  if (granted < inp.certTtlMs - 60_000) {
    log.warn({ requested: formatDuration(inp.certTtlMs), granted: formatDuration(granted) }, 'Vault granted a shorter lifetime than CERT_TTL (a max_ttl on the mount or role, or the issuer expiry, caps it)');
  }
  return { bundle, requestedTtlMs, grantedMs: granted, warnings: signed.warnings };
}

export interface PkiSignSourceOptions extends IssueSettings {
  /** Extra anchors for root-cert.pem (EXTRA_TRUST_ROOTS_FILE), as the watched file holds them now. */
  extraRoots: () => readonly CertInfo[];
}

/** How the PKI source follows a root rotation in Vault (ROOT_ROTATION and friends). */
export interface RotationOptions {
  mode: 'auto' | 'hold' | 'off';
  /** istiod runs with ISTIO_MULTIROOT_MESH=true: root changes may be published while it runs. */
  multiRoot: boolean;
  soakMs: number;
  removeAfterMs: number;
  pollIntervalMs: number;
  /**
   * True when istiod compares root bundles as sets (>= 1.30, src/agent/istiod-version.ts), so a reorder
   * at the switch makes it push the trust bundle; asked only at a switch while istiod runs.
   */
  istiodComparesSets: (signal?: AbortSignal) => Promise<boolean>;
  /** Told of every plan (for the metrics). `restartRequired`: a root change waits for istiod's restart. */
  onPlan?: (plan: RootPlan, restartRequired: boolean) => void;
}

/**
 * Vault's roots as the rotation plan sees them: the distinct roots the mount's issuers chain to, each
 * with the issuer to sign with for it (the PKI_SIGN_PATH issuer when it chains there, else the root's
 * own issuer), and the root of the PKI_SIGN_PATH issuer (the target).
 */
async function vaultRoots(vault: VaultCa, signal: AbortSignal | undefined): Promise<{ roots: VaultRoot[]; target: VaultRoot; issuers: IssuerEntry[]; signer: IssuerEntry }> {
  const issuers = await vault.listIssuers(signal);
  const ref = vault.signerRef;
  const signer = issuers.find((i) => (ref === 'default' ? i.isDefault : i.id === ref || i.name === ref));
  if (!signer) {
    throw new VerificationError(`the PKI mount has no issuer "${ref}" (PKI_SIGN_PATH); its issuers: ${issuers.map((i) => i.name || i.id).join(', ') || 'none'}`, 'SIGNER_MISSING');
  }
  const roots: VaultRoot[] = [];
  let target: VaultRoot | undefined;
  for (const iss of [signer, ...issuers.filter((i) => i !== signer)]) {
    const cert = certsFromPem(iss.certificate, `issuer ${iss.id} in Vault's answer`)[0]!;
    const path = buildPath(cert, iss.caChain.flatMap((p, n) => certsFromPem(p, `issuer ${iss.id} ca_chain[${n}]`)));
    const root = path[path.length - 1]!;
    let r = roots.find((x) => x.cert.der.equals(root.der));
    if (!r) roots.push((r = { id: iss.id, name: iss.name, cert: root }));
    else if (cert.selfSigned && r.id !== signer.id) r.id = iss.id;
    if (iss === signer) target = r;
  }
  return { roots, target: target!, issuers, signer };
}

/** The sign-intermediate source: every renewal mints a new intermediate; it also follows a root rotation. */
export function pkiSignSource(o: PkiSignSourceOptions & { rotation?: RotationOptions }): BundleSource {
  const rot = o.rotation;
  const following = rot !== undefined && rot.mode !== 'off';
  let lastNotes = '';
  /** What the plan does, said once per change rather than at every poll. */
  const tell = (p: RootPlan, restartRequired: boolean) => {
    const notes = [...p.notes, ...(restartRequired ? ['istiod runs without ISTIO_MULTIROOT_MESH and would skip this root-cert.pem change: a rolling restart of istiod applies it (kubectl rollout restart deployment/<istiod>); until then nothing changes'] : [])];
    if (notes.join('\n') === lastNotes) return;
    lastNotes = notes.join('\n');
    if (notes.length) o.log[restartRequired ? 'warn' : 'info']({ phase: p.phase, nextStepAt: p.nextAt === undefined ? undefined : new Date(p.nextAt).toISOString(), restartRequired, notes }, `root rotation: ${notes[0]}`);
  };

  /** The plan now, and the root-cert.pem bytes that may be published now. */
  const plan = async (req: Omit<SourceRequest, 'trigger'>, signal?: AbortSignal) => {
    const { roots, target, issuers, signer } = await vaultRoots(o.vault, signal);
    const current = req.current && req.published?.enforce ? req.current : undefined;
    const input = {
      now: o.clock.now(),
      vaultRoots: roots,
      target,
      published: current && req.published ? { bytes: req.published.bytes, roots: req.published.roots } : undefined,
      anchor: current?.anchor,
      currentNotBefore: current?.intermediate.notBefore,
      extraRoots: o.extraRoots(),
      soakMs: rot!.soakMs,
      removeAfterMs: rot!.removeAfterMs,
      reorderOnSwitch: false,
      hold: rot!.mode === 'hold',
    };
    let p = planRoots(input);
    // With an intermediate published, minting now is the switch: only then does the order matter, and
    // only to a running istiod that takes root changes live.
    if (p.mintNow && current && rot!.multiRoot && req.istiodRunning && (await rot!.istiodComparesSets(signal).catch(() => false))) {
      p = planRoots({ ...input, reorderOnSwitch: true });
    }
    // Without multi-root, a running istiod skips any reload whose root-cert.pem changed: keep the bytes
    // it runs on while they still anchor the intermediate to come.
    const waitForRestart = !rot!.multiRoot && req.istiodRunning && req.published !== undefined && req.published.roots.some((r) => r.der.equals(p.signWith.cert.der));
    const rootBytes = waitForRestart ? req.published!.bytes : p.rootBytes;
    const restartRequired = waitForRestart && p.rootsChange;
    tell(p, restartRequired);
    rot!.onPlan?.(p, restartRequired);
    return { plan: p, rootBytes, target, issuers, signer };
  };

  return {
    name: 'pki-sign',
    mints: true,
    ...(following ? { pollIntervalMs: rot.pollIntervalMs } : {}),
    fetch: async (req, signal) => {
      const base: IssueInputs = { ...o, extraRoots: o.extraRoots(), published: req.published, currentNotAfter: req.current?.intermediate.notAfter };
      if (!following) {
        const issued = await issueBundle(base, signal);
        return { bundle: issued.bundle, requestedTtlMs: issued.requestedTtlMs, warnings: issued.warnings };
      }
      const { plan: p, rootBytes, target, issuers, signer } = await plan(req, signal);
      const current = req.current && req.published?.enforce ? req.current : undefined;
      if (req.trigger === 'changed' && !p.mintNow && current) {
        // A root added or removed: the same intermediate under the new root-cert.pem.
        if (rootBytes === current.files.rootCert) return { bundle: current };
        return { bundle: verifyBundle({ ...current.files, rootCert: rootBytes }, { now: o.clock.now() }) };
      }
      const signerIssuerId = p.signWith.cert.der.equals(target.cert.der) ? undefined : p.signWith.id;
      const issuer = signerIssuerId === undefined ? signer : issuers.find((i) => i.id === signerIssuerId);
      const issued = await issueBundle({ ...base, roots: { signerIssuerId, rootBytes, expectedRoot: p.signWith.cert, issuer } }, signal);
      return { bundle: issued.bundle, requestedTtlMs: issued.requestedTtlMs, warnings: issued.warnings };
    },
    ...(following
      ? {
          changed: async (req: Omit<SourceRequest, 'trigger'>, signal?: AbortSignal) => {
            const { plan: p, rootBytes } = await plan(req, signal);
            return p.mintNow || (req.current !== undefined && req.published?.enforce === true && rootBytes !== req.current.files.rootCert);
          },
        }
      : {}),
    state: (signal) => o.vault.state(signal),
    tokenExpiresAt: () => o.vault.tokenExpiresAt(),
    close: () => o.vault.close(),
  };
}
