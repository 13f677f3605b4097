/**
 * Prometheus metrics, prefix istiod_vault_agent_, units in seconds. One Registry per agent (never the
 * global one), so tests and several agents in one process do not share counters. Labels are bounded:
 * `reason` takes only FAILURE_REASONS, `operation` only the Vault call kinds, `code` HTTP statuses or a
 * short network error class. No serial, subject or token ever becomes a label.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FAILURE_REASONS, type FailureReason } from '../common/errors.js';

export const METRIC_PREFIX = 'istiod_vault_agent_';

/** What a bundle looks like to the metrics: the expiries istiod lives with, and the next renewal. */
export interface BundleFacts {
  intermediateNotAfter: number;
  rootNotAfter: number;
  /** When the next renewal is due (epoch ms); undefined when the source renews out of band. */
  renewAt: number | undefined;
}

/**
 * What the agent records as things happen (an issuance, a failure, an adoption) rather than individual
 * gauges, so every caller keeps them consistent. AgentMetrics keeps it for /metrics; `init`, which
 * serves no metrics, discards it (discarded-metrics.ts).
 */
export interface MetricsRecorder {
  /** Sets what `ready` reports at each scrape. */
  setReadyProbe(fn: () => boolean): void;
  /** Callback shape the Vault transport reports each request with. */
  observeVault(operation: string, code: string, seconds: number): void;
  /** A new bundle was published: it is what istiod uses from now on. */
  recordIssued(o: { at: number; bundle: BundleFacts; grantedMs: number; requestedTtlMs: number | undefined; tokenExpiresAt: number | undefined }): void;
  /** A valid bundle found on disk was adopted (nothing was issued). */
  recordAdopted(o: { at: number; bundle: BundleFacts; lifetimeMs: number }): void;
  /** The renewal time moved without a new bundle (a refusal pushed it, a hold). */
  recordRenewalAt(renewAt: number | undefined): void;
  /** An attempt failed; nothing was published. */
  recordFailure(reason: FailureReason): void;
  /** Whether istiod reports the published intermediate; undefined when it cannot be told. */
  recordIstiodSync(state: boolean | undefined): void;
  /** Where a root rotation stands (see src/agent/root-rotation.ts). */
  recordRootRotation(o: { phase: string; nextAt: number | undefined; restartRequired: boolean }): void;
}

/** The agent's metrics in a prom-client Registry, served on /metrics. The gauges themselves are private. */
export class AgentMetrics implements MetricsRecorder {
  readonly registry = new Registry();
  private readonly certExpiration: Gauge<'cert'>;
  private readonly renewalTime: Gauge;
  private readonly issuances: Counter<'result' | 'reason'>;
  private readonly vaultRequestDuration: Histogram<'operation' | 'code'>;
  private readonly lastSuccess: Gauge;
  private readonly ready: Gauge;
  private readonly buildInfo: Gauge<'version'>;
  private readonly requestedTtl: Gauge;
  private readonly grantedTtl: Gauge;
  private readonly istiodInSync: Gauge;
  private readonly tokenExpiration: Gauge;
  private readonly rotationPhase: Gauge<'phase'>;
  private readonly rotationNextStep: Gauge;
  private readonly rotationRestartRequired: Gauge;

  private readyProbe: () => boolean = () => false;

  /** Sets what `ready` reports at each scrape. */
  setReadyProbe(fn: () => boolean): void {
    this.readyProbe = fn;
  }

  constructor(version: string, opts: { defaultMetrics?: boolean } = {}) {
    const r = [this.registry];
    const p = METRIC_PREFIX;
    this.certExpiration = new Gauge({ name: `${p}cert_expiration_timestamp_seconds`, help: 'notAfter of the certificate istiod is using, by cert (intermediate, root), as a Unix timestamp', labelNames: ['cert'], registers: r });
    this.renewalTime = new Gauge({ name: `${p}cert_renewal_timestamp_seconds`, help: 'When the next renewal of the intermediate is due, as a Unix timestamp', registers: r });
    this.issuances = new Counter({ name: `${p}issuances_total`, help: 'Issuance attempts by result (success, failure) and failure reason', labelNames: ['result', 'reason'], registers: r });
    this.vaultRequestDuration = new Histogram({
      name: `${p}vault_request_duration_seconds`,
      help: 'Latency of Vault requests by operation (login, sign, read_issuer, read, token_*) and HTTP status or network error',
      labelNames: ['operation', 'code'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    });
    this.lastSuccess = new Gauge({ name: `${p}last_success_timestamp_seconds`, help: 'Last successful issuance or adoption of a valid bundle, as a Unix timestamp', registers: r });
    this.ready = new Gauge({
      name: `${p}ready`,
      help: '1 when the cert dir holds a valid, unexpired bundle',
      registers: r,
      // Evaluated at scrape time, so an intermediate that expires between events still reads 0.
      collect: () => {
        this.ready.set(this.readyProbe() ? 1 : 0);
      },
    });
    this.buildInfo = new Gauge({ name: `${p}build_info`, help: 'Build information; always 1', labelNames: ['version'], registers: r });
    this.requestedTtl = new Gauge({ name: `${p}cert_requested_ttl_seconds`, help: 'Lifetime requested from Vault for the intermediate', registers: r });
    this.grantedTtl = new Gauge({ name: `${p}cert_granted_ttl_seconds`, help: 'Lifetime Vault granted (notAfter - notBefore); below requested when a Vault max TTL or the root expiry caps it', registers: r });
    this.istiodInSync = new Gauge({ name: `${p}istiod_in_sync`, help: "1 when istiod reports the published intermediate's expiry, 0 when it does not; absent when unknown", registers: r });
    this.tokenExpiration = new Gauge({ name: `${p}vault_token_expiration_timestamp_seconds`, help: "Expiry of the agent's Vault token, as a Unix timestamp", registers: r });

    this.rotationPhase = new Gauge({ name: `${p}root_rotation_phase`, help: 'Root rotation phase of what is published (steady, added, switched, held): 1 for the current phase', labelNames: ['phase'], registers: r });
    this.rotationNextStep = new Gauge({ name: `${p}root_rotation_next_step_timestamp_seconds`, help: 'When the root rotation moves on by itself (end of the soak, removal of the old root), as a Unix timestamp; absent when nothing is scheduled', registers: r });
    this.rotationRestartRequired = new Gauge({ name: `${p}root_rotation_restart_required`, help: '1 when a root change is waiting for istiod to restart (istiod runs without ISTIO_MULTIROOT_MESH)', registers: r });

    this.buildInfo.set({ version }, 1);
    // An unlabelled gauge reads 0 until set, which would claim "out of sync" or "expired in 1970":
    // absent until known.
    for (const g of [this.renewalTime, this.lastSuccess, this.requestedTtl, this.grantedTtl, this.istiodInSync, this.tokenExpiration, this.rotationNextStep]) g.remove();
    this.rotationRestartRequired.set(0);
    this.issuances.inc({ result: 'success', reason: 'none' }, 0);
    for (const reason of FAILURE_REASONS) this.issuances.inc({ result: 'failure', reason }, 0);
    // prom-client samples event-loop delay every 10 ms by default: a timer waking an otherwise idle
    // sidecar 100 times a second (measured: ~0.9% of a core). Once a second is plenty here.
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 1000 });
  }

  /** Callback shape the Vault transport reports each request with. */
  observeVault = (operation: string, code: string, seconds: number): void => {
    this.vaultRequestDuration.observe({ operation, code }, seconds);
  };

  /** A new bundle was published: it is what istiod uses from now on. */
  recordIssued(o: { at: number; bundle: BundleFacts; grantedMs: number; requestedTtlMs: number | undefined; tokenExpiresAt: number | undefined }): void {
    this.issuances.inc({ result: 'success', reason: 'none' });
    this.lastSuccess.set(o.at / 1000);
    this.describe(o.bundle);
    this.grantedTtl.set(o.grantedMs / 1000);
    if (o.requestedTtlMs !== undefined) this.requestedTtl.set(o.requestedTtlMs / 1000);
    if (o.tokenExpiresAt !== undefined) this.tokenExpiration.set(o.tokenExpiresAt / 1000);
  }

  /** A valid bundle found on disk was adopted (nothing was issued). */
  recordAdopted(o: { at: number; bundle: BundleFacts; lifetimeMs: number }): void {
    this.lastSuccess.set(o.at / 1000);
    this.describe(o.bundle);
    this.grantedTtl.set(o.lifetimeMs / 1000);
  }

  /** The renewal time moved without a new bundle (a refusal pushed it, a hold). */
  recordRenewalAt(renewAt: number | undefined): void {
    if (renewAt === undefined) this.renewalTime.remove();
    else this.renewalTime.set(renewAt / 1000);
  }

  /** An attempt failed; nothing was published. */
  recordFailure(reason: FailureReason): void {
    this.issuances.inc({ result: 'failure', reason });
  }

  /** Whether istiod reports the published intermediate; undefined when it cannot be told. */
  recordIstiodSync(state: boolean | undefined): void {
    if (state === undefined) this.istiodInSync.remove();
    else this.istiodInSync.set(state ? 1 : 0);
  }

  /** Where a root rotation stands (see src/agent/root-rotation.ts). */
  recordRootRotation(o: { phase: string; nextAt: number | undefined; restartRequired: boolean }): void {
    this.rotationPhase.reset();
    this.rotationPhase.set({ phase: o.phase }, 1);
    if (o.nextAt === undefined) this.rotationNextStep.remove();
    else this.rotationNextStep.set(o.nextAt / 1000);
    this.rotationRestartRequired.set(o.restartRequired ? 1 : 0);
  }

  private describe(b: BundleFacts): void {
    this.certExpiration.set({ cert: 'intermediate' }, b.intermediateNotAfter / 1000);
    this.certExpiration.set({ cert: 'root' }, b.rootNotAfter / 1000);
    this.recordRenewalAt(b.renewAt);
  }
}
