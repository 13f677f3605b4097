/**
 * A pod that starts in the middle of a root rotation (a rolling restart, a rescheduled istiod) against a
 * real OpenBao: Vault already made the new root the default issuer, and this pod's cert dir is empty.
 * While the new root is in its ROOT_SWITCH_SOAK it must do what the running replicas do (trust both
 * roots, sign with the old one) rather than hand out certificates from a root some proxies do not trust
 * yet; once the soak is over it starts on the new root.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { useOpenBao } from '../helpers/openbao.js';

const bao = useOpenBao();
let base: string;

beforeAll(async () => {
  base = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-newpod-'));
});
afterAll(async () => {
  if (base) await fs.rm(base, { recursive: true, force: true });
});

async function init(name: string, soak: string) {
  const dir = path.join(base, name);
  await fs.mkdir(dir);
  const r = await runAgent(['init'], cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', RENEW_BEFORE: '20m', ROOT_SWITCH_SOAK: soak }));
  expect(r.code, r.stdout + r.stderr).toBe(0);
  const read = (f: string) => fs.readFile(path.join(dir, f), 'utf8');
  const chain = certsFromPem(await read('cert-chain.pem'), 'cert-chain.pem');
  return { run: r, roots: certsFromPem(await read('root-cert.pem'), 'root-cert.pem').map((c) => c.subject), chainRoot: chain.at(-1)!.subject };
}

describe.skipIf(!bao.available)('a pod started during a root rotation', () => {
  it('signs with the old root while the new default root soaks, and with the new one after', { timeout: 120_000 }, async () => {
    const api = bao.get().api;
    const before = await init('before', '1h');
    expect(before.roots).toHaveLength(1);
    const oldRoot = before.chainRoot;

    // The operator adds a root and makes it the default at once (docs/root-rotation.md allows any time).
    // Vault backdates its notBefore by 30 s.
    const added = (await api.call('POST', 'pki/root/rotate/internal', { common_name: 'Mesh Root New', issuer_name: 'mesh-root-new', key_type: 'ec', key_bits: 256, ttl: '87600h' })) as { data: { issuer_id: string } };
    await api.call('POST', 'pki/config/issuers', { default: added.data.issuer_id });

    const during = await init('during', '1h');
    expect(during.chainRoot, 'the intermediate chains to the root every proxy already trusts').toBe(oldRoot);
    expect(during.roots, 'both roots trusted, the signing one first, as the running replicas publish them').toEqual([oldRoot, 'CN=Mesh Root New']);
    const notes = during.run.lines.flatMap((l) => (Array.isArray(l.notes) ? (l.notes as string[]) : []));
    expect(notes.join('\n')).toContain(`this first intermediate comes from "${oldRoot}" until`);
    expect(notes.join('\n')).toMatch(/ROOT_SWITCH_SOAK 1h after the new root appeared/);

    // A soak shorter than the 30 s Vault backdated the new root by is over: the pod starts on the new root.
    const after = await init('after', '1s');
    expect(after.chainRoot).toBe('CN=Mesh Root New');
    expect(after.roots).toEqual(['CN=Mesh Root New', oldRoot]);
  });
});
