/**
 * Writes files the way kubelet's AtomicWriter updates a Secret/ConfigMap volume: a new timestamped
 * folder, a `..data_tmp` symlink to it renamed over `..data`, the old folder removed; the visible names
 * are fixed symlinks into `..data`. File watchers that watch the file itself miss these updates.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

let seq = 0;

export async function kubeletWrite(dir: string, files: Record<string, string>): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const old = await fs.readlink(path.join(dir, '..data')).catch(() => undefined);
  const ts = `..${new Date().toISOString().replace(/[-:.]/g, '_')}_${seq++}`;
  await fs.mkdir(path.join(dir, ts));
  for (const [name, content] of Object.entries(files)) await fs.writeFile(path.join(dir, ts, name), content);
  await fs.symlink(ts, path.join(dir, '..data_tmp'));
  await fs.rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  for (const name of Object.keys(files)) {
    await fs.symlink(path.join('..data', name), path.join(dir, name)).catch(() => undefined);
  }
  if (old) await fs.rm(path.join(dir, old), { recursive: true, force: true });
}
