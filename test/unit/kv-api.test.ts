/**
 * The KV and PKI reads of the vault-paths source against a stub transport: which API paths are asked (the
 * mount and version found like `vault kv get`, `data/` and `metadata/` only on KV v2), the answer shapes
 * accepted, and errors that name the path and the setting to check (never a secret value).
 */
import { describe, expect, it } from 'vitest';
import { AgentError } from '../../src/common/errors.js';
import { findKvMount, readKvCurrentVersion, readKvSecret } from '../../src/vault/kv-api.js';
import { readPkiCertificates } from '../../src/vault/pki-api.js';
import type { VaultTransport } from '../../src/vault/transport.js';

type Ctx = Parameters<VaultTransport['request']>[0];

/** Answers each path from `answers`; records every request (path, token, hints). */
function stub(answers: Record<string, unknown>): VaultTransport & { asked: Ctx[] } {
  const asked: Ctx[] = [];
  return {
    asked,
    setCaCert() {},
    async request(ctx) {
      asked.push(ctx);
      if (!(ctx.path in answers)) throw new Error(`unexpected request to ${ctx.path}`);
      return answers[ctx.path];
    },
  };
}

const mountAnswer = (path: string, version?: string, type = 'kv') => ({ data: { path: `${path}/`, type, options: version ? { version } : null, accessor: 'kv_1' } });

describe('KV reads', () => {
  it.each([
    ['kubernetes-cluster1-secrets/istiod-service/certs', mountAnswer('kubernetes-cluster1-secrets'), { mount: 'kubernetes-cluster1-secrets', name: 'istiod-service/certs', version: 1 }],
    ['secret/istioca', mountAnswer('secret', '2'), { mount: 'secret', name: 'istioca', version: 2 }],
    ['team/a/kv/istioca', mountAnswer('team/a/kv', '1'), { mount: 'team/a/kv', name: 'istioca', version: 1 }],
  ])('finds the mount and version of %s from sys/internal/ui/mounts', async (path, answer, want) => {
    const t = stub({ [`sys/internal/ui/mounts/${path}`]: answer });
    expect(await findKvMount(t, path, 'KV_BUNDLE_PATH', 'tok')).toEqual(want);
    expect(t.asked[0]).toMatchObject({ method: 'GET', token: 'tok', operation: 'read' });
    expect(t.asked[0]!.deniedHint).toMatch(/check the policy attached to the auth role, and KV_BUNDLE_PATH$/);
  });

  it('refuses a path in another engine, or the mount itself, naming the setting', async () => {
    const pki = stub({ 'sys/internal/ui/mounts/pki/issuer/x': mountAnswer('pki', undefined, 'pki') });
    await expect(findKvMount(pki, 'pki/issuer/x', 'CA_KEY_FROM', 't')).rejects.toThrow(/"pki\/issuer\/x" is in a "pki" secrets engine mounted at pki\/, not in a KV one \(CA_KEY_FROM must name a KV secret/);
    const self = stub({ 'sys/internal/ui/mounts/secret': mountAnswer('secret', '2') });
    await expect(findKvMount(self, 'secret', 'CA_KEY_FROM', 't')).rejects.toMatchObject({ code: 'NOT_A_KV_SECRET', retryable: false });
  });

  it('reads KV v1 at <mount>/<name> and KV v2 at <mount>/data/<name> with its version', async () => {
    const t = stub({
      'kv1/istiod/certs': { data: { ca_key: 'K', ca_cert: 'C' }, lease_duration: 2764800 },
      'secret/data/istioca': { data: { data: { 'ca-key.pem': 'K' }, metadata: { version: 7, created_time: 'x', destroyed: false } } },
      'secret/metadata/istioca': { data: { current_version: 7, oldest_version: 1, versions: {} } },
    });
    expect(await readKvSecret(t, { mount: 'kv1', name: 'istiod/certs', version: 1 }, 'KV_BUNDLE_PATH', 't')).toEqual({ values: { ca_key: 'K', ca_cert: 'C' }, version: undefined });
    expect(await readKvSecret(t, { mount: 'secret', name: 'istioca', version: 2 }, 'CA_KEY_FROM', 't')).toEqual({ values: { 'ca-key.pem': 'K' }, version: 7 });
    expect(await readKvCurrentVersion(t, { mount: 'secret', name: 'istioca', version: 2 }, 'CA_KEY_FROM', 't')).toBe(7);
    expect(t.asked.map((a) => a.path)).toEqual(['kv1/istiod/certs', 'secret/data/istioca', 'secret/metadata/istioca']);
    expect(t.asked[1]!.deniedHint).toBe('the token\'s policy must grant "read" on secret/data/istioca; check the policy attached to the auth role, and CA_KEY_FROM');
  });

  it('says when a path was written as an API path (with data/), and when the current version is deleted', async () => {
    const t = stub({ 'secret/data/data/istioca': { data: { data: null, metadata: { version: 3, deletion_time: '2026-01-01T00:00:00Z', destroyed: false } } } });
    const kv = { mount: 'secret', name: 'data/istioca', version: 2 as const };
    await expect(readKvSecret(t, kv, 'CA_KEY_FROM', 't')).rejects.toThrow(/version 3 is deleted \(write the bundle again, or undelete it; check CA_KEY_FROM\)/);
    expect(t.asked[0]!.notFoundHint).toMatch(/write the path as for "vault kv get", without \/data\/: secret\/istioca$/);
  });

  it('an answer of another shape is invalid_response (retryable), without echoing the body', async () => {
    const t = stub({ 'secret/data/istioca': '<html>proxy login</html>' });
    const err = await readKvSecret(t, { mount: 'secret', name: 'istioca', version: 2 }, 'CA_KEY_FROM', 't').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentError);
    expect(err).toMatchObject({ reason: 'invalid_response', retryable: true });
    expect((err as Error).message).not.toContain('proxy login');
  });
});

describe('PKI certificate reads', () => {
  it.each([
    ['istioca/cert/ca', { data: { certificate: 'A', revocation_time: 0 } }, { certificate: 'A' }],
    ['istioca/cert/ca_chain', { data: { certificate: 'A\nR', ca_chain: 'A\nR' } }, { certificate: 'A\nR', ca_chain: 'A\nR' }],
    ['pki/cert/ca_chain', { data: { certificate: 'R', ca_chain: null } }, { certificate: 'R' }],
    ['istioca/issuer/default/json', { data: { issuer_id: 'x', certificate: 'A', ca_chain: ['A', 'R'] } }, { certificate: 'A', ca_chain: ['A', 'R'] }],
  ])('%s', async (path, answer, values) => {
    const t = stub({ [path]: answer });
    expect(await readPkiCertificates(t, path, 'CERT_CHAIN_FROM', 't')).toEqual({ values });
    expect(t.asked[0]!.notFoundHint).toMatch(/check CERT_CHAIN_FROM/);
  });
});
