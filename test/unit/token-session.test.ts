/**
 * Token lifecycle against a scripted transport in fake time: reuse while valid, renew-self when that is
 * cheaper than a login, a fresh login when renewal fails near expiry or Vault rejects the token, and a
 * bounded, best-effort revoke of tokens the agent created (never of a given VAULT_TOKEN).
 */
import { describe, expect, it } from 'vitest';
import { VaultRequestError } from '../../src/vault/errors.js';
import { TokenSession } from '../../src/vault/token-session.js';
import type { VaultTransport } from '../../src/vault/transport.js';
import { FakeClock } from '../helpers/fake-clock.js';

type Call = { path: string; token?: string };

function scripted(answers: Record<string, (n: number) => unknown>) {
  const calls: Call[] = [];
  const counts: Record<string, number> = {};
  const transport: VaultTransport = {
    setCaCert() {},
    async request(ctx) {
      calls.push({ path: ctx.path, token: ctx.token });
      counts[ctx.path] = (counts[ctx.path] ?? 0) + 1;
      const a = answers[ctx.path]?.(counts[ctx.path]!);
      if (a instanceof Error) throw a;
      if (a === 'hang') return new Promise(() => undefined);
      return a;
    },
  };
  return { transport, calls };
}

const denied = (path: string) => new VaultRequestError('denied', { ctx: { operation: 'sign', path, doing: 'x' }, status: 403, networkCode: 'http', reason: 'vault_denied', retryable: false, code: 'VAULT_DENIED' });
const login = (n: number, ttl = 3600, renewable = true) => ({ auth: { client_token: `t${n}`, lease_duration: ttl, renewable } });
const quietLog = { info() {}, warn() {} };
const jwtSpec = { method: 'jwt' as const, mount: 'jwt', role: 'istiod', readJwt: async () => 'jwt' };

describe('TokenSession', () => {
  it('reuses the token while more than half of its lifetime is left', async () => {
    const clock = new FakeClock();
    const { transport, calls } = scripted({ 'auth/jwt/login': (n) => login(n) });
    const s = new TokenSession(transport, jwtSpec, clock, quietLog);
    const used: string[] = [];
    await s.withToken(async (t) => used.push(t));
    await clock.advance(29 * 60_000);
    await s.withToken(async (t) => used.push(t));
    expect(used).toEqual(['t1', 't1']);
    expect(calls.map((c) => c.path)).toEqual(['auth/jwt/login']);
    expect(s.expiresAt()).toBe(clock.now() - 29 * 60_000 + 3600_000);
  });

  it('renews a renewable token past half its lifetime instead of logging in', async () => {
    const clock = new FakeClock();
    const { transport, calls } = scripted({
      'auth/jwt/login': (n) => login(n),
      'auth/token/renew-self': () => ({ auth: { client_token: 't1', lease_duration: 3600, renewable: true } }),
    });
    const s = new TokenSession(transport, jwtSpec, clock, quietLog);
    await s.withToken(async () => undefined);
    await clock.advance(31 * 60_000);
    await s.withToken(async () => undefined);
    expect(calls.map((c) => c.path)).toEqual(['auth/jwt/login', 'auth/token/renew-self']);
    expect(calls[1]!.token).toBe('t1');
    expect(s.expiresAt()).toBe(clock.now() + 3600_000);
  });

  it('logs in straight away when the token has already expired: no renew-self that must fail, no warning', async () => {
    const clock = new FakeClock();
    const warnings: string[] = [];
    const { transport, calls } = scripted({ 'auth/jwt/login': (n) => login(n), 'auth/token/renew-self': () => denied('auth/token/renew-self') });
    const s = new TokenSession(transport, jwtSpec, clock, { info() {}, warn: (_o, m) => warnings.push(m) });
    await s.withToken(async () => undefined);
    // A scheduled renewal in production: a 1h token, the next renewal 20 days later.
    await clock.advance(20 * 24 * 3600_000);
    let used = '';
    await s.withToken(async (t) => (used = t));
    expect(used).toBe('t2');
    expect(calls.map((c) => c.path)).toEqual(['auth/jwt/login', 'auth/jwt/login']);
    expect(warnings).toEqual([]);
  });

  it('logs in again when renewal fails close to expiry, but keeps a still-comfortable token', async () => {
    const clock = new FakeClock();
    const { transport, calls } = scripted({
      'auth/jwt/login': (n) => login(n),
      'auth/token/renew-self': () => denied('auth/token/renew-self'),
    });
    const s = new TokenSession(transport, jwtSpec, clock, quietLog);
    await s.withToken(async () => undefined);
    await clock.advance(40 * 60_000); // 20 min left: renewal fails, token kept
    let used = '';
    await s.withToken(async (t) => (used = t));
    expect(used).toBe('t1');
    await clock.advance(17 * 60_000); // 3 min left (< 10%): renewal fails, fresh login
    await s.withToken(async (t) => (used = t));
    expect(used).toBe('t2');
    expect(calls.map((c) => c.path)).toEqual(['auth/jwt/login', 'auth/token/renew-self', 'auth/token/renew-self', 'auth/jwt/login']);
  });

  it('replaces a token Vault rejects (revoked behind our back) and retries once; a real policy denial still fails', async () => {
    const clock = new FakeClock();
    const { transport } = scripted({ 'auth/jwt/login': (n) => login(n) });
    const s = new TokenSession(transport, jwtSpec, clock, quietLog);
    const seen: string[] = [];
    const out = await s.withToken(async (t) => {
      seen.push(t);
      if (t === 't1') throw denied('pki/root/sign-intermediate');
      return 'signed';
    });
    expect(out).toBe('signed');
    expect(seen).toEqual(['t1', 't2']);
    await expect(s.withToken(async () => { throw denied('pki/root/sign-intermediate'); })).rejects.toMatchObject({ status: 403 });
  });

  it('never replaces or revokes a VAULT_TOKEN it did not create', async () => {
    const clock = new FakeClock();
    const { transport, calls } = scripted({ 'auth/token/lookup-self': () => ({ data: { ttl: 0, renewable: false } }) });
    const s = new TokenSession(transport, { method: 'token', token: 'given' }, clock, quietLog);
    await expect(s.withToken(async () => { throw denied('pki/root/sign-intermediate'); })).rejects.toMatchObject({ status: 403 });
    await s.revoke();
    expect(calls.map((c) => c.path)).toEqual(['auth/token/lookup-self']);
  });

  it('never logs in after shutdown (a token made then would never be revoked)', async () => {
    const clock = new FakeClock();
    const { transport, calls } = scripted({ 'auth/jwt/login': (n) => login(n), 'auth/token/revoke-self': () => ({}) });
    const s = new TokenSession(transport, jwtSpec, clock, quietLog);
    await s.withToken(async () => undefined);
    // A sign request still in flight when shutdown revokes the token comes back 403...
    const inFlight = s.withToken(async (t) => {
      await s.revoke();
      if (t === 't1') throw denied('pki/root/sign-intermediate');
    });
    // ...and must not trigger a fresh login.
    await expect(inFlight).rejects.toThrow(/aborted/);
    expect(calls.map((c) => c.path)).toEqual(['auth/jwt/login', 'auth/token/revoke-self']);
  });

  it('logs in instead of keeping a renewal its max TTL cut to seconds', async () => {
    const clock = new FakeClock();
    const { transport, calls } = scripted({
      'auth/jwt/login': (n) => login(n),
      'auth/token/renew-self': () => ({ auth: { client_token: 't1', lease_duration: 5, renewable: true } }),
    });
    const s = new TokenSession(transport, jwtSpec, clock, quietLog);
    await s.withToken(async () => undefined);
    await clock.advance(58 * 60_000); // 2 min left
    let used = '';
    await s.withToken(async (t) => (used = t));
    expect(used).toBe('t2');
    expect(calls.map((c) => c.path)).toEqual(['auth/jwt/login', 'auth/token/renew-self', 'auth/jwt/login']);
  });

  it('revokes its own token at shutdown within the budget, even when Vault hangs', async () => {
    const clock = new FakeClock();
    const { transport, calls } = scripted({ 'auth/jwt/login': (n) => login(n), 'auth/token/revoke-self': () => 'hang' });
    const s = new TokenSession(transport, jwtSpec, clock, quietLog);
    await s.withToken(async () => undefined);
    await clock.drive(s.revoke());
    expect(calls.at(-1)).toEqual({ path: 'auth/token/revoke-self', token: 't1' });
    expect(clock.requested.at(-1)).toBe(1000);
    expect(s.expiresAt()).toBeUndefined();
  });
});
