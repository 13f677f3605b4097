/**
 * Reads the published bundle. `..data` is resolved once and all four files are read from that one
 * generation folder, so the result is never a mix of two generations even while a publish happens.
 * A directory without `..data` (plain files, e.g. a hand-made cacerts Secret) is read by name.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { BUNDLE_FILES, type BundleFiles } from '../pki/bundle.js';
import { DATA_LINK, GEN_DIR } from './layout.js';

export interface StoredBundle {
  files: BundleFiles;
  /** Generation folder name, or undefined for a plain directory. */
  generation: string | undefined;
  /**
   * Visible names that do not lead into `..data` (missing, or something else in their place): what
   * istiod reads. Only a crash during the very first publish into a dir leaves this; the writer repairs it.
   */
  brokenLinks: string[];
}

/** Name of the generation `..data` points at, or undefined when there is none. */
export async function currentGeneration(certDir: string): Promise<string | undefined> {
  const target = await fs.readlink(path.join(certDir, DATA_LINK)).catch(() => undefined);
  if (target === undefined) return undefined;
  const prefix = `${GEN_DIR}/`;
  return target.startsWith(prefix) ? target.slice(prefix.length) : target;
}

export type ReadOutcome =
  | { state: 'present'; bundle: StoredBundle }
  | { state: 'absent' }
  | { state: 'incomplete'; missing: string[] };

/** Reads the current bundle. Never throws for missing files; other I/O errors propagate. */
export async function readCertDir(certDir: string): Promise<ReadOutcome> {
  const target = await fs.readlink(path.join(certDir, DATA_LINK)).catch(() => undefined);
  const base = target === undefined ? certDir : path.resolve(certDir, target);
  const files: Partial<BundleFiles> = {};
  const missing: string[] = [];
  for (const [k, name] of Object.entries(BUNDLE_FILES) as [keyof BundleFiles, string][]) {
    try {
      files[k] = await fs.readFile(path.join(base, name), 'utf8');
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') throw err;
      missing.push(name);
    }
  }
  if (missing.length === 4) return { state: 'absent' };
  if (missing.length) return { state: 'incomplete', missing };
  const generation = target === undefined ? undefined : await currentGeneration(certDir);
  const brokenLinks: string[] = [];
  if (target !== undefined) {
    for (const name of Object.values(BUNDLE_FILES)) {
      const link = await fs.readlink(path.join(certDir, name)).catch(() => undefined);
      if (link !== `${DATA_LINK}/${name}`) brokenLinks.push(name);
    }
  }
  return { state: 'present', bundle: { files: files as BundleFiles, generation, brokenLinks } };
}

/** True when each visible name resolves to a file: what istiod would find. Never throws. */
export async function visibleBundlePresent(certDir: string): Promise<boolean> {
  const found = await Promise.all(Object.values(BUNDLE_FILES).map((n) => fs.stat(path.join(certDir, n)).then((st) => st.isFile(), () => false)));
  return found.every(Boolean);
}
