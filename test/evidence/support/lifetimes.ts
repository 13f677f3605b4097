/**
 * Short lifetimes for tests against a real OpenBao, which backdates notBefore by 30 s and cuts notAfter
 * to the whole second. The agent refuses a new intermediate that is due the moment it arrives
 * (lifetime_too_short, not retried for 30 s), so no pair may make a fresh bundle due at once: a
 * CERT_TTL=10s with RENEW_BEFORE=9900ms bundle is due ~0.1 s after issuance and is refused under load.
 */

/**
 * Renews a few seconds after each publish, never on arrival: due 7-8 s after issuance (lifetime 50 s,
 * renewal window 12 s).
 */
export const RENEWS_LATER = { CERT_TTL: '20s', RENEW_BEFORE: '12s' } as const;

/**
 * A seed bundle that an agent running with RENEWS_LATER finds due at once (its 10 s left are under
 * RENEW_BEFORE=12s), while RENEW_BEFORE=5s keeps the seed itself from being due on arrival. So the next
 * `init` renews without the test waiting for time to pass.
 */
export const DUE_SEED = { CERT_TTL: '10s', RENEW_BEFORE: '5s' } as const;
