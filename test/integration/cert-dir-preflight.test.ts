/**
 * Issue 9, point 7 (store side): CertDirWriter.prepareToPublish() finds local faults BEFORE the agent
 * asks Vault to sign (missing or non-directory CERT_DIR, read-only volume, no permission, no space,
 * planted entries it cannot clean) and says what is really wrong; and a publish that failed can be
 * retried with the same in-memory bundle on the same writer, with nothing half-made in between.
 *
 * Real read-only and full volumes are tmpfs mounts (root only); the errno mapping is also driven
 * through the writer's fs seam so it is checked everywhere.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.js';
import { readCertDir } from '../../src/store/cert-dir-reader.js';
import { CertDirWriter } from '../../src/store/cert-dir-writer.js';
import { GEN_DIR } from '../../src/store/layout.js';
import { nodeStoreFs, type StoreFs } from '../../src/store/store-fs.js';
import { makeOutside, pictureOf } from '../helpers/outside-tree.js';

const NAMES = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'] as const;
const tagged = (n: number) => ({ caKey: `key ${n}\n`, caCert: `cert ${n}\n`, certChain: `chain ${n}\n`, rootCert: `root ${n}\n` });
const errno = (code: string) => Object.assign(new Error(`${code}: injected`), { code });

let base: string;
let dir: string;
const mounts: string[] = [];
beforeEach(async () => {
  base = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-preflight-'));
  dir = path.join(base, 'cacerts');
  await fs.mkdir(dir);
});
afterEach(async () => {
  for (const m of mounts.splice(0)) spawnSync('umount', ['-l', m]);
  await fs.rm(base, { recursive: true, force: true });
});

/** Mounts a tmpfs at `at`; false where this process may not mount (not root). */
function mountTmpfs(at: string, opts: string): boolean {
  if (process.getuid?.() !== 0) return false;
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', at]).status === 0;
  if (ok) mounts.push(at);
  return ok;
}
const canMount = (() => {
  if (process.getuid?.() !== 0) return false;
  const probe = spawnSync('sh', ['-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=16k tmpfs "$d" && umount "$d"; s=$?; rmdir "$d"; exit $s']);
  return probe.status === 0;
})();

describe('prepareToPublish', () => {
  it('accepts an empty, writable CERT_DIR and leaves it as it found it', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const report = await w.prepareToPublish();
    expect(report).toMatchObject({ root: await fs.realpath(dir), removed: [] });
    expect(report.freeBytes).toBeGreaterThan(0);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('leaves a published bundle exactly as it was', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation } = await w.publish(tagged(1));
    const before = await pictureOf(dir);
    await w.prepareToPublish();
    expect(await pictureOf(dir)).toEqual(before);
    expect(await readCertDir(dir)).toMatchObject({ state: 'present', bundle: { generation } });
  });

  it('a missing CERT_DIR: "does not exist", not retried, nothing created (unless asked to create it, as dev does)', async () => {
    const missing = path.join(base, 'not-mounted');
    const err = await new CertDirWriter(missing, systemClock, 0).prepareToPublish().catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'StoreError', code: 'STORE_NOCERTDIR', reason: 'write_failed', retryable: false });
    expect((err as Error).message).toMatch(/not-mounted does not exist \(mount the memory emptyDir istiod reads \(ROOT_CA_DIR\) there; the agent does not create CERT_DIR/);
    await expect(fs.access(missing)).rejects.toThrow();
    await new CertDirWriter(missing, systemClock, 0).prepareToPublish({ createMissing: true });
    expect(await fs.readdir(missing)).toEqual([]);
  });

  it('CERT_DIR that is a regular file: "not a directory"', async () => {
    await fs.writeFile(path.join(base, 'file'), 'x');
    const err = await new CertDirWriter(path.join(base, 'file'), systemClock, 0).prepareToPublish().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'STORE_ENOTDIR', retryable: false });
    expect((err as Error).message).toMatch(/is not a directory/);
  });

  it('CERT_DIR given as a symlink: resolved once, later re-pointing the link redirects nothing', async () => {
    const a = path.join(base, 'volume-a');
    const b = path.join(base, 'volume-b');
    await fs.mkdir(a);
    await fs.mkdir(b);
    const link = path.join(base, 'cert-dir-link');
    await fs.symlink(a, link);
    const w = new CertDirWriter(link, systemClock, 0);
    expect((await w.prepareToPublish()).root).toBe(await fs.realpath(a));
    await w.publish(tagged(1));
    await fs.rm(link);
    await fs.symlink(b, link);
    await w.publish(tagged(2));
    expect(await fs.readdir(b)).toEqual([]);
    expect(await readCertDir(a)).toMatchObject({ state: 'present', bundle: { files: tagged(2) } });
  });

  it('cleans planted entries in its own namespace, and says what it removed', async () => {
    const outside = path.join(base, 'outside');
    await makeOutside(outside);
    const before = await pictureOf(outside);
    await fs.symlink(outside, path.join(dir, GEN_DIR));
    await fs.mkdir(path.join(dir, '..data'));
    await fs.symlink(path.join(outside, 'key.pem'), path.join(dir, '..data', 'ca-key.pem'));
    const w = new CertDirWriter(dir, systemClock, 0);
    const { removed } = await w.prepareToPublish();
    expect(removed.sort()).toEqual(['..data (a directory)', `.gen (a symlink to ${outside})`]);
    expect(await pictureOf(outside)).toEqual(before);
    const { generation } = await w.publish(tagged(1));
    expect(await readCertDir(dir)).toMatchObject({ state: 'present', bundle: { generation, files: tagged(1) } });
    expect(await pictureOf(outside)).toEqual(before);
  });

  it('refuses a visible name it cannot replace (a directory), naming it', async () => {
    await fs.mkdir(path.join(dir, 'ca-key.pem'));
    const err = await new CertDirWriter(dir, systemClock, 0).prepareToPublish().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'STORE_PLANTED', retryable: false });
    expect((err as Error).message).toMatch(/ca-key\.pem is a directory, which the agent did not make \(remove it; check what else writes into CERT_DIR/);
  });

  it.each([
    ['EROFS', /the volume is read-only: mount CERT_DIR read-write in the agent container/, false],
    ['EACCES', /permission denied: CERT_DIR must be writable by the agent \(run as 1337 with fsGroup 1337\)/, false],
    ['EPERM', /operation not permitted/, false],
    ['ENOSPC', /the volume is full/, true],
    ['EDQUOT', /quota/, true],
  ])('%s on the probe write: says what is really wrong', async (code, advice, retryable) => {
    const failing: StoreFs = { ...nodeStoreFs, open: (p, flags, mode) => (p.includes('.probe-') ? Promise.reject(errno(code)) : nodeStoreFs.open(p, flags, mode)) };
    const err = await new CertDirWriter(dir, systemClock, 0, undefined, failing).prepareToPublish().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: `STORE_${code}`, reason: 'write_failed', retryable });
    expect((err as Error).message).toMatch(advice);
    expect((err as Error).message).not.toMatch(/does not exist/);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('too little free space (statfs): refused before signing, with the numbers', async () => {
    const tight: StoreFs = { ...nodeStoreFs, statfs: async () => ({ bavail: 2, bsize: 4096, ffree: 100, files: 1000 }) };
    const err = await new CertDirWriter(dir, systemClock, 0, undefined, tight).prepareToPublish().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'STORE_ENOSPC', retryable: true });
    expect((err as Error).message).toMatch(/8192 bytes free, a publish needs at least \d+ \(the volume is full/);
    const noInodes: StoreFs = { ...nodeStoreFs, statfs: async () => ({ bavail: 1000, bsize: 4096, ffree: 0, files: 1000 }) };
    await expect(new CertDirWriter(dir, systemClock, 0, undefined, noInodes).prepareToPublish()).rejects.toMatchObject({ code: 'STORE_ENOSPC' });
  });

  it('statfs unsupported: the check is skipped, the probe still runs', async () => {
    const noStatfs: StoreFs = { ...nodeStoreFs, statfs: () => Promise.reject(errno('ENOSYS')) };
    expect(await new CertDirWriter(dir, systemClock, 0, undefined, noStatfs).prepareToPublish()).toMatchObject({ freeBytes: undefined });
  });

  it.skipIf(!canMount)('a real read-only volume: EROFS "read-only", never "does not exist"; the bundle on it untouched', async () => {
    expect(mountTmpfs(dir, 'size=1m,mode=0755')).toBe(true);
    const seeded = await new CertDirWriter(dir, systemClock, 0).publish(tagged(1));
    const before = await pictureOf(dir);
    expect(spawnSync('mount', ['-o', 'remount,ro', dir]).status).toBe(0);
    const w = new CertDirWriter(dir, systemClock, 0);
    for (const attempt of [() => w.prepareToPublish(), () => w.publish(tagged(2))]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'STORE_EROFS', retryable: false });
      expect((err as Error).message).toMatch(/EROFS \(the volume is read-only: mount CERT_DIR read-write in the agent container\)/);
    }
    expect(await pictureOf(dir)).toEqual(before);
    expect(await readCertDir(dir)).toMatchObject({ state: 'present', bundle: { generation: seeded.generation } });
  });

  it.skipIf(!canMount)('a real read-only, empty volume: EROFS, not ENOENT', async () => {
    expect(mountTmpfs(dir, 'size=1m,mode=0755,ro')).toBe(true);
    const w = new CertDirWriter(dir, systemClock, 0);
    await expect(w.prepareToPublish()).rejects.toMatchObject({ code: 'STORE_EROFS', message: expect.stringMatching(/read-only/) });
    await expect(w.publish(tagged(1))).rejects.toMatchObject({ code: 'STORE_EROFS', message: expect.stringMatching(/read-only/) });
  });

  it.skipIf(!canMount)('a real full volume: ENOSPC before signing, nothing left behind', async () => {
    expect(mountTmpfs(dir, 'size=16k,mode=0755')).toBe(true);
    const fh = await fs.open(path.join(dir, 'filler'), 'w');
    for (let chunk = 1 << 14; chunk >= 1; chunk >>= 1) {
      for (;;) {
        try {
          await fh.write(Buffer.alloc(chunk));
        } catch {
          break;
        }
      }
    }
    await fh.close();
    const err = await new CertDirWriter(dir, systemClock, 0).prepareToPublish().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'STORE_ENOSPC' });
    expect((err as Error).message).toMatch(/the volume is full/);
    expect(await fs.readdir(dir)).toEqual(['filler']);
  });
});

describe('a failed publish can be retried with the same bundle', () => {
  /** The real fs, except that renaming onto ..data fails once with `code`. */
  function failSwapOnce(code: string): StoreFs & { failed: number } {
    const seam = {
      ...nodeStoreFs,
      failed: 0,
      rename: (from: string, to: string) => {
        if (path.basename(to) === '..data' && seam.failed === 0) {
          seam.failed++;
          return Promise.reject(errno(code));
        }
        return nodeStoreFs.rename(from, to);
      },
    };
    return seam;
  }

  it('first publish into an empty dir fails at the swap: the dir is left empty, the retry publishes', async () => {
    const seam = failSwapOnce('EIO');
    const w = new CertDirWriter(dir, systemClock, 0, undefined, seam);
    const files = tagged(1);
    await expect(w.publish(files)).rejects.toMatchObject({ name: 'StoreError', code: 'STORE_EIO', retryable: true });
    expect(seam.failed).toBe(1);
    // Nothing half-made: no generation, no dangling visible links, no .gen.
    expect(await fs.readdir(dir)).toEqual([]);
    const { generation } = await w.publish(files);
    expect(await readCertDir(dir)).toEqual({ state: 'present', bundle: { files, generation, brokenLinks: [] } });
  });

  it('a renewal fails at the swap: the previous generation stays published and alone, the retry publishes', async () => {
    const seam = failSwapOnce('EIO');
    const w = new CertDirWriter(dir, systemClock, 0, undefined, seam);
    seam.failed = 1;
    const first = await w.publish(tagged(1));
    seam.failed = 0;
    const before = await pictureOf(dir);
    await expect(w.publish(tagged(2))).rejects.toMatchObject({ code: 'STORE_EIO' });
    expect(await pictureOf(dir)).toEqual(before);
    expect(await fs.readdir(path.join(dir, GEN_DIR))).toEqual([first.generation]);
    const second = await w.publish(tagged(2));
    expect(await readCertDir(dir)).toMatchObject({ state: 'present', bundle: { files: tagged(2), generation: second.generation } });
  });

  it('a write of the key fails (ENOSPC): nothing visible changed, no partial folder, the retry publishes', async () => {
    let fail = true;
    const seam: StoreFs = {
      ...nodeStoreFs,
      open: (p, flags, mode) => {
        if (fail && p.endsWith(`${path.sep}ca-key.pem`)) {
          fail = false;
          return Promise.reject(errno('ENOSPC'));
        }
        return nodeStoreFs.open(p, flags, mode);
      },
    };
    const w = new CertDirWriter(dir, systemClock, 0, undefined, seam);
    fail = false;
    const { generation } = await w.publish(tagged(1));
    fail = true;
    const before = await pictureOf(dir);
    await expect(w.publish(tagged(2))).rejects.toMatchObject({ reason: 'write_failed', code: 'STORE_ENOSPC', message: expect.stringMatching(/^while writing ca-key\.pem for a new generation/) });
    expect(await pictureOf(dir)).toEqual(before);
    expect(await fs.readlink(path.join(dir, '..data'))).toBe(`${GEN_DIR}/${generation}`);
    await w.publish(tagged(2));
    expect(await readCertDir(dir)).toMatchObject({ state: 'present', bundle: { files: tagged(2) } });
  });

  it('a planted entry refuses the publish; once removed, the same writer publishes the same files', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    await fs.mkdir(path.join(dir, 'root-cert.pem'));
    const files = tagged(3);
    await expect(w.publish(files)).rejects.toMatchObject({ code: 'STORE_PLANTED' });
    expect((await fs.readdir(dir)).sort()).toEqual(['root-cert.pem']);
    await fs.rmdir(path.join(dir, 'root-cert.pem'));
    const { generation } = await w.publish(files);
    expect(await readCertDir(dir)).toEqual({ state: 'present', bundle: { files, generation, brokenLinks: [] } });
    for (const n of NAMES) expect(await fs.readlink(path.join(dir, n))).toBe(`..data/${n}`);
  });
});
