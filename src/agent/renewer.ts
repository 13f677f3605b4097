/**
 * The agent's state: which verified bundle istiod uses, when it is due, and the two ways it changes
 * (adopt what is on disk, or issue and publish a new one). Modes (init, sidecar, run) decide WHEN to
 * call it; this decides nothing about timing. Every outcome is logged and counted here, once.
 */
import type { Logger } from 'pino';
import { AbortedError, type Clock } from '../common/clock.js';
import { isAbort } from '../common/abort.js';
import { asAgentError, describeError } from '../common/errors.js';
import { formatDuration } from '../common/duration.js';
import type { VerifiedBundle } from '../pki/bundle.js';
import { certsFromPem, type CertInfo } from '../pki/cert-info.js';
import type { SubjectSpec } from '../pki/csr.js';
import type { GeneratedKey, KeySpec } from '../pki/keys.js';
import { verifyBundle } from '../pki/verify.js';
import { readCertDir, visibleBundlePresent } from '../store/cert-dir-reader.js';
import type { CertDirWriter } from '../store/cert-dir-writer.js';
import type { AgentMetrics } from '../telemetry/metrics.js';
import type { VaultCa } from '../vault/vault-ca.js';
import { issueBundle } from './issue-bundle.js';
import { dueAt, renewalInstant } from './renewal-policy.js';

export interface RenewerDeps {
  vault: VaultCa;
  writer: CertDirWriter;
  clock: Clock;
  /** Uniform in [0, 1); injected so jitter is reproducible in tests. */
  random: () => number;
  log: Logger;
  metrics: AgentMetrics;
  certDir: string;
  key: KeySpec;
  subject: SubjectSpec;
  certTtlMs: number;
  renewBeforeMs: number | undefined;
  signPath: string;
  extraRoots: () => readonly CertInfo[];
  generate?: (spec: KeySpec) => Promise<GeneratedKey>;
}

export type DirState =
  | { kind: 'valid'; bundle: VerifiedBundle; due: boolean }
  | { kind: 'absent' }
  | { kind: 'invalid'; problem: string };

export type RenewTrigger = 'missing' | 'invalid' | 'due' | 'rotate';

export class Renewer {
  private bundle: VerifiedBundle | undefined;
  /** root-cert.pem on disk when no valid bundle could be adopted (its bytes are still worth keeping). */
  private diskRoots: { bytes: string; roots: readonly CertInfo[] } | undefined;
  private nextRenewal: number | undefined;

  constructor(private readonly d: RenewerDeps) {
    d.metrics.setReadyProbe(() => this.isReady());
  }

  get current(): VerifiedBundle | undefined {
    return this.bundle;
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
    return { kind: 'valid', bundle: b, due: this.isDue(b) };
  }

  /**
   * Issues a new intermediate and publishes it. Counts and logs the outcome. Rethrows the failure as an
   * AgentError (or AbortedError on shutdown, which is neither counted nor published).
   */
  async renew(trigger: RenewTrigger, signal?: AbortSignal): Promise<VerifiedBundle> {
    const { log, metrics, clock } = this.d;
    const start = performance.now();
    log.info({ trigger }, 'issuing a new intermediate');
    try {
      const issued = await issueBundle(
        {
          vault: this.d.vault,
          clock,
          log,
          key: this.d.key,
          subject: this.d.subject,
          certTtlMs: this.d.certTtlMs,
          signPath: this.d.signPath,
          extraRoots: this.d.extraRoots(),
          published: this.publishedRoots(),
          generate: this.d.generate,
        },
        signal,
      );
      if (signal?.aborted) throw new AbortedError();
      const t0 = performance.now();
      const { generation } = await this.d.writer.publish(issued.bundle.files, signal);
      log.info({ step: 'publish', durationMs: Math.round(performance.now() - t0), generation }, 'publish done');
      metrics.requestedTtl.set(issued.requestedTtlMs / 1000);
      this.adopt(issued.bundle, issued.grantedMs);
      metrics.recordSuccess(clock.now());
      const tokenExp = this.d.vault.tokenExpiresAt();
      if (tokenExp !== undefined) metrics.tokenExpiration.set(tokenExp / 1000);
      const i = issued.bundle.intermediate;
      log.info(
        {
          trigger,
          serial: i.serial,
          notBefore: new Date(i.notBefore).toISOString(),
          notAfter: new Date(i.notAfter).toISOString(),
          lifetime: formatDuration(issued.grantedMs),
          renewAt: new Date(this.nextRenewal!).toISOString(),
          generation,
          durationMs: Math.round(performance.now() - start),
        },
        'published a new intermediate',
      );
      return issued.bundle;
    } catch (err) {
      if (isAbort(err)) throw err;
      const e = asAgentError(err, 'issuing the intermediate');
      metrics.recordFailure(e.reason);
      log.error({ reason: e.reason, retryable: e.retryable, err: e, trigger }, `issuance failed: ${describeError(e)}`);
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

  private publishedRoots() {
    if (this.bundle) return { bytes: this.bundle.files.rootCert, roots: this.bundle.roots, enforce: this.isReady() };
    return this.diskRoots && { ...this.diskRoots, enforce: false };
  }

  private adopt(b: VerifiedBundle, grantedMs?: number): void {
    this.bundle = b;
    this.diskRoots = undefined;
    this.nextRenewal = renewalInstant(b.intermediate.notBefore, b.intermediate.notAfter, this.d.renewBeforeMs, this.d.random());
    this.d.metrics.setBundle({
      intermediateNotAfter: b.intermediate.notAfter,
      rootNotAfter: b.anchor.notAfter,
      renewAt: this.nextRenewal,
      grantedMs: grantedMs ?? b.intermediate.notAfter - b.intermediate.notBefore,
    });
    if (grantedMs === undefined) this.d.metrics.lastSuccess.set(this.d.clock.now() / 1000);
  }
}
