/**
 * Reads the published bundle. `..data` is resolved once and all four files are read from that one
 * generation folder, so the result is never a mix of two generations even while a publish happens.
 * A directory without `..data` (plain files, e.g. a hand-made cacerts dir) is read by name.
 *
 * Nothing is read through a link the agent did not make: `..data` is followed only when it is a
 * symlink to `.gen/<generation name>` and `.gen` and that generation are real folders; files are
 * opened with O_NOFOLLOW and must be regular files; a visible name is only ever our `..data/<name>`
 * link (which is not followed: the generation is read directly) or a regular file in a plain dir.
 * Anything else is reported in `refused` and never read.
 */
import path from 'node:path';
import { BUNDLE_FILES, type BundleFiles } from '../pki/bundle.js';
import { DATA_LINK, GEN_DIR, generationOfDataTarget, visibleLinkTarget } from './layout.js';
import { describeEntry, entryAt, readRegularFile, type Entry } from './no-follow.js';
import { errnoOf } from './store-error.js';
import { nodeStoreFs, type StoreFs } from './store-fs.js';

export interface StoredBundle {
  files: BundleFiles;
  /** Generation folder name, or undefined for a plain directory. */
  generation: string | undefined;
  /**
   * Visible names that are not the agent's link into `..data` (missing, or something else in their
   * place): what istiod reads. The writer repairs them (ensureVisibleLinks).
   */
  brokenLinks: string[];
}

export type ReadOutcome =
  | { state: 'present'; bundle: StoredBundle }
  | { state: 'absent' }
  | {
      state: 'incomplete';
      /** Each file not read: its name, or `<entry> (<what it is>: not read)` for a refused entry. */
      missing: string[];
      /** Entries (relative to the dir) the agent did not make and did not read through. */
      refused: string[];
    };

/** Where the bundle of a dir is, as far as the agent may look. */
type Location =
  | { kind: 'no-dir' }
  | { kind: 'generation'; root: string; generation: string; dir: string }
  | { kind: 'plain'; root: string }
  | { kind: 'refused'; root: string; entry: string; why: string };

async function locate(certDir: string, fsx: StoreFs): Promise<Location> {
  let root: string;
  try {
    root = await fsx.realpath(certDir);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return { kind: 'no-dir' };
    throw err;
  }
  const data = await entryAt(fsx, path.join(root, DATA_LINK));
  if (data.kind === 'missing') return { kind: 'plain', root };
  const generation = data.kind === 'symlink' ? generationOfDataTarget(data.target) : undefined;
  if (generation === undefined) return { kind: 'refused', root, entry: DATA_LINK, why: `${describeEntry(data)}, not made by the agent` };
  const gens = await entryAt(fsx, path.join(root, GEN_DIR));
  if (gens.kind !== 'dir') {
    if (gens.kind === 'missing') return { kind: 'generation', root, generation, dir: path.join(root, GEN_DIR, generation) };
    return { kind: 'refused', root, entry: GEN_DIR, why: `${describeEntry(gens)}, not made by the agent` };
  }
  const dir = path.join(root, GEN_DIR, generation);
  const gen = await entryAt(fsx, dir);
  if (gen.kind !== 'dir' && gen.kind !== 'missing') return { kind: 'refused', root, entry: `${GEN_DIR}/${generation}`, why: `${describeEntry(gen)}, not made by the agent` };
  return { kind: 'generation', root, generation, dir };
}

/** Name of the generation `..data` points at when the agent made it, or undefined. */
export async function currentGeneration(certDir: string, fsx: StoreFs = nodeStoreFs): Promise<string | undefined> {
  const where = await locate(certDir, fsx).catch(() => undefined);
  if (where?.kind !== 'generation') return undefined;
  return (await entryAt(fsx, where.dir).catch(() => undefined))?.kind === 'dir' ? where.generation : undefined;
}

const isOurLink = (e: Entry, name: string) => e.kind === 'symlink' && e.target === visibleLinkTarget(name);

/** Reads the current bundle. Never throws for missing or refused entries; other I/O errors propagate. */
export async function readCertDir(certDir: string): Promise<ReadOutcome> {
  const where = await locate(certDir, nodeStoreFs);
  if (where.kind === 'no-dir') return { state: 'absent' };
  if (where.kind === 'refused') return { state: 'incomplete', missing: [`${where.entry} (${where.why}: nothing read through it)`], refused: [where.entry] };

  const files: Partial<BundleFiles> = {};
  const missing: string[] = [];
  const refused: string[] = [];
  for (const [k, name] of Object.entries(BUNDLE_FILES) as [keyof BundleFiles, string][]) {
    let entry = name;
    let read;
    if (where.kind === 'generation') {
      entry = `${GEN_DIR}/${where.generation}/${name}`;
      read = await readRegularFile(path.join(where.dir, name));
    } else {
      const visible = await entryAt(nodeStoreFs, path.join(where.root, name));
      // Our link with no ..data yet: a first publish in progress, which is "no bundle yet".
      if (visible.kind === 'missing' || isOurLink(visible, name)) read = { kind: 'missing' as const };
      else if (visible.kind === 'symlink') read = { kind: 'refused' as const, why: `${describeEntry(visible)}, not made by the agent` };
      else read = await readRegularFile(path.join(where.root, name));
    }
    if (read.kind === 'content') files[k] = read.text;
    else if (read.kind === 'missing') missing.push(name);
    else {
      refused.push(entry);
      missing.push(`${entry} (${read.why}: not read)`);
    }
  }
  if (missing.length === 4 && refused.length === 0) return { state: 'absent' };
  if (missing.length) return { state: 'incomplete', missing, refused };
  const brokenLinks: string[] = [];
  if (where.kind === 'generation') {
    for (const name of Object.values(BUNDLE_FILES)) {
      if (!isOurLink(await entryAt(nodeStoreFs, path.join(where.root, name)), name)) brokenLinks.push(name);
    }
  }
  const generation = where.kind === 'generation' ? where.generation : undefined;
  return { state: 'present', bundle: { files: files as BundleFiles, generation, brokenLinks } };
}

/**
 * True when istiod would find the four files and they are the agent's: each visible name is our link
 * into a real generation folder holding a regular file, or (no `..data`) a regular file. Never throws.
 */
export async function visibleBundlePresent(certDir: string): Promise<boolean> {
  try {
    const where = await locate(certDir, nodeStoreFs);
    if (where.kind !== 'generation' && where.kind !== 'plain') return false;
    for (const name of Object.values(BUNDLE_FILES)) {
      const visible = await entryAt(nodeStoreFs, path.join(where.root, name));
      if (where.kind === 'plain') {
        if (visible.kind !== 'file') return false;
      } else if (!isOurLink(visible, name) || (await entryAt(nodeStoreFs, path.join(where.dir, name))).kind !== 'file') {
        return false;
      }
    }
    return true;
  } catch {
    return false;
  }
}
