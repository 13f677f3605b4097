/**
 * The sidecar's loop: adopt the bundle on disk, sleep until it is due, renew, repeat; on failure keep
 * the current files and retry with backoff (never past the current certificate's expiry without a
 * try). A rotation request (SIGHUP, POST /rotate) wakes it at once. After each publish it checks in the
 * background that istiod loaded the new intermediate. All waiting goes through the injected Clock.
 */
import type { Logger } from 'pino';
import { isAbort } from '../common/abort.js';
import { sleepUntil, type Clock } from '../common/clock.js';
import type { AgentError } from '../common/errors.js';
import type { AgentMetrics } from '../telemetry/metrics.js';
import { retryDelay } from './backoff.js';
import { waitForIstiod, type FetchText } from './istiod-sync.js';
import type { Renewer, RenewTrigger } from './renewer.js';

export interface LoopDeps {
  renewer: Renewer;
  clock: Clock;
  random: () => number;
  log: Logger;
  metrics: AgentMetrics;
  istiod?: { url: string; timeoutMs: number; fetchText: FetchText };
}

export class RenewalLoop {
  /** A rotation was asked for and has not succeeded yet (a failed one is retried with backoff). */
  private rotationPending = false;
  /** Counts rotation requests, so a request that arrives while the loop decides is never lost. */
  private requests = 0;
  private wake = new AbortController();
  private sync: AbortController | undefined;
  private syncDone: Promise<void> = Promise.resolve();

  constructor(private readonly d: LoopDeps) {}

  /** Asks for a new intermediate now; a request during an issuance in flight asks for another after it. */
  requestRotation(source: string): void {
    this.d.log.info({ source }, 'rotation requested');
    this.rotationPending = true;
    this.requests++;
    this.wake.abort();
  }

  /** Runs until `signal` aborts. Resolves (never rejects) after shutdown. */
  async run(signal: AbortSignal): Promise<void> {
    const { renewer, clock, log } = this.d;
    if (!renewer.current) {
      const state = await renewer.inspect();
      if (state.kind === 'valid') {
        log.info({ serial: state.bundle.intermediate.serial, due: state.due, renewAt: new Date(renewer.renewAt!).toISOString() }, 'adopted the bundle on disk');
      } else {
        log.warn({ state: state.kind, ...(state.kind === 'invalid' ? { problem: state.problem } : {}) }, 'no valid bundle on disk; issuing one');
      }
    }
    // Whatever istiod started with (adopted here, or just issued by `run`'s first phase) is checked too.
    if (renewer.current) this.startSync(renewer.current.intermediate.serial, renewer.current.intermediate.notAfter, signal);
    let attempt = 0;
    while (!signal.aborted) {
      const seen = this.requests;
      const tidyAt = renewer.tidyAt ?? Infinity;
      if (clock.now() >= tidyAt) {
        await renewer.tidy();
        continue;
      }
      const trigger = this.trigger();
      if (trigger === undefined) {
        await this.sleep(Math.min(renewer.renewAt!, tidyAt), signal, seen);
        continue;
      }
      // A request arriving during this issuance asks for another one after it.
      this.rotationPending = false;
      const previousNotAfter = renewer.current?.intermediate.notAfter;
      try {
        const bundle = await renewer.renew(trigger, signal);
        attempt = 0;
        this.startSync(bundle.intermediate.serial, bundle.intermediate.notAfter, signal, previousNotAfter);
      } catch (err) {
        if (signal.aborted) break;
        // A rotation that failed is still owed: retried with backoff like a due renewal.
        if (trigger === 'rotate') this.rotationPending = true;
        const e = err as AgentError;
        const delay = retryDelay({ attempt, random: this.d.random(), retryable: e.retryable, now: clock.now(), currentNotAfter: renewer.current?.intermediate.notAfter });
        attempt++;
        log.warn({ reason: e.reason, attempt, retryInMs: delay, keeping: renewer.current?.intermediate.serial }, 'keeping the current bundle; will retry');
        await this.sleep(Math.min(clock.now() + delay, renewer.tidyAt ?? Infinity), signal, seen);
      }
    }
    this.sync?.abort();
    await this.syncDone;
  }

  private trigger(): RenewTrigger | undefined {
    const r = this.d.renewer;
    if (this.rotationPending) return 'rotate';
    if (!r.current) return 'missing';
    if (!r.isReady()) return 'invalid';
    if (this.d.clock.now() >= r.renewAt!) return 'due';
    return undefined;
  }

  /**
   * Sleeps until `deadline`, a new rotation request (one after `seen`), or shutdown, whichever comes first.
   */
  private async sleep(deadline: number, signal: AbortSignal, seen: number): Promise<void> {
    if (this.requests !== seen) return;
    this.wake = new AbortController();
    try {
      await sleepUntil(this.d.clock, deadline, AbortSignal.any([signal, this.wake.signal]));
    } catch (err) {
      if (!isAbort(err)) throw err;
    }
  }

  /**
   * Confirms in the background that istiod serves `notAfter`; re-publishes once if it does not. When the
   * new notAfter equals the previous one (Vault capped both at the issuer's expiry), istiod's metric
   * cannot tell them apart: the state is unknown.
   */
  private startSync(serial: string, notAfter: number, signal: AbortSignal, previousNotAfter?: number): void {
    const istiod = this.d.istiod;
    if (!istiod) return;
    if (previousNotAfter !== undefined && Math.abs(previousNotAfter - notAfter) < 1000) {
      this.sync?.abort();
      this.d.metrics.setInSync(undefined);
      this.d.log.info({ serial }, 'cannot tell whether istiod loaded the new intermediate: it expires at the same second as the previous one');
      return;
    }
    this.sync?.abort();
    const ctl = new AbortController();
    this.sync = ctl;
    const both = AbortSignal.any([signal, ctl.signal]);
    const { clock, log, metrics, renewer } = this.d;
    const check = () => waitForIstiod({ url: istiod.url, notAfterMs: notAfter, timeoutMs: istiod.timeoutMs, clock, fetchText: istiod.fetchText, signal: both });
    this.syncDone = (async () => {
      let res = await check();
      if (res.state === 'out_of_sync' && renewer.current?.intermediate.serial === serial) {
        log.warn({ serial, istiodReports: res.seen }, 'istiod does not report the new intermediate yet; re-publishing once');
        await renewer.republish(serial, both);
        res = await check();
      }
      if (both.aborted) return;
      if (res.state === 'in_sync') {
        metrics.setInSync(true);
        log.info({ serial }, 'istiod loaded the new intermediate');
      } else if (res.state === 'out_of_sync') {
        metrics.setInSync(false);
        log.error(
          { serial, expectedNotAfter: Math.floor(notAfter / 1000), istiodReports: res.seen },
          'istiod still serves another intermediate: it rejected the reload (see its log: a root-cert.pem change without ISTIO_MULTIROOT_MESH, or ROOT_CA_DIR not this dir) or was started before the bundle existed',
        );
      } else {
        metrics.setInSync(undefined);
        log.info({ url: istiod.url, why: res.why ?? 'no citadel_server_cert_chain_expiry_timestamp: metrics off or unreachable' }, 'cannot tell whether istiod loaded the new intermediate');
      }
    })().catch((err) => {
      if (!isAbort(err)) log.warn({ err }, 'istiod sync check failed');
    });
  }
}
