/**
 * Which redirects from Vault the agent follows. A redirected request carries the Vault token, the
 * login JWT or secret_id, or the CSR, so it may only go where the operator sent the agent: VAULT_ADDR's
 * origin (scheme, host, port) or an origin listed in VAULT_REDIRECT_ORIGINS (the nodes of an HA cluster
 * whose standbys redirect to the active node instead of forwarding). Only 307/308 are followed: they
 * keep the method and body, which is what a Vault standby means; 301/302/303 would turn a POST into a
 * GET, and Vault never sends them. Never from https to http, and only a few hops. Every address listed in
 * VAULT_ADDR counts as VAULT_ADDR's origin.
 *
 * A refusal is permanent, except a 307/308 to an origin that is not allowed: during a leader election
 * every standby of a healthy HA cluster redirects writes to the address of the active node that just
 * died (OpenBao 2.7 does this even with request forwarding on), so behind a load-balanced VAULT_ADDR
 * that redirect is routine for a few seconds. It is still never followed; asking VAULT_ADDR again later
 * reaches a node that forwards to the new leader.
 */

export const MAX_REDIRECTS = 3;

export type RedirectDecision = { follow: true; next: URL } | { follow: false; why: string; retryable: boolean };

export interface RedirectPolicy {
  /** The origins a request may go to: VAULT_ADDR's first, then the listed ones. */
  readonly origins: readonly string[];
  decide(from: URL, status: number, location: string | undefined, hops: number): RedirectDecision;
}

export function createRedirectPolicy(vaultAddrs: string | readonly string[], extraOrigins: readonly string[]): RedirectPolicy {
  const homes = [...new Set((typeof vaultAddrs === 'string' ? [vaultAddrs] : vaultAddrs).map((a) => new URL(a).origin))];
  const home = homes.join(', ');
  const origins = [...homes, ...extraOrigins.map((o) => new URL(o).origin).filter((o) => !homes.includes(o))];
  return {
    origins,
    decide(from, status, location, hops) {
      if (location === undefined || location === '') return { follow: false, why: `HTTP ${status} without a Location`, retryable: false };
      let next: URL;
      try {
        next = new URL(location, from);
      } catch {
        return { follow: false, why: `HTTP ${status} to an unparsable Location`, retryable: false };
      }
      if (status !== 307 && status !== 308) {
        return { follow: false, why: `HTTP ${status} would re-send the request with another method; only 307/308 are followed`, retryable: false };
      }
      if (from.protocol === 'https:' && next.protocol !== 'https:') {
        return { follow: false, why: 'it downgrades https to http', retryable: false };
      }
      if (!origins.includes(next.origin)) {
        return {
          follow: false,
          why: `${next.origin} is not VAULT_ADDR's origin (${home})${origins.length > homes.length ? ` nor listed in VAULT_REDIRECT_ORIGINS` : ''}; retried (standbys redirect to the old active node until a new one is elected); if it persists and it is a node of your Vault cluster, list it in VAULT_REDIRECT_ORIGINS`,
          retryable: true,
        };
      }
      if (hops >= MAX_REDIRECTS) return { follow: false, why: `more than ${MAX_REDIRECTS} redirects`, retryable: false };
      return { follow: true, next };
    },
  };
}
