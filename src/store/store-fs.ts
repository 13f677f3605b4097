/**
 * The file system calls the cert dir writer makes, as one injectable object: production passes
 * `nodeStoreFs`; tests wrap it to fail one call (a full volume at the key, an I/O error at the swap)
 * where a real file system cannot be made to fail on cue. Every path call here acts on the entry
 * itself where the system call allows it (lstat, readlink, unlink, rename, symlink do not follow a
 * final symlink); `open` follows only when the caller leaves out O_NOFOLLOW, which the store never does.
 */
import fs from 'node:fs/promises';

export interface FreeSpace {
  /** Blocks free for an unprivileged user. */
  bavail: number;
  bsize: number;
  /** Free inodes, and the total (0 on file systems that do not count them). */
  ffree: number;
  files: number;
}

export interface StoreFs {
  lstat(p: string): Promise<import('node:fs').Stats>;
  readlink(p: string): Promise<string>;
  realpath(p: string): Promise<string>;
  readdir(p: string): Promise<string[]>;
  /** Exclusive: fails with EEXIST when anything (a symlink included) has the name. */
  mkdir(p: string, mode: number): Promise<void>;
  /** Creates `p` and its missing parents (only for CERT_DIR itself, when the caller asks for it). */
  mkdirp(p: string, mode: number): Promise<void>;
  open(p: string, flags: number, mode?: number): Promise<fs.FileHandle>;
  symlink(target: string, p: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(p: string): Promise<void>;
  rmdir(p: string): Promise<void>;
  statfs(p: string): Promise<FreeSpace>;
}

export const nodeStoreFs: StoreFs = {
  lstat: (p) => fs.lstat(p),
  readlink: (p) => fs.readlink(p),
  realpath: (p) => fs.realpath(p),
  readdir: (p) => fs.readdir(p),
  mkdir: async (p, mode) => {
    await fs.mkdir(p, { mode });
  },
  mkdirp: async (p, mode) => {
    await fs.mkdir(p, { recursive: true, mode });
  },
  open: (p, flags, mode) => fs.open(p, flags, mode),
  symlink: (target, p) => fs.symlink(target, p),
  rename: (from, to) => fs.rename(from, to),
  unlink: (p) => fs.unlink(p),
  rmdir: (p) => fs.rmdir(p),
  statfs: (p) => fs.statfs(p),
};
