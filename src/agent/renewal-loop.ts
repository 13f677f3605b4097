/**
 * The sidecar's loop: adopt the bundle on disk, sleep until it is due, renew, repeat; on failure keep
 * the current files and retry with backoff (never past the current certificate's expiry without a
 * try; within seconds when nothing valid is left). A rotation request (SIGHUP, POST /rotate) wakes it
 * at once. A source that changes out of band (a bundle stored in Vault) is polled between renewals.
 * After each publish it checks in the background that istiod loaded the new intermediate. All waiting
 * goes through the injected Clock.
 */
import type { Logger } from 'pino';
import { isAbort } from '../common/abort.js';
import { sleepUntil, type Clock } from '../common/clock.js';
import { describeError, type AgentError } from '../common/errors.js';
import { formatDuration } from '../common/duration.js';
import type { MetricsRecorder } from '../telemetry/metrics.js';
import { retryDelay } from './backoff.js';
import { BundleRefusedError, type BundleKeeper, type RenewTrigger } from './bundle-keeper.js';
import { waitForIstiod, type FetchText } from './istiod-sync.js';

/** A poll interval is jittered by up to this share, earlier only. */
const POLL_JITTER_SHARE = 0.1;
/** While waiting to retry after Vault failed to answer, how often to look whether it is back (±20%). */
export const PROBE_EVERY_MS = 2000;

export interface LoopDeps {
  keeper: BundleKeeper;
  clock: Clock;
  random: () => number;
  log: Logger;
  metrics: MetricsRecorder;
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

  /** Adopts the bundle on disk, if valid (what `sidecar` starts with). */
  async adopt(): Promise<void> {
    const { keeper, log } = this.d;
    this.adopted = true;
    const state = await keeper.inspect();
    if (state.kind === 'valid') {
      log.info({ serial: state.bundle.intermediate.serial, due: state.due, renewAt: new Date(keeper.renewAt!).toISOString() }, 'adopted the bundle on disk');
    } else {
      log.warn({ state: state.kind, ...(state.kind === 'invalid' ? { problem: state.problem } : {}) }, 'no valid bundle on disk; issuing one');
    }
  }

  /** Runs until `signal` aborts. Resolves (never rejects) after shutdown. */
  async run(signal: AbortSignal): Promise<void> {
    const { keeper, clock, log } = this.d;
    if (!keeper.current && !this.adopted) await this.adopt();
    // Whatever istiod started with (adopted here, or just issued by `run`'s first phase) is checked too.
    if (keeper.current) this.startSync(keeper.current.intermediate.serial, keeper.current.intermediate.notAfter, signal);
    let attempt = 0;
    this.schedulePoll();
    // One look at the source at once: what changed while the agent was not running (a root added in
    // Vault, a new stored bundle) is not left waiting a poll interval, and the rotation phase is known.
    if (keeper.current && keeper.source.changed && !signal.aborted) await this.poll(signal);
    while (!signal.aborted) {
      const seen = this.requests;
      const tidyAt = keeper.tidyAt ?? Infinity;
      if (clock.now() >= tidyAt) {
        await keeper.tidy();
        continue;
      }
      const trigger = this.trigger();
      if (trigger === undefined) {
        const now = clock.now();
        const retrying = this.notBefore !== undefined && this.notBefore > now;
        const wake = Math.min(retrying ? this.notBefore! : keeper.renewAt!, this.pollAt ?? Infinity, tidyAt);
        const why = wake === tidyAt ? 'tidy' : wake === this.pollAt ? 'poll the source' : retrying ? 'retry' : 'renewal';
        log.debug({ until: new Date(wake).toISOString(), for: why }, 'waiting');
        await this.sleep(wake, signal, seen);
        if (this.pollAt !== undefined && clock.now() >= this.pollAt && !signal.aborted) await this.poll(signal);
        continue;
      }
      // A request arriving during this issuance asks for another one after it.
      this.rotationPending = false;
      const previous = keeper.current?.intermediate;
      try {
        const bundle = await keeper.renew(trigger, signal);
        attempt = 0;
        this.notBefore = undefined;
        if (bundle === 'unchanged') {
          // The source renews out of band and has nothing newer: ask again at the next poll.
          this.notBefore = clock.now() + (keeper.source.pollIntervalMs ?? 60_000);
        } else if (bundle.intermediate.serial !== previous?.serial) {
          this.startSync(bundle.intermediate.serial, bundle.intermediate.notAfter, signal, previous?.notAfter);
        }
        // Only root-cert.pem changed (a root rotation's add or remove): istiod's metrics cannot show it
        // (citadel_server_root_cert_expiry_timestamp follows the first root only), and the intermediate
        // istiod serves is the one already checked, so the sync state stays as it is.
        this.schedulePoll();
      } catch (err) {
        if (signal.aborted) break;
        // A rotation that failed is still owed: retried with backoff like a due renewal.
        if (trigger === 'rotate') this.rotationPending = true;
        // After a change the source made, the source says when to try again (its next poll), not the
        // backoff: a stored bundle that was refused stays refused until someone writes another one, and
        // that one is taken at the poll that sees it. (A due bundle is still retried with backoff.)
        const sourceDecides = trigger === 'changed';
        if (sourceDecides) this.sourceChanged = false;
        const e = err as AgentError;
        let delay = retryDelay({ attempt, random: this.d.random(), retryable: e.retryable, now: clock.now(), currentNotAfter: keeper.current?.intermediate.notAfter });
        // A refused bundle says when asking again can give a better one.
        if (e instanceof BundleRefusedError && e.retryAt !== undefined) delay = Math.max(delay, e.retryAt - clock.now());
        if (sourceDecides) delay = Math.max(0, (this.pollAt ?? clock.now()) - clock.now());
        attempt++;
        this.notBefore = clock.now() + delay;
        const fields = { reason: e.reason, retryable: e.retryable, trigger, attempt, retryInMs: Math.round(delay), keeping: keeper.isReady() ? keeper.current?.intermediate.serial : undefined, err: e };
        // One line per failure. A warning while istiod keeps a valid bundle and a retry can help; an
        // error when a person must act (policy, role, root, TTLs) or istiod has nothing valid left.
        const urgent = !e.retryable || !keeper.isReady();
        log[urgent ? 'error' : 'warn'](fields, `${keeper.source.mints ? 'issuance' : 'update from the bundle source'} failed: ${describeError(e)}${keeper.isReady() ? '; keeping the current bundle' : ''}; ${sourceDecides ? 'checking the source again' : 'retrying'} in ${formatDuration(delay)}`);
        const until = Math.min(this.notBefore, keeper.tidyAt ?? Infinity);
        // Vault did not answer (or answered 5xx): retry as soon as it is seen back, not a backoff later.
        const outage = !sourceDecides && e.retryable && (e.reason === 'vault_unreachable' || e.reason === 'vault_error');
        if (outage && keeper.source.state && delay > PROBE_EVERY_MS) await this.waitForVault(until, signal, seen);
        else await this.sleep(until, signal, seen);
      }
    }
    this.sync?.abort();
    await this.syncDone;
  }

  /** No attempt before this (a failed one's retry time); a rotation request overrides it. */
  private notBefore: number | undefined;
  /** When to ask a source that changes out of band whether it holds something new. */
  private pollAt: number | undefined;
  private sourceChanged = false;
  private adopted = false;

  private trigger(): RenewTrigger | undefined {
    const r = this.d.keeper;
    if (this.rotationPending) return 'rotate';
    if (this.notBefore !== undefined && this.d.clock.now() < this.notBefore) return undefined;
    if (!r.current) return 'missing';
    if (!r.isReady()) return 'invalid';
    if (this.sourceChanged) return 'changed';
    if (this.d.clock.now() >= r.renewAt!) return 'due';
    return undefined;
  }

  private schedulePoll(): void {
    const source = this.d.keeper.source;
    this.sourceChanged = false;
    if (!source.changed || !source.pollIntervalMs) return;
    this.pollAt = this.d.clock.now() + source.pollIntervalMs * (1 - POLL_JITTER_SHARE * this.d.random());
  }

  /** Asks the source whether it holds something new; a failure is logged and polled again later. */
  private async poll(signal: AbortSignal): Promise<void> {
    const { keeper, log } = this.d;
    try {
      const changed = await keeper.sourceChanged(signal);
      this.schedulePoll();
      if (changed) {
        log.info({ source: keeper.source.name }, 'the bundle source changed');
        this.sourceChanged = true;
      }
    } catch (err) {
      if (signal.aborted) return;
      this.schedulePoll();
      log.warn({ err, source: keeper.source.name }, 'could not check the bundle source for changes; will check again');
    }
  }

  /**
   * Sleeps until `deadline`, but looks at Vault every PROBE_EVERY_MS meanwhile and returns early once it
   * is up in a state it was not in at the failure (it answers again, or another leader was elected): a
   * retry then has a chance. A Vault that stays the same (up but failing) waits the whole backoff.
   */
  private async waitForVault(deadline: number, signal: AbortSignal, seen: number): Promise<void> {
    const { clock, log, random, keeper } = this.d;
    const look = () => keeper.source.state!(signal);
    const baseline = await look();
    while (!signal.aborted && this.requests === seen) {
      const next = Math.min(deadline, clock.now() + PROBE_EVERY_MS * (0.8 + 0.4 * random()));
      await this.sleep(next, signal, seen);
      if (clock.now() >= deadline || signal.aborted || this.requests !== seen) return;
      const now = await look();
      if (now.up && now.fingerprint !== baseline.fingerprint) {
        log.info({ was: baseline.fingerprint, now: now.fingerprint }, 'Vault is back; retrying now');
        this.notBefore = undefined;
        return;
      }
    }
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
      this.d.metrics.recordIstiodSync(undefined);
      this.d.log.info({ serial }, 'cannot tell whether istiod loaded the new intermediate: it expires at the same second as the previous one');
      return;
    }
    this.sync?.abort();
    const ctl = new AbortController();
    this.sync = ctl;
    const both = AbortSignal.any([signal, ctl.signal]);
    const { clock, log, metrics, keeper } = this.d;
    const check = () => waitForIstiod({ url: istiod.url, notAfterMs: notAfter, timeoutMs: istiod.timeoutMs, clock, fetchText: istiod.fetchText, signal: both });
    this.syncDone = (async () => {
      let res = await check();
      if (res.state === 'out_of_sync' && keeper.current?.intermediate.serial === serial) {
        log.warn({ serial, istiodReports: res.seen }, 'istiod does not report the new intermediate yet; re-publishing once');
        await keeper.republish(serial, both);
        res = await check();
      }
      if (both.aborted) return;
      if (res.state === 'in_sync') {
        metrics.recordIstiodSync(true);
        log.info({ serial }, 'istiod loaded the new intermediate');
      } else if (res.state === 'out_of_sync') {
        metrics.recordIstiodSync(false);
        log.error(
          { serial, expectedNotAfter: Math.floor(notAfter / 1000), istiodReports: res.seen },
          'istiod still serves another intermediate: it rejected the reload (see its log: a root-cert.pem change without ISTIO_MULTIROOT_MESH, or ROOT_CA_DIR not this dir) or was started before the bundle existed',
        );
      } else {
        metrics.recordIstiodSync(undefined);
        log.info({ url: istiod.url, why: res.why ?? 'no citadel_server_cert_chain_expiry_timestamp: metrics off or unreachable' }, 'cannot tell whether istiod loaded the new intermediate');
      }
    })().catch((err) => {
      if (!isAbort(err)) log.warn({ err }, 'istiod sync check failed');
    });
  }
}
