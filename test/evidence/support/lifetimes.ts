/**
 * Lifetimes for tests against a real OpenBao, which backdates notBefore by 30 s and cuts notAfter to
 * the whole second. The agent refuses a new intermediate that is due the moment it arrives
 * (lifetime_too_short, not retried for 30 s), so no pair may make a fresh bundle due at once: a
 * CERT_TTL=10s with RENEW_BEFORE=9900ms bundle is due ~0.1 s after issuance and is refused under load.
 */

/**
 * A seed bundle: valid for a minute (long enough for a slow, loaded machine to get to the next step),
 * and RENEW_BEFORE=5s keeps it from being due on arrival, so the seeding `init` publishes it.
 */
export const DUE_SEED = { CERT_TTL: '60s', RENEW_BEFORE: '5s' } as const;

/**
 * For the run after a DUE_SEED: RENEW_BEFORE=2m makes the seed due at once (its renewal window is
 * capped at two thirds of its 90 s lifetime, i.e. all of what is left), so the next `init` renews
 * without the test waiting for time to pass; what it issues lives an hour, never due nor expired
 * during a test.
 */
export const AFTER_SEED = { CERT_TTL: '1h', RENEW_BEFORE: '2m' } as const;
