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
import { chooseRootCert, type PublishedRoots } from '../../pki/trust-roots.js';
import { verifyBundle } from '../../pki/verify.js';
import type { VaultCa } from '../../vault/vault-ca.js';
import type { BundleSource } from '../bundle-source.js';

/** Never ask for a lifetime that ends closer than this to the issuer's own expiry. */
export const ISSUER_EXPIRY_MARGIN_MS = 60_000;

export interface IssueInputs {
  vault: VaultCa;
  clock: Clock;
  log: Logger;
  key: KeySpec;
  subject: SubjectSpec;
  certTtlMs: number;
  signPath: string;
  /** Extra anchors for root-cert.pem (EXTRA_TRUST_ROOTS_FILE). */
  extraRoots: readonly CertInfo[];
  /** root-cert.pem on disk, if any: its bytes are kept; a different Vault root is refused while it protects a valid bundle. */
  published: PublishedRoots | undefined;
  /** notAfter of the intermediate istiod uses now, if any (a new one must not end in the same second). */
  currentNotAfter?: number;
  /** Overridable for tests; defaults to WebCrypto key generation. */
  generate?: (spec: KeySpec) => Promise<GeneratedKey>;
}

export interface IssuedBundle {
  bundle: VerifiedBundle;
  requestedTtlMs: number;
  grantedMs: number;
  warnings: readonly string[];
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

  const issuer = await timed(log, 'read_issuer', {}, () => raceAbort(vault.readIssuer(signal), signal));
  const issuerCert = certsFromPem(issuer.certificate, "the issuer certificate in Vault's answer")[0]!;
  const trusted = inp.published?.roots ?? [];
  const issuerPath = buildPath(issuerCert, issuer.caChain.flatMap((p, i) => certsFromPem(p, `issuer ca_chain[${i}]`)), trusted);
  const vaultRoot = issuerPath[issuerPath.length - 1]!;
  // Fail before signing when the root changed: a new intermediate under another root is unusable.
  chooseRootCert(vaultRoot, inp.extraRoots, inp.published);

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

  const signed = await timed(log, 'sign', { path: inp.signPath, ttl: toVaultTtl(requestedTtlMs) }, () =>
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
      ),
      signal,
    ),
  );
  logVaultWarnings(log, inp.signPath, signed.warnings);

  const bundle = await timed(log, 'verify', {}, async () => {
    const assembled = assembleChain(signed, trusted);
    const root = chooseRootCert(assembled.root, inp.extraRoots, inp.published);
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

export interface PkiSignSourceOptions {
  vault: VaultCa;
  clock: Clock;
  log: Logger;
  key: KeySpec;
  subject: SubjectSpec;
  certTtlMs: number;
  signPath: string;
  extraRoots: () => readonly CertInfo[];
  generate?: (spec: KeySpec) => Promise<GeneratedKey>;
}

/** The sign-intermediate source: every fetch mints a new intermediate. */
export function pkiSignSource(o: PkiSignSourceOptions): BundleSource {
  return {
    name: 'pki-sign',
    mints: true,
    fetch: async (req, signal) => {
      const issued = await issueBundle(
        { vault: o.vault, clock: o.clock, log: o.log, key: o.key, subject: o.subject, certTtlMs: o.certTtlMs, signPath: o.signPath, extraRoots: o.extraRoots(), published: req.published, currentNotAfter: req.current?.intermediate.notAfter, generate: o.generate },
        signal,
      );
      return { bundle: issued.bundle, requestedTtlMs: issued.requestedTtlMs, warnings: issued.warnings };
    },
    state: (signal) => o.vault.state(signal),
    tokenExpiresAt: () => o.vault.tokenExpiresAt(),
    close: () => o.vault.close(),
  };
}
