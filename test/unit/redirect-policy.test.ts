/** Which redirects may carry the token, a login body or a CSR onward (pure decisions, no I/O). */
import { describe, expect, it } from 'vitest';
import { MAX_REDIRECTS, createRedirectPolicy } from '../../src/vault/redirect-policy.js';

const from = new URL('https://vault.example:8200/v1/pki/root/sign-intermediate');

describe('redirect policy', () => {
  const policy = createRedirectPolicy('https://vault.example:8200', ['https://vault-2.example:8200']);

  it.each([307, 308])('follows %d to VAULT_ADDR\'s own origin, relative or absolute', (status) => {
    expect(policy.decide(from, status, '/v1/pki/root/sign-intermediate?x=1', 0)).toEqual({ follow: true, next: new URL('https://vault.example:8200/v1/pki/root/sign-intermediate?x=1') });
    expect(policy.decide(from, status, 'https://vault.example:8200/v1/a', 0)).toMatchObject({ follow: true });
  });

  it('follows to an origin the operator listed', () => {
    expect(policy.decide(from, 307, 'https://vault-2.example:8200/v1/a', 0)).toMatchObject({ follow: true });
  });

  it.each([
    ['another host', 'https://evil.example:8200/v1/a', /evil\.example:8200 is not VAULT_ADDR's origin/],
    ['another port', 'https://vault.example:8201/v1/a', /vault\.example:8201 is not VAULT_ADDR's origin/],
    ['another scheme of a listed host', 'http://vault-2.example:8200/v1/a', /downgrades https to http/],
    ['http on the same host', 'http://vault.example:8200/v1/a', /downgrades https to http/],
  ])('refuses a 307 to %s', (_what, location, why) => {
    const d = policy.decide(from, 307, location, 0);
    expect(d.follow).toBe(false);
    expect(d.follow ? '' : d.why).toMatch(why);
  });

  it('a refused 307 to another origin may be retried (a standby names the dead active node during an election); a downgrade, a 30x or a loop may not', () => {
    expect(policy.decide(from, 307, 'https://vault-3.example:8200/v1/a', 0)).toMatchObject({ follow: false, retryable: true });
    expect(policy.decide(from, 307, 'http://vault.example:8200/v1/a', 0)).toMatchObject({ follow: false, retryable: false });
    expect(policy.decide(from, 302, '/v1/a', 0)).toMatchObject({ follow: false, retryable: false });
    expect(policy.decide(from, 307, '/v1/a', MAX_REDIRECTS)).toMatchObject({ follow: false, retryable: false });
    expect(policy.decide(from, 307, undefined, 0)).toMatchObject({ follow: false, retryable: false });
  });

  it.each([301, 302, 303])('never follows %d, even to the same origin (it would re-send a POST as a GET)', (status) => {
    const d = policy.decide(from, status, '/v1/pki/root/sign-intermediate', 0);
    expect(d).toMatchObject({ follow: false, why: expect.stringMatching(/only 307\/308 are followed/) });
  });

  it('stops after a few hops', () => {
    expect(policy.decide(from, 307, '/v1/a', MAX_REDIRECTS - 1)).toMatchObject({ follow: true });
    expect(policy.decide(from, 307, '/v1/a', MAX_REDIRECTS)).toMatchObject({ follow: false, why: expect.stringMatching(/more than 3 redirects/) });
  });

  it('refuses a redirect without a usable Location', () => {
    expect(policy.decide(from, 307, undefined, 0)).toMatchObject({ follow: false, why: 'HTTP 307 without a Location' });
    expect(policy.decide(from, 307, 'http://[bad', 0)).toMatchObject({ follow: false });
  });

  it('an http VAULT_ADDR may be redirected to https on a listed origin, not the other way', () => {
    const p = createRedirectPolicy('http://10.0.0.1:8200', ['https://10.0.0.2:8200', 'http://10.0.0.3:8200']);
    expect(p.decide(new URL('http://10.0.0.1:8200/v1/a'), 307, 'https://10.0.0.2:8200/v1/a', 0)).toMatchObject({ follow: true });
    expect(p.decide(new URL('https://10.0.0.2:8200/v1/a'), 307, 'http://10.0.0.3:8200/v1/a', 1)).toMatchObject({ follow: false });
  });
});
