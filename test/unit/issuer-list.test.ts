/**
 * Listing the PKI mount's issuers for root rotation (src/vault/pki-api.ts listIssuers) against a stub
 * transport: a poll that finds the same issuer ids and serials reads nothing but the LIST; a new serial,
 * an issuer added or deleted, or a server that gives no serials make it read the issuers again.
 */
import { describe, expect, it } from 'vitest';
import { listIssuers, type IssuerCache } from '../../src/vault/pki-api.js';
import type { VaultTransport } from '../../src/vault/transport.js';

type Ctx = Parameters<VaultTransport['request']>[0];

const pem = (n: string) => `-----BEGIN CERTIFICATE-----\n${n}\n-----END CERTIFICATE-----\n`;

/** A mount whose issuers the test edits; every request recorded as `METHOD path`. */
function mount(issuers: Record<string, { serial?: string; cert: string }>) {
  const asked: string[] = [];
  const transport: VaultTransport = {
    setCaCert() {},
    async request(ctx: Ctx) {
      asked.push(`${ctx.method} ${ctx.path}`);
      if (ctx.method === 'LIST' && ctx.path === 'pki/issuers') {
        const ids = Object.keys(issuers);
        return { data: { keys: ids, key_info: Object.fromEntries(ids.map((id) => [id, { issuer_name: `n-${id}`, is_default: id === ids[0], ...(issuers[id]!.serial ? { serial_number: issuers[id]!.serial } : {}) }])) } };
      }
      const m = /^pki\/issuer\/([^/]+)\/json$/.exec(ctx.path);
      if (ctx.method === 'GET' && m && issuers[m[1]!]) return { data: { certificate: issuers[m[1]!]!.cert, ca_chain: [issuers[m[1]!]!.cert] } };
      throw new Error(`unexpected ${ctx.method} ${ctx.path}`);
    },
  };
  return { issuers, asked, transport };
}

describe('listIssuers', () => {
  it('reads every issuer without a cache, and with an empty one', async () => {
    const m = mount({ a: { serial: '01', cert: pem('A') }, b: { serial: '02', cert: pem('B') } });
    const list = await listIssuers(m.transport, 'pki', undefined);
    expect(list.map((i) => [i.id, i.name, i.isDefault, i.certificate])).toEqual([['a', 'n-a', true, pem('A')], ['b', 'n-b', false, pem('B')]]);
    expect(m.asked).toEqual(['LIST pki/issuers', 'GET pki/issuer/a/json', 'GET pki/issuer/b/json']);
    m.asked.length = 0;
    await listIssuers(m.transport, 'pki', undefined, undefined, new Map());
    expect(m.asked).toHaveLength(3);
  });

  it('a poll with the same ids and serials asks only the LIST, and still sees a change of default', async () => {
    const m = mount({ a: { serial: '01', cert: pem('A') }, b: { serial: '02', cert: pem('B') } });
    const cache: IssuerCache = new Map();
    await listIssuers(m.transport, 'pki', undefined, undefined, cache);
    m.asked.length = 0;
    const again = await listIssuers(m.transport, 'pki', undefined, undefined, cache);
    expect(m.asked).toEqual(['LIST pki/issuers']);
    expect(again.map((i) => i.certificate)).toEqual([pem('A'), pem('B')]);
    // The default moved (LIST's is_default): seen without reading the certificates.
    const reordered = mount({ b: m.issuers.b!, a: m.issuers.a! });
    const moved = await listIssuers(reordered.transport, 'pki', undefined, undefined, cache);
    expect(reordered.asked).toEqual(['LIST pki/issuers']);
    expect(moved.find((i) => i.isDefault)?.id).toBe('b');
  });

  it('reads an issuer again when its serial changes, and all of them when one is added or deleted', async () => {
    const m = mount({ a: { serial: '01', cert: pem('A') }, b: { serial: '02', cert: pem('B') } });
    const cache: IssuerCache = new Map();
    await listIssuers(m.transport, 'pki', undefined, undefined, cache);
    m.asked.length = 0;
    m.issuers.b = { serial: '03', cert: pem('B2') };
    expect((await listIssuers(m.transport, 'pki', undefined, undefined, cache)).map((i) => i.certificate)).toEqual([pem('A'), pem('B2')]);
    expect(m.asked).toEqual(['LIST pki/issuers', 'GET pki/issuer/b/json']);
    m.asked.length = 0;
    m.issuers.c = { serial: '04', cert: pem('C') };
    await listIssuers(m.transport, 'pki', undefined, undefined, cache);
    expect(m.asked).toEqual(['LIST pki/issuers', 'GET pki/issuer/a/json', 'GET pki/issuer/b/json', 'GET pki/issuer/c/json']);
    m.asked.length = 0;
    delete m.issuers.a;
    await listIssuers(m.transport, 'pki', undefined, undefined, cache);
    expect(m.asked).toEqual(['LIST pki/issuers', 'GET pki/issuer/b/json', 'GET pki/issuer/c/json']);
    expect([...cache.keys()]).toEqual(['b', 'c']);
  });

  it('reads every issuer at every poll from a server that gives no serials in the LIST', async () => {
    const m = mount({ a: { cert: pem('A') } });
    const cache: IssuerCache = new Map();
    await listIssuers(m.transport, 'pki', undefined, undefined, cache);
    await listIssuers(m.transport, 'pki', undefined, undefined, cache);
    expect(m.asked).toEqual(['LIST pki/issuers', 'GET pki/issuer/a/json', 'LIST pki/issuers', 'GET pki/issuer/a/json']);
  });
});
