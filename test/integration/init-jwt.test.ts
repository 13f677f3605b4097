/**
 * `init` against a real OpenBao with jwt auth: RSA and EC keys, the output checked with openssl the way
 * an operator would, and the issued certificate's contents asserted (not what we asked for: what Vault
 * signed).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { x509 } from '../../src/pki/x509.js';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { useOpenBao } from '../helpers/openbao.js';
import { requireCommand } from '../helpers/tools.js';

const bao = useOpenBao();
const haveOpenssl = requireCommand('openssl', 'apt-get install openssl');

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-certs-'));
}

function openssl(args: string[], cwd: string): string {
  return execFileSync('openssl', args, { cwd, encoding: 'utf8' });
}

describe.skipIf(!bao.available)('init with jwt auth', () => {
  it.each([
    ['ec', '256'],
    ['ec', '384'],
    ['rsa', '2048'],
    ['rsa', '3072'],
  ])('issues a verified %s %s intermediate that openssl accepts', async (keyType, keySize) => {
    const dir = await tempDir();
    const run = await runAgent(['init'], cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: keyType, KEY_SIZE: keySize, CERT_TTL: '2h', CLUSTER_NAME: 'cluster-a', CERT_DNS_SANS: 'istiod.istio-system.svc,istiod-rev.istio-system.svc' }));
    expect(run.code, run.stdout + run.stderr).toBe(0);

    const files = await fs.readdir(dir);
    expect(files.sort()).toEqual(['..data', '.gen', 'ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    if (haveOpenssl) {
      expect(openssl(['verify', '-CAfile', 'root-cert.pem', '-untrusted', 'cert-chain.pem', 'ca-cert.pem'], dir).trim()).toBe('ca-cert.pem: OK');
      const fromKey = openssl(['pkey', '-in', 'ca-key.pem', '-pubout'], dir);
      const fromCert = openssl(['x509', '-in', 'ca-cert.pem', '-noout', '-pubkey'], dir);
      expect(fromKey).toBe(fromCert);
    }

    const cert = certsFromPem(await fs.readFile(path.join(dir, 'ca-cert.pem'), 'utf8'), 'ca-cert.pem')[0]!;
    expect(cert.isCa).toBe(true);
    expect(cert.basicConstraintsCritical).toBe(true);
    expect(cert.pathLen).toBe(0);
    expect(cert.keyUsage! & x509.KeyUsageFlags.keyCertSign).toBeTruthy();
    expect(cert.extKeyUsage).toBeUndefined();
    expect(cert.subject).toContain('CN=Intermediate CA');
    expect(cert.subject).toContain('O=Istio');
    expect(cert.subject).toContain('L=cluster-a');
    expect(cert.dnsSans.sort()).toEqual(['istiod-rev.istio-system.svc', 'istiod.istio-system.svc']);
    expect(cert.keyType).toBe(keyType);
    expect(cert.keyBits).toBe(Number(keySize));
    // Lifetime comes from Vault: ~2h plus its 30 s notBefore backdating.
    expect(cert.notAfter - cert.notBefore).toBeGreaterThanOrEqual(2 * 3600_000);
    expect(cert.notAfter - cert.notBefore).toBeLessThan(2 * 3600_000 + 120_000);

    const chain = certsFromPem(await fs.readFile(path.join(dir, 'cert-chain.pem'), 'utf8'), 'chain');
    expect(chain.map((c) => c.subject)).toEqual([cert.subject, 'CN=Dev Mesh Root CA']);
    expect(await fs.readFile(path.join(dir, 'root-cert.pem'), 'utf8')).toBe(bao.get().rootPem.trim() + '\n');

    const gen = await fs.readlink(path.join(dir, '..data'));
    const modes = await Promise.all(['ca-key.pem', 'ca-cert.pem', 'cert-chain.pem', 'root-cert.pem'].map(async (f) => (await fs.stat(path.join(dir, gen, f))).mode & 0o777));
    expect(modes).toEqual([0o600, 0o644, 0o644, 0o644]);
    await fs.rm(dir, { recursive: true });
  });

  it('adopts a valid bundle that is not due instead of issuing again', async () => {
    const dir = await tempDir();
    const env = cleanEnv({ ...bao.get().env, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h' });
    expect((await runAgent(['init'], env)).code).toBe(0);
    const first = await fs.readlink(path.join(dir, '..data'));
    const second = await runAgent(['init'], env);
    expect(second.code).toBe(0);
    expect(second.lines.some((l) => /adopting it/.test(l.msg))).toBe(true);
    expect(second.lines.some((l) => l.step === 'sign')).toBe(false);
    expect(await fs.readlink(path.join(dir, '..data'))).toBe(first);
    await fs.rm(dir, { recursive: true });
  });
});
