/**
 * Vault token lifecycle. The token lives only in this object's memory. It is reused across renewals
 * while valid, renewed when that is cheaper than a login (renewable and past half its lifetime), and
 * dropped for a fresh login when it expires or Vault rejects it (revoked behind our back). A token we
 * did not create (AUTH_METHOD=token) is never revoked and cannot be replaced by a login.
 */
import * as z from 'zod/mini';
import { AbortedError, type Clock } from '../common/clock.js';
import { AgentError } from '../common/errors.js';
import { login, type AuthSpec, type TokenLease } from './auth.js';
import { VaultRequestError } from './errors.js';
import type { VaultTransport } from './transport.js';

const renewResponse = z.object({
  auth: z.object({ client_token: z.string().check(z.minLength(1)), lease_duration: z.number().check(z.nonnegative()), renewable: z.boolean() }),
});

export interface TokenSessionLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Upper bound for the best-effort revoke at shutdown (the whole shutdown must finish within 2 s). */
export const REVOKE_BUDGET_MS = 1000;

export class TokenSession {
  private lease: TokenLease | undefined;
  /** Set by revoke(): no login after shutdown (a token made then would never be revoked). */
  private closed = false;

  constructor(
    private readonly transport: VaultTransport,
    private readonly spec: AuthSpec,
    private readonly clock: Clock,
    private readonly log: TokenSessionLogger,
  ) {}

  /** Makes sure a token is held (a login, or a lookup for AUTH_METHOD=token) and says what Vault said of it. */
  async describe(signal?: AbortSignal): Promise<{ expiresAt: number | undefined; renewable: boolean }> {
    const l = await this.current(signal);
    return { expiresAt: l.ttlSeconds > 0 ? l.obtainedAt + l.ttlSeconds * 1000 : undefined, renewable: l.renewable };
  }

  /** Epoch ms when the current token expires; undefined when there is none or it never expires. */
  expiresAt(): number | undefined {
    const l = this.lease;
    return l && l.ttlSeconds > 0 ? l.obtainedAt + l.ttlSeconds * 1000 : undefined;
  }

  /**
   * Runs `fn` with a valid token. If Vault rejects the token (403) and we can log in again, the token
   * is replaced once and `fn` retried: a revoked token heals itself, a missing policy still fails.
   */
  async withToken<T>(fn: (token: string) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const lease = await this.current(signal);
    try {
      return await fn(lease.token);
    } catch (err) {
      if (!(err instanceof VaultRequestError && err.status === 403 && lease.owned)) throw err;
      this.log.warn({ path: err.path }, 'Vault rejected the token; logging in again');
      this.lease = undefined;
      const fresh = await this.current(signal);
      return fn(fresh.token);
    }
  }

  /** Revokes a token the agent created, best effort, bounded by REVOKE_BUDGET_MS. Never throws. */
  async revoke(): Promise<void> {
    this.closed = true;
    const l = this.lease;
    this.lease = undefined;
    if (l) await this.revokeLease(l);
  }

  private async revokeLease(l: TokenLease): Promise<void> {
    if (!l.owned) return;
    const budget = new AbortController();
    try {
      await Promise.race([
        this.transport.request({ operation: 'token_revoke', method: 'POST', path: 'auth/token/revoke-self', doing: 'revoking the agent token', token: l.token }),
        this.clock.sleep(REVOKE_BUDGET_MS, budget.signal),
      ]);
    } catch (err) {
      this.log.warn({ err }, 'could not revoke the Vault token at shutdown; it expires on its own');
    } finally {
      budget.abort();
    }
  }

  private async login(signal?: AbortSignal): Promise<TokenLease> {
    if (this.closed || signal?.aborted) throw new AbortedError();
    const lease = await login(this.transport, this.spec, this.clock, signal);
    if (this.closed) {
      // Shutdown began during the login: do not keep a token nobody will revoke.
      await this.revokeLease(lease);
      throw new AbortedError();
    }
    return lease;
  }

  private async current(signal?: AbortSignal): Promise<TokenLease> {
    const l = this.lease;
    if (l === undefined) return (this.lease = await this.login(signal));
    if (l.ttlSeconds === 0) return l;
    const ttlMs = l.ttlSeconds * 1000;
    const left = l.obtainedAt + ttlMs - this.clock.now();
    if (left > ttlMs / 2) return l;
    const comfortable = (lease: TokenLease, remaining: number) => remaining > Math.max(30_000, (lease.ttlSeconds * 1000) / 10);
    // An expired token cannot be renewed: that is every scheduled renewal in production (a 1h token, the
    // next renewal weeks later), so go straight to the login instead of a renew-self that must fail.
    if (l.renewable && left > 0) {
      try {
        const renewed = await this.renew(l);
        // A renewal capped by the token's max TTL may leave only seconds: then log in instead.
        if (renewed.ttlSeconds === 0 || comfortable(renewed, renewed.ttlSeconds * 1000)) return (this.lease = renewed);
      } catch (err) {
        this.log.warn({ err }, 'could not renew the Vault token');
      }
    }
    // Still comfortably valid: keep it rather than add a login to every renewal.
    if (comfortable(l, left)) return l;
    // For AUTH_METHOD=token this "login" is a lookup: it fails loudly once the given token has expired.
    this.lease = undefined;
    return (this.lease = await this.login(signal));
  }

  private async renew(l: TokenLease): Promise<TokenLease> {
    const raw = await this.transport.request({
      operation: 'token_renew',
      method: 'POST',
      path: 'auth/token/renew-self',
      doing: 'renewing the agent token',
      token: l.token,
    });
    const res = renewResponse.safeParse(raw);
    if (!res.success) {
      throw new AgentError('while renewing the agent token at auth/token/renew-self: the answer has no auth.lease_duration (a proxy or a different server may be answering at VAULT_ADDR)', {
        code: 'VAULT_INVALID_RESPONSE',
        reason: 'invalid_response',
        retryable: true,
      });
    }
    this.log.info({ ttlSeconds: res.data.auth.lease_duration }, 'renewed the Vault token');
    return { ...l, ttlSeconds: res.data.auth.lease_duration, renewable: res.data.auth.renewable, obtainedAt: this.clock.now() };
  }
}
