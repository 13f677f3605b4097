/**
 * When to renew: pure functions of the certificate's own validity, never of the TTL that was asked for
 * (Vault may cap it). Jitter only ever moves renewal earlier, so replicas and clusters that issued at
 * the same moment do not all call Vault at the same second, and no renewal is later than configured.
 */
import { formatDuration } from '../common/duration.js';

/**
 * istiod signs workload certificates for 24h by default (its MAX_WORKLOAD_CERT_TTL). Up to Istio 1.29 it
 * does not cap them at the intermediate's expiry; from 1.30 it does (istio/istio#59766).
 */
export const WORKLOAD_CERT_TTL_MS = 24 * 3_600_000;
/** Margin on top of the workload certificate lifetime that RENEW_BEFORE should keep. */
export const RENEW_MARGIN_MS = 3_600_000;
/** Jitter is at most this share of the renewal window... */
export const JITTER_SHARE = 0.05;
/** ...and at most this long. */
export const MAX_JITTER_MS = 10 * 60_000;
/** Whatever RENEW_BEFORE says, a certificate is kept for at least this share of its life before renewal. */
export const MIN_USE_SHARE = 1 / 3;

/** How long before notAfter renewal starts: RENEW_BEFORE, or a third of the lifetime, capped at 2/3 of it. */
export function renewWindow(notBefore: number, notAfter: number, renewBeforeMs: number | undefined): number {
  const lifetime = Math.max(0, notAfter - notBefore);
  const wanted = renewBeforeMs ?? lifetime / 3;
  return Math.min(wanted, lifetime * (1 - MIN_USE_SHARE));
}

/** The instant without jitter: from here on the bundle is due (used by `init` and adoption). */
export function dueAt(notBefore: number, notAfter: number, renewBeforeMs: number | undefined): number {
  return notAfter - renewWindow(notBefore, notAfter, renewBeforeMs);
}

/** The scheduled renewal instant: dueAt minus a random jitter in [0, min(5% of window, 10 min)). `random` in [0, 1). */
export function renewalInstant(notBefore: number, notAfter: number, renewBeforeMs: number | undefined, random: number): number {
  const window = renewWindow(notBefore, notAfter, renewBeforeMs);
  const jitter = Math.min(window * JITTER_SHARE, MAX_JITTER_MS) * random;
  return Math.round(notAfter - window - jitter);
}

/**
 * A warning for the start-up log when the renewal window leaves workload certificates signed just before
 * renewal outliving the intermediate; undefined when the setting is safe.
 */
export function renewBeforeWarning(renewBeforeMs: number | undefined, certTtlMs: number): string | undefined {
  const window = renewBeforeMs ?? certTtlMs / 3;
  if (window >= WORKLOAD_CERT_TTL_MS + RENEW_MARGIN_MS) return undefined;
  return (
    `RENEW_BEFORE is ${formatDuration(window)} (${renewBeforeMs === undefined ? 'a third of CERT_TTL' : 'set'}): under 25h. ` +
    "istiod up to Istio 1.29 signs workload certificates for their whole lifetime (24h by default) without capping them at the intermediate's expiry: one signed in the intermediate's last 24h outlives it and stops verifying when the intermediate expires, until the workload renews it. " +
    "istiod 1.30 and later caps a workload certificate's notAfter at the intermediate's (istio/istio#59766): none outlives it, but those signed in its last 24h are shorter and renewed sooner. " +
    'Use RENEW_BEFORE >= 25h in production (and CERT_TTL >= 75h for the default)'
  );
}
