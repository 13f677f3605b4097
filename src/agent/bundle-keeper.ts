/**
 * Keeps istiod's bundle: which verified bundle istiod uses, when it is due, and the two ways it changes
 * (adopt what is on disk, or take a new one from the bundle source and publish it). The renewal loop
 * and `init` decide WHEN to call it; this decides WHETHER a new bundle may replace the current one:
 * - never one that is due the moment it arrives (a Vault granting tiny lifetimes would otherwise be
 *   asked to sign every few seconds, forever);
 * - never one that expires sooner than a valid current one, unless an operator asked for a rotation;
 * - a bundle whose publish failed is published on the next attempt without asking the source again
 *   (Vault already signed it; signing another one per retry only fills its certificate store).
 * Every outcome is counted here; a success is logged here, a failure by the caller, once, with what
 * it does next.
 */
import type { Logger } from 'pino';
import { AbortedError, type Clock } from '../common/clock.js';
import { isAbort } from '../common/abort.js';
import { AgentError, asAgentError, describeError } from '../common/errors.js';
import { formatDuration } from '../common/duration.js';
import type { BundleFiles, VerifiedBundle } from '../pki/bundle.js';
import { certsFromPem, type CertInfo } from '../pki/cert-info.js';
import { verifyBundle } from '../pki/verify.js';
import { readCertDir, visibleBundlePresent } from '../store/cert-dir-reader.js';
import type { MetricsRecorder } from '../telemetry/metrics.js';
import type { BundleSource, SourcedBundle } from './bundle-source.js';
import { dueAt, renewalInstant } from './renewal-policy.js';

/** What the keeper needs of the cert dir writer (src/store/cert-dir-writer.ts). */
export interface BundleWriter {
  /**
   * Throws StoreError when CERT_DIR cannot take a publish (missing, read-only, full, an entry it must
   * refuse); removes what was planted in the agent's own names and says what.
   */
  prepareToPublish(options?: { createMissing?: boolean }): Promise<{ removed: string[] }>;
  publish(files: BundleFiles, signal?: AbortSignal): Promise<{ generation: string; removed: string[] }>;
  publishIf(select: () => BundleFiles | undefined, signal?: AbortSignal): Promise<{ generation: string; removed: string[] } | undefined>;
  prune(keep?: readonly (string | undefined)[]): Promise<string[]>;
  pruneDueAt(): number | undefined;
  ensureVisibleLinks(): Promise<void>;
}

export interface KeeperDeps {
  source: BundleSource;
  writer: BundleWriter;
  clock: Clock;
  /** Uniform in [0, 1); injected so jitter is reproducible in tests. */
  random: () => number;
  log: Logger;
  metrics: MetricsRecorder;
  certDir: string;
  renewBeforeMs: number | undefined;
  /** `dev` only: create a missing CERT_DIR (elsewhere it must be the mounted emptyDir). */
  createMissingCertDir?: boolean;
}

export type DirState =
  | { kind: 'valid'; bundle: VerifiedBundle; due: boolean }
  | { kind: 'absent' }
  | { kind: 'invalid'; problem: string };

export type RenewTrigger = 'missing' | 'invalid' | 'due' | 'rotate' | 'changed';

/** A new bundle that would leave istiod worse off than it is: nothing was published. */
export class BundleRefusedError extends AgentError {
  constructor(
    message: string,
    code: string,
    /** Epoch ms before which asking again cannot give a better answer, when known. */
    readonly retryAt?: number,
  ) {
    super(message, { code, reason: 'lifetime_too_short', retryable: false });
  }
}

function sameFiles(a: BundleFiles, b: BundleFiles): boolean {
  return a.caKey === b.caKey && a.caCert === b.caCert && a.certChain === b.certChain && a.rootCert === b.rootCert;
}

/** Two notAfter values closer than this are the same expiry (certificates carry whole seconds). */
const SAME_SECOND_MS = 1000;


export class BundleKeeper {
  private bundle: VerifiedBundle | undefined;
  /** root-cert.pem on disk when no valid bundle could be adopted (its bytes are still worth keeping). */
  private diskRoots: { bytes: string; roots: readonly CertInfo[] } | undefined;
  private nextRenewal: number | undefined;
  /** Accepted from the source, but its publish failed: published next time without a new fetch. */
  private unpublished: SourcedBundle | undefined;
  private istiodRunning = false;


  constructor(private readonly d: KeeperDeps) {
    d.metrics.setReadyProbe(() => this.isReady());
  }

  get current(): VerifiedBundle | undefined {
    return this.bundle;
  }

  get source(): BundleSource {
    return this.d.source;
  }

  /** When the loop should renew (with jitter); undefined before anything is adopted or issued. */
  get renewAt(): number | undefined {
    return this.nextRenewal;
  }

  /** When replaced generations (and their keys) are past their grace period and should be removed. */
  get tidyAt(): number | undefined {
    return this.d.writer.pruneDueAt();
  }

  /** Removes replaced generations past their grace period. Never throws. */
  async tidy(): Promise<void> {
    const removed = await this.d.writer.prune();
    if (removed.length) this.d.log.debug({ removed }, 'removed replaced generations');
  }

  /** isReady(), and the four visible files are really there for istiod (what /readyz answers). */
  async isReadyOnDisk(): Promise<boolean> {
    return this.isReady() && (await visibleBundlePresent(this.d.certDir));
  }

  /** A valid, unexpired bundle is published. */
  isReady(): boolean {
    return this.bundle !== undefined && this.d.clock.now() < this.bundle.intermediate.notAfter;
  }

  /** Due: past dueAt (without jitter), as `init` and adoption judge it. */
  isDue(b: VerifiedBundle, now = this.d.clock.now()): boolean {
    return now >= dueAt(b.intermediate.notBefore, b.intermediate.notAfter, this.d.renewBeforeMs);
  }

  /** Reads and verifies what is on disk; adopts it when valid (due or not). */
  async inspect(): Promise<DirState> {
    let outcome;
    try {
      outcome = await readCertDir(this.d.certDir);
    } catch (err) {
      return { kind: 'invalid', problem: `cannot read ${this.d.certDir}: ${describeError(err)}` };
    }
    // Tidy what a crash mid-publish may have left (never touches the current generation).
    const removed = await this.d.writer.prune([]);
    if (removed.length) this.d.log.info({ removed }, 'removed stale generation folders');
    if (outcome.state === 'absent') return { kind: 'absent' };
    if (outcome.state === 'incomplete') return { kind: 'invalid', problem: `missing ${outcome.missing.join(', ')}` };
    let b: VerifiedBundle;
    try {
      b = verifyBundle(outcome.bundle.files, { now: this.d.clock.now() });
    } catch (err) {
      try {
        this.diskRoots = { bytes: outcome.bundle.files.rootCert, roots: certsFromPem(outcome.bundle.files.rootCert, 'root-cert.pem') };
      } catch {
        this.diskRoots = undefined;
      }
      return { kind: 'invalid', problem: describeError(err) };
    }
    if (outcome.bundle.brokenLinks.length) {
      // A crash between the first swap of ..data and the creation of the visible names: istiod would
      // find no bundle although a complete generation is there.
      try {
        await this.d.writer.ensureVisibleLinks();
      } catch (err) {
        return { kind: 'invalid', problem: describeError(err) };
      }
      this.d.log.warn({ repaired: outcome.bundle.brokenLinks }, 'repaired the visible names of the published generation');
    }
    this.adopt(b);
    this.d.metrics.recordAdopted({ at: this.d.clock.now(), bundle: this.facts(b), lifetimeMs: b.intermediate.notAfter - b.intermediate.notBefore });
    return { kind: 'valid', bundle: b, due: this.isDue(b) };
  }

  /**
   * Takes a new bundle from the source and publishes it. Resolves with the published bundle, or
   * 'unchanged' when a source that does not mint has nothing new. Counts and logs the outcome. Rethrows
   * a failure as an AgentError (BundleRefusedError when the new bundle would leave istiod worse off), or
   * AbortedError on shutdown (neither counted nor published).
   */
  async renew(trigger: RenewTrigger, signal?: AbortSignal): Promise<VerifiedBundle | 'unchanged'> {
    const { log, metrics, clock, source } = this.d;
    const start = performance.now();
    log.info({ trigger, source: source.name }, source.mints ? 'issuing a new intermediate' : 'reading the bundle from its source');
    try {
      // A CERT_DIR that cannot take the files is found before Vault signs anything.
      this.noteRemoved((await this.d.writer.prepareToPublish({ createMissing: this.d.createMissingCertDir })).removed);
      const got = this.pendingPublish() ?? (await source.fetch(this.request(trigger === 'changed' ? 'changed' : 'renew'), signal));
      if (signal?.aborted) throw new AbortedError();
      if (this.bundle && sameFiles(got.bundle.files, this.bundle.files)) {
        log.debug({ serial: got.bundle.intermediate.serial }, 'the source holds the bundle already published');
        return 'unchanged';
      }
      this.judge(got.bundle, trigger);
      const t0 = performance.now();
      let generation: string;
      try {
        const res = await this.d.writer.publish(got.bundle.files, signal);
        generation = res.generation;
        this.noteRemoved(res.removed);
      } catch (err) {
        if (!isAbort(err)) this.unpublished = got;
        throw err;
      }
      this.unpublished = undefined;
      log.info({ step: 'publish', durationMs: Math.round(performance.now() - t0), generation }, 'publish done');
      const b = got.bundle;
      const granted = b.intermediate.notAfter - b.intermediate.notBefore;
      // A root rotation's add or remove: new root-cert.pem, same intermediate. Nothing was issued.
      const rootsOnly = this.bundle !== undefined && this.bundle.intermediate.serial === b.intermediate.serial;
      this.adopt(b);
      if (rootsOnly) metrics.recordAdopted({ at: clock.now(), bundle: this.facts(b), lifetimeMs: granted });
      else metrics.recordIssued({ at: clock.now(), bundle: this.facts(b), grantedMs: granted, requestedTtlMs: got.requestedTtlMs, tokenExpiresAt: source.tokenExpiresAt() });
      const i = b.intermediate;
      if (rootsOnly) {
        log.info({ trigger, serial: i.serial, roots: b.roots.map((r) => r.subject), generation, durationMs: Math.round(performance.now() - start) }, 'published new trust roots with the same intermediate');
        return b;
      }
      log.info(
        {
          trigger,
          serial: i.serial,
          notBefore: new Date(i.notBefore).toISOString(),
          notAfter: new Date(i.notAfter).toISOString(),
          lifetime: formatDuration(granted),
          renewAt: new Date(this.nextRenewal!).toISOString(),
          generation,
          durationMs: Math.round(performance.now() - start),
        },
        source.mints ? 'published a new intermediate' : 'published the bundle from its source',
      );
      return b;
    } catch (err) {
      if (isAbort(err)) throw err;
      const e = asAgentError(err, source.mints ? 'issuing the intermediate' : 'reading the bundle from its source');
      metrics.recordFailure(e.reason);
      // Logged once, by the caller, with what it decides to do next (retry when, or give up).
      throw e;
    }
  }

  /**
   * Publishes the bundle with `serial` again as a new generation (a fresh fsnotify event for istiod),
   * unless another bundle was published meanwhile: the check happens when the writer's turn comes.
   */
  async republish(serial: string, signal?: AbortSignal): Promise<void> {
    const done = await this.d.writer.publishIf(() => (this.bundle?.intermediate.serial === serial ? this.bundle.files : undefined), signal);
    if (!done) return;
    this.d.log.info({ generation: done.generation, serial }, 're-published the current generation');
  }

  /** istiod runs on the published files from now on (the sidecar phase): see SourceRequest.istiodRunning. */
  markIstiodRunning(): void {
    this.istiodRunning = true;
  }

  /** Asks the source whether it holds something that should replace what is published (see BundleSource.changed). */
  async sourceChanged(signal?: AbortSignal): Promise<boolean> {
    const { trigger: _t, ...req } = this.request('changed');
    return (await this.d.source.changed?.(req, signal)) ?? false;
  }

  private request(trigger: 'renew' | 'changed') {
    return { published: this.publishedRoots(), current: this.bundle, trigger, istiodRunning: this.istiodRunning };
  }

  /** Entries someone planted in the agent's own names under CERT_DIR, removed by the writer. */
  private noteRemoved(removed: readonly string[]): void {
    if (removed.length) this.d.log.warn({ removed }, 'removed entries in CERT_DIR the agent did not make (check what else writes there: only the agent should)');
  }

  /** The bundle whose publish failed, if it is still worth publishing now. */
  private pendingPublish(): SourcedBundle | undefined {
    const u = this.unpublished;
    if (!u) return undefined;
    try {
      verifyBundle(u.bundle.files, { now: this.d.clock.now() });
    } catch {
      this.unpublished = undefined;
      return undefined;
    }
    if (this.d.source.mints && this.isDue(u.bundle)) {
      this.unpublished = undefined;
      return undefined;
    }
    this.d.log.info({ serial: u.bundle.intermediate.serial }, 'publishing the bundle whose write failed, without asking the source again');
    return u;
  }

  /** Throws BundleRefusedError when `next` would leave istiod worse off than the current bundle. */
  private judge(next: VerifiedBundle, trigger: RenewTrigger): void {
    const now = this.d.clock.now();
    const n = next.intermediate;
    const lifetime = formatDuration(n.notAfter - n.notBefore);
    if (this.d.source.mints && this.isDue(next, now)) {
      throw new BundleRefusedError(
        `while checking the new intermediate: Vault granted ${lifetime} (notAfter ${new Date(n.notAfter).toISOString()}), which is due for renewal the moment it arrives (RENEW_BEFORE ${this.d.renewBeforeMs === undefined ? 'is a third of the lifetime' : formatDuration(this.d.renewBeforeMs)}); not published, so the agent does not ask Vault again every few seconds (raise max_ttl on the PKI role or mount, check the issuer's expiry, or lower RENEW_BEFORE)`,
        'LIFETIME_TOO_SHORT',
      );
    }
    const cur = this.bundle;
    if (cur && this.isReady() && trigger !== 'rotate' && n.notAfter < cur.intermediate.notAfter - SAME_SECOND_MS) {
      const remaining = n.notAfter - now;
      throw new BundleRefusedError(
        `while checking the new intermediate: it expires at ${new Date(n.notAfter).toISOString()}, before the one istiod uses (${new Date(cur.intermediate.notAfter).toISOString()}); keeping the current one (a rotation asked for with SIGHUP or POST /rotate replaces it anyway)`,
        'SHORTER_THAN_CURRENT',
        // From then on a bundle of the same length lasts at least as long as the current one.
        cur.intermediate.notAfter - remaining,
      );
    }
  }

  private publishedRoots() {
    if (this.bundle) return { bytes: this.bundle.files.rootCert, roots: this.bundle.roots, enforce: this.isReady() };
    return this.diskRoots && { ...this.diskRoots, enforce: false };
  }

  private facts(b: VerifiedBundle) {
    return { intermediateNotAfter: b.intermediate.notAfter, rootNotAfter: b.anchor.notAfter, renewAt: this.nextRenewal };
  }

  private adopt(b: VerifiedBundle): void {
    this.bundle = b;
    this.diskRoots = undefined;
    this.nextRenewal = renewalInstant(b.intermediate.notBefore, b.intermediate.notAfter, this.d.renewBeforeMs, this.d.random());
  }
}
