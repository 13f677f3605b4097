/**
 * The checks that tell, before Vault signs anything, whether a publish could be written: a probe file
 * really created, written and removed (the only test that catches a read-only mount, missing
 * permissions or a full volume the same way the publish would meet them), and the free space statfs
 * reports. Each throws the errno error the publish itself would have hit.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import path from 'node:path';
import { TMP_SUFFIX } from './layout.js';
import { errnoError, errnoOf } from './store-error.js';
import type { StoreFs } from './store-fs.js';

/** Room a publish needs: four small files (a page each on tmpfs), a folder, links. Generous. */
export const MIN_FREE_BYTES = 64 * 1024;
/** Inodes a publish needs: a folder, four files, temporary and visible links. */
export const MIN_FREE_INODES = 16;
const PROBE_BYTES = 4096;

/** Writes PROBE_BYTES into a new file in `dir` and removes it. Throws the errno error met. */
export async function probeWrite(fsx: StoreFs, dir: string): Promise<void> {
  // Random and under a TMP_SUFFIX name: never a name someone could pre-plant, and pruned after a crash.
  const probe = path.join(dir, `.probe-${randomBytes(6).toString('hex')}${TMP_SUFFIX}`);
  const fh = await fsx.open(probe, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  try {
    try {
      await fh.write(Buffer.alloc(PROBE_BYTES));
      await fh.sync();
    } finally {
      await fh.close();
    }
  } finally {
    await fsx.unlink(probe).catch(() => undefined);
  }
}

/**
 * Free bytes on the volume of `dir`, after checking there is room for a publish; undefined where
 * statfs is not supported (the probe write still ran). Throws ENOSPC with the numbers.
 */
export async function checkFreeSpace(fsx: StoreFs, dir: string): Promise<number | undefined> {
  let s;
  try {
    s = await fsx.statfs(dir);
  } catch (err) {
    if (errnoOf(err) === 'ENOSPC') throw err;
    return undefined;
  }
  const free = s.bavail * s.bsize;
  if (free < MIN_FREE_BYTES) throw errnoError('ENOSPC', `only ${free} bytes free, a publish needs at least ${MIN_FREE_BYTES}`);
  // Volumes that do not count inodes report 0 of 0.
  if (s.files > 0 && s.ffree < MIN_FREE_INODES) throw errnoError('ENOSPC', `only ${s.ffree} inodes free, a publish needs at least ${MIN_FREE_INODES}`);
  return free;
}
