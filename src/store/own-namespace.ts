/**
 * The entries under CERT_DIR the agent owns, and what it does with whatever it finds in their place.
 * In its own namespace (`.gen`, `..data` when it is not a symlink, temporary names, generation
 * folders) a stranger is removed without being followed, and reported; a visible name it cannot
 * replace atomically (a directory) is refused with an error naming it, since istiod reads those
 * names and another tool may have made it on purpose.
 */
import path from 'node:path';
import { BUNDLE_FILES } from '../pki/bundle.js';
import { DATA_LINK, DIR_MODE, GEN_DIR } from './layout.js';
import { describeEntry, entryAt, removeEntry } from './no-follow.js';
import { errnoOf, plantedError } from './store-error.js';
import type { StoreFs } from './store-fs.js';

/**
 * Removes whatever is at `rel` (relative to `root`) without following it; when something was there,
 * records `<rel> (<what it was>)` in `removed`.
 */
export async function clearEntry(fsx: StoreFs, root: string, rel: string, removed: string[]): Promise<void> {
  const was = await removeEntry(fsx, path.join(root, rel));
  if (was.kind !== 'missing') removed.push(`${rel} (${describeEntry(was)})`);
}

/**
 * Makes `.gen` a real folder: anything else there (a symlink to elsewhere, a file) is removed first.
 * Returns true when it created the folder (so a failed first publish can remove it again).
 */
export async function ensureGenDir(fsx: StoreFs, root: string, removed: string[]): Promise<boolean> {
  const gen = path.join(root, GEN_DIR);
  const e = await entryAt(fsx, gen);
  if (e.kind === 'dir') return false;
  if (e.kind !== 'missing') await clearEntry(fsx, root, GEN_DIR, removed);
  try {
    await fsx.mkdir(gen, DIR_MODE);
  } catch (err) {
    // Created meanwhile by someone else: only a real folder will do.
    if (errnoOf(err) !== 'EEXIST' || (await entryAt(fsx, gen)).kind !== 'dir') throw err;
    return false;
  }
  return true;
}

/** `..data` as a real folder blocks the rename that publishes; as a link or a file it is replaced. */
export async function clearDataFolder(fsx: StoreFs, root: string, removed: string[]): Promise<void> {
  if ((await entryAt(fsx, path.join(root, DATA_LINK))).kind === 'dir') await clearEntry(fsx, root, DATA_LINK, removed);
}

/**
 * Throws a StoreError (code STORE_PLANTED) naming the first visible name that a rename cannot
 * replace: a directory. Links and regular files there are replaced atomically by the publish.
 */
export async function refuseUnreplaceableNames(fsx: StoreFs, root: string, certDir: string, doing: (name: string) => string): Promise<void> {
  for (const name of Object.values(BUNDLE_FILES)) {
    const e = await entryAt(fsx, path.join(root, name));
    if (e.kind === 'dir') throw plantedError(doing(name), certDir, name, describeEntry(e));
  }
}
