/**
 * File operations that never follow a symlink: what an entry under CERT_DIR is (lstat), removing it
 * (a link is unlinked, a folder emptied entry by entry, never its target), and reading a file only
 * when it is a regular file reached without a link. Anything under CERT_DIR may have been planted by
 * another process with the pod's UID; these are the only ways the store looks at it.
 */
import { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoOf } from './store-error.js';
import type { StoreFs } from './store-fs.js';

export type Entry =
  | { kind: 'missing' }
  | { kind: 'dir' }
  | { kind: 'file' }
  | { kind: 'symlink'; target: string }
  | { kind: 'other' };

/** What is at `p` itself (a final symlink is reported, not followed). */
export async function entryAt(fsx: StoreFs, p: string): Promise<Entry> {
  let st;
  try {
    st = await fsx.lstat(p);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return { kind: 'missing' };
    throw err;
  }
  if (st.isSymbolicLink()) return { kind: 'symlink', target: await fsx.readlink(p).catch(() => '?') };
  if (st.isDirectory()) return { kind: 'dir' };
  if (st.isFile()) return { kind: 'file' };
  return { kind: 'other' };
}

/** "a symlink to /etc/passwd", "a directory", ... for messages. */
export function describeEntry(e: Entry): string {
  switch (e.kind) {
    case 'symlink':
      return `a symlink to ${e.target}`;
    case 'dir':
      return 'a directory';
    case 'file':
      return 'a regular file';
    case 'missing':
      return 'missing';
    default:
      return 'a special file';
  }
}

/**
 * Removes whatever is at `p` without following links: a symlink is unlinked (its target untouched),
 * a folder's entries are removed the same way before the folder. Returns what was there.
 */
export async function removeEntry(fsx: StoreFs, p: string): Promise<Entry> {
  const e = await entryAt(fsx, p);
  if (e.kind === 'dir') await removeTree(fsx, p);
  else if (e.kind !== 'missing') await fsx.unlink(p).catch((err: unknown) => {
    if (errnoOf(err) !== 'ENOENT') throw err;
  });
  return e;
}

async function removeTree(fsx: StoreFs, dir: string): Promise<void> {
  for (const name of await fsx.readdir(dir)) await removeEntry(fsx, path.join(dir, name));
  await fsx.rmdir(dir);
}

/** A bundle file is a few KiB; a bigger file under CERT_DIR is not ours and is not read into memory. */
export const MAX_BUNDLE_FILE_BYTES = 1024 * 1024;

export type FileRead = { kind: 'content'; text: string } | { kind: 'missing' } | { kind: 'refused'; why: string };

/**
 * Reads `p` only if it is a regular file reached without following a final symlink (O_NOFOLLOW), and
 * at most MAX_BUNDLE_FILE_BYTES. O_NONBLOCK so that a planted FIFO cannot block the reader.
 */
export async function readRegularFile(p: string): Promise<FileRead> {
  let fh;
  try {
    fh = await fs.open(p, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'ELOOP') return { kind: 'refused', why: `a symlink to ${await fs.readlink(p).catch(() => '?')}, not made by the agent` };
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { kind: 'refused', why: st.isDirectory() ? 'a directory' : 'a special file' };
    if (st.size > MAX_BUNDLE_FILE_BYTES) return { kind: 'refused', why: `${st.size} bytes, more than a bundle file can be` };
    return { kind: 'content', text: await fh.readFile('utf8') };
  } finally {
    await fh.close();
  }
}
