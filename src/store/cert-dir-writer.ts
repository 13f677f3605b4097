/**
 * Publishes a bundle into the cert dir so that a reader always sees one complete, matching generation:
 * write the four files into a new generation folder, fsync them and the folders, make sure the visible
 * names are our links into `..data`, then one rename(2) of a symlink onto `..data`. On the first
 * publish into a dir the visible links are made before `..data` exists (dangling for an instant, which
 * a reader sees as "no bundle yet"), so the one rename makes all four appear at once. A failure before
 * the rename leaves the published generation untouched and removes what this publish made. A replaced
 * generation is removed once its successor is older than GENERATION_GRACE_MS: a reader that resolved
 * `..data` just before a swap can finish, and an old key (after a rotation because of a compromise)
 * does not linger. A crash mid-publish leaves nothing that outlives the next start. One operation at
 * a time: checks, publishes, prunes and repairs are serialised.
 *
 * CERT_DIR is resolved to its real path once (it may be given as a symlink to the mount); under it the
 * writer follows no symlink it did not make: entries are examined with lstat, files are created with
 * O_EXCL|O_NOFOLLOW, folders opened with O_DIRECTORY|O_NOFOLLOW, and what it renames over or removes
 * is checked first (a planted link is unlinked, never followed). See own-namespace.ts for what it
 * removes and what it refuses.
 */
import { constants as fsc } from 'node:fs';
import path from 'node:path';
import { AbortedError, type Clock } from '../common/clock.js';
import { BUNDLE_FILES, type BundleFiles } from '../pki/bundle.js';
import { currentGeneration } from './cert-dir-reader.js';
import {
  CERT_MODE, DATA_LINK, DATA_TMP_LINK, DIR_MODE, GEN_DIR, GENERATION_PATTERN, KEY_MODE, TMP_SUFFIX,
  dataLinkTarget, generationName, generationTime, isTempName, visibleLinkTarget,
} from './layout.js';
import { describeEntry, entryAt, removeEntry } from './no-follow.js';
import { clearDataFolder, clearEntry, ensureGenDir, refuseUnreplaceableNames } from './own-namespace.js';
import { CERT_DIR_MISSING, errnoError, errnoOf, plantedError, storeError } from './store-error.js';
import { nodeStoreFs, type StoreFs } from './store-fs.js';
import { checkFreeSpace, probeWrite } from './writable-probe.js';

export { StoreError } from './store-error.js';

/** Minimum spacing of publishes: istiod reloads 100 ms after the first event, then reads the files. */
export const MIN_PUBLISH_INTERVAL_MS = 2000;
/**
 * A replaced generation stays on disk at least this long, so a reader that resolved `..data` just
 * before a swap can finish reading it even if several publishes follow quickly.
 */
export const GENERATION_GRACE_MS = 30_000;
/** Generation names tried when the next one is taken (planted, or left by a crash). */
const NAME_ATTEMPTS = 10;

export interface PublishResult {
  generation: string;
  /**
   * Entries found in the agent's own namespace that it did not expect (planted by another process, or
   * left by a crash), removed without being followed: `<path> (<what it was>)`, for the log.
   */
  removed: string[];
}

export interface PrepareReport {
  /** CERT_DIR's real path: every later operation of this writer happens under it. */
  root: string;
  /** As PublishResult.removed. */
  removed: string[];
  /** Free bytes on the volume; undefined where statfs is not supported. */
  freeBytes: number | undefined;
}

async function writeFileDurable(fsx: StoreFs, file: string, content: string, mode: number): Promise<void> {
  const fh = await fsx.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(content);
    // open()'s mode is filtered by the umask; the contract is exactly 0600 / 0644.
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(fsx: StoreFs, dir: string, mode?: number): Promise<void> {
  const fh = await fsx.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
  try {
    if (mode !== undefined) await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class CertDirWriter {
  private seq = 0;
  private lastPublishAt = -Infinity;
  /** When the generations replaced since the last prune() are past their grace period. */
  private pruneDue: number | undefined;
  /** Every operation on the dir runs under this promise chain: one at a time, in call order. */
  private queue: Promise<unknown> = Promise.resolve();
  /** CERT_DIR's real path, resolved by the first operation that found it. */
  private root: string | undefined;

  constructor(
    readonly certDir: string,
    private readonly clock: Clock,
    private readonly minIntervalMs = MIN_PUBLISH_INTERVAL_MS,
    private readonly graceMs = GENERATION_GRACE_MS,
    private readonly fsx: StoreFs = nodeStoreFs,
  ) {}

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * CERT_DIR's real path, resolved once: the operator's path may be a symlink to the mount, but what
   * it led to at the first look is where this writer stays. Throws ENOENT / ENOTDIR errors.
   */
  private async resolveRoot(createMissing: boolean): Promise<string> {
    if (this.root !== undefined) return this.root;
    let real: string;
    try {
      real = await this.fsx.realpath(this.certDir);
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw err;
      // Not created outside `dev`: the key must land on the pod's memory emptyDir, never on whatever
      // filesystem holds the path when the volume is not mounted.
      if (!createMissing) throw errnoError(CERT_DIR_MISSING, `${this.certDir} does not exist`);
      await this.fsx.mkdirp(this.certDir, DIR_MODE);
      real = await this.fsx.realpath(this.certDir);
    }
    if ((await entryAt(this.fsx, real)).kind !== 'dir') throw errnoError('ENOTDIR', `${this.certDir} is ${describeEntry(await entryAt(this.fsx, real))}`);
    this.root = real;
    return real;
  }

  /**
   * Checks, before the agent asks Vault to sign, that a publish could be written: CERT_DIR exists (or
   * is created, with `createMissing`, for `dev`) and is a directory, a probe file can be created,
   * written and removed in `.gen`, the volume has room (statfs, where supported), and no planted
   * entry stands in the way (those in the agent's namespace are removed and reported; a directory at
   * a visible name is refused). Leaves the dir as it found it apart from those removals. Throws
   * StoreError (reason write_failed) saying what is wrong: EROFS "read-only", ENOENT "does not
   * exist", EACCES permissions, ENOSPC space, STORE_PLANTED naming the entry.
   */
  prepareToPublish(options: { createMissing?: boolean } = {}): Promise<PrepareReport> {
    return this.exclusive(async () => {
      const removed: string[] = [];
      let step = 'checking CERT_DIR';
      let madeGenDir = false;
      try {
        const root = await this.resolveRoot(options.createMissing ?? false);
        await refuseUnreplaceableNames(this.fsx, root, this.certDir, (name) => `while checking ${name}`);
        step = `creating ${GEN_DIR}`;
        madeGenDir = await ensureGenDir(this.fsx, root, removed);
        step = `removing what does not belong in ${GEN_DIR}`;
        await clearDataFolder(this.fsx, root, removed);
        removed.push(...(await this.pruneLocked([], false)).unexpected);
        step = `writing a probe file in ${GEN_DIR}`;
        await probeWrite(this.fsx, path.join(root, GEN_DIR));
        step = 'checking free space';
        const freeBytes = await checkFreeSpace(this.fsx, root);
        if (madeGenDir) await this.fsx.rmdir(path.join(root, GEN_DIR)).catch(() => undefined);
        return { root, removed, freeBytes };
      } catch (err) {
        if (madeGenDir && this.root) await this.fsx.rmdir(path.join(this.root, GEN_DIR)).catch(() => undefined);
        throw storeError(`while ${step}`, this.certDir, err);
      }
    });
  }

  /**
   * Publishes `files` as the new current generation. Waits first if the previous publish was less than
   * the minimum interval ago. Throws StoreError (reason write_failed) with nothing visible changed and
   * nothing of this publish left behind, so the caller may retry with the same files.
   */
  publish(files: BundleFiles, signal?: AbortSignal): Promise<PublishResult> {
    return this.exclusive(async () => (await this.publishLocked(() => files, signal))!);
  }

  /**
   * Publishes what `select` returns when its turn comes (nothing when it returns undefined): for a
   * re-publish that must not overwrite a newer generation published while it waited.
   */
  publishIf(select: () => BundleFiles | undefined, signal?: AbortSignal): Promise<PublishResult | undefined> {
    return this.exclusive(() => this.publishLocked(select, signal));
  }

  private async publishLocked(select: () => BundleFiles | undefined, signal?: AbortSignal): Promise<PublishResult | undefined> {
    // Capped at the interval itself, so a wall clock stepped back cannot turn it into an hour's wait.
    const wait = Math.min(this.minIntervalMs, this.lastPublishAt + this.minIntervalMs - this.clock.now());
    if (wait > 0) await this.clock.sleep(wait, signal);
    const files = select();
    if (files === undefined) return undefined;
    const removed: string[] = [];
    let gen = generationName(this.clock.now(), ++this.seq);
    let step = `creating ${GEN_DIR}/${gen}`;
    let root: string | undefined;
    let madeGenDir = false;
    let madeGeneration = false;
    try {
      root = await this.resolveRoot(true);
      await refuseUnreplaceableNames(this.fsx, root, this.certDir, (name) => `while linking ${name}`);
      madeGenDir = await ensureGenDir(this.fsx, root, removed);
      gen = await this.makeGenerationDir(root, gen, removed);
      madeGeneration = true;
      const dir = path.join(root, GEN_DIR, gen);
      for (const [k, name] of Object.entries(BUNDLE_FILES) as [keyof BundleFiles, string][]) {
        step = `writing ${name}`;
        await writeFileDurable(this.fsx, path.join(dir, name), files[k], k === 'caKey' ? KEY_MODE : CERT_MODE);
      }
      step = 'syncing the generation folder';
      // Through a no-follow handle: the mode is set on the folder made above, not on a link's target.
      await syncDir(this.fsx, dir, DIR_MODE);
      await syncDir(this.fsx, path.join(root, GEN_DIR));
    } catch (err) {
      if (root !== undefined) await this.undo(root, madeGeneration ? gen : undefined, [], madeGenDir);
      throw storeError(`while ${step} for a new generation`, this.certDir, err);
    }

    const madeLinks: string[] = [];
    try {
      // Shutdown began while the files were written: never publish during shutdown.
      if (signal?.aborted) throw new AbortedError();
      // Before the swap: the first publish's links (dangling until ..data appears) and any link that is
      // not ours; regular files stay until after the swap, as their content is what istiod has now.
      await this.linkVisibleNames(root, 'before-swap', removed, madeLinks);
      step = 'swapping ..data';
      await clearEntry(this.fsx, root, `${GEN_DIR}/${DATA_TMP_LINK}`, removed);
      const tmp = path.join(root, GEN_DIR, DATA_TMP_LINK);
      await this.fsx.symlink(dataLinkTarget(gen), tmp);
      await clearDataFolder(this.fsx, root, removed);
      await this.fsx.rename(tmp, path.join(root, DATA_LINK));
      this.lastPublishAt = this.clock.now();
      this.pruneDue = this.lastPublishAt + this.graceMs + 1000;
    } catch (err) {
      await removeEntry(this.fsx, path.join(root, GEN_DIR, DATA_TMP_LINK)).catch(() => undefined);
      await this.undo(root, gen, madeLinks, madeGenDir);
      if (err instanceof AbortedError) throw err;
      throw storeError(`while ${step}`, this.certDir, err);
    }
    // From here on the new generation is published; what follows only tidies up. The one it replaced
    // stays for the grace period (a reader may be in it); prune() removes it then.
    await this.linkVisibleNames(root, 'all', removed);
    await syncDir(this.fsx, root).catch(() => undefined);
    removed.push(...(await this.pruneLocked([gen], true)).unexpected);
    return { generation: gen, removed };
  }

  /**
   * Creates the new generation folder, exclusively: mkdir(2) never follows a link at the name. When
   * the name is taken (planted, or a crash left it), the stranger is removed without being followed
   * and the name tried again, or the next name is taken. Returns the name used.
   */
  private async makeGenerationDir(root: string, first: string, removed: string[]): Promise<string> {
    let name = first;
    let cleared = false;
    for (let attempt = 0; attempt < NAME_ATTEMPTS; attempt++) {
      try {
        await this.fsx.mkdir(path.join(root, GEN_DIR, name), DIR_MODE);
        return name;
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
      }
      if (!cleared && name !== (await currentGeneration(root, this.fsx))) {
        await clearEntry(this.fsx, root, `${GEN_DIR}/${name}`, removed);
        cleared = true;
      } else {
        name = generationName(this.clock.now(), ++this.seq);
        cleared = false;
      }
    }
    throw errnoError('EEXIST', `${NAME_ATTEMPTS} generation names taken in ${GEN_DIR}`);
  }

  /** Removes what a failed publish made: its generation, the visible links it created, `.gen`. */
  private async undo(root: string, gen: string | undefined, links: readonly string[], madeGenDir: boolean): Promise<void> {
    if (gen !== undefined) await removeEntry(this.fsx, path.join(root, GEN_DIR, gen)).catch(() => undefined);
    for (const name of links) {
      const e = await entryAt(this.fsx, path.join(root, name)).catch(() => undefined);
      if (e?.kind === 'symlink' && e.target === visibleLinkTarget(name)) await this.fsx.unlink(path.join(root, name)).catch(() => undefined);
    }
    // A failed first publish leaves CERT_DIR as it found it (rmdir only removes it if empty).
    if (madeGenDir) await this.fsx.rmdir(path.join(root, GEN_DIR)).catch(() => undefined);
  }

  /**
   * When the generations replaced by publishes are past their grace period, for a timer to call
   * prune() then; undefined when nothing replaced is waiting.
   */
  pruneDueAt(): number | undefined {
    return this.pruneDue;
  }

  /**
   * Removes replaced generations whose successor is older than the grace period (never the current or
   * `keep`), and whatever does not belong in `.gen` (temporary entries, a generation name that is not
   * a real folder, `.gen` itself when it is not a real folder), never following a link. Called after
   * each publish and at start (a crash mid-publish leaves a partial folder behind). Never throws.
   * Returns what it removed: generation names, and `<path> (<what it was>)` for the rest.
   */
  prune(keep: readonly (string | undefined)[] = []): Promise<string[]> {
    return this.exclusive(async () => {
      if (this.pruneDue !== undefined && this.clock.now() >= this.pruneDue) this.pruneDue = undefined;
      const { generations, unexpected } = await this.pruneLocked(keep, true);
      return [...generations, ...unexpected];
    });
  }

  private async pruneLocked(keep: readonly (string | undefined)[], quiet: boolean): Promise<{ generations: string[]; unexpected: string[] }> {
    const generations: string[] = [];
    const unexpected: string[] = [];
    try {
      const root = this.root ?? (await this.resolveRoot(false).catch(() => undefined));
      if (root === undefined) return { generations, unexpected };
      const base = path.join(root, GEN_DIR);
      const kind = (await entryAt(this.fsx, base)).kind;
      if (kind === 'missing') return { generations, unexpected };
      if (kind !== 'dir') {
        await clearEntry(this.fsx, root, GEN_DIR, unexpected);
        return { generations, unexpected };
      }
      const entries = (await this.fsx.readdir(base)).sort();
      const current = await currentGeneration(root, this.fsx);
      const now = this.clock.now();
      const kinds = new Map<string, string>();
      for (const e of entries) kinds.set(e, (await entryAt(this.fsx, path.join(base, e))).kind);
      const gens = entries.filter((e) => GENERATION_PATTERN.test(e) && kinds.get(e) === 'dir');
      for (const e of entries) {
        if (e === current || keep.includes(e)) continue;
        const rel = `${GEN_DIR}/${e}`;
        try {
          if (GENERATION_PATTERN.test(e) && kinds.get(e) !== 'dir') {
            // Not a folder the agent made: never followed, never kept for a grace period.
            await clearEntry(this.fsx, root, rel, unexpected);
          } else if (GENERATION_PATTERN.test(e)) {
            if (current === undefined || e < current) {
              const successor = gens[gens.indexOf(e) + 1];
              const replacedAt = successor === undefined ? undefined : generationTime(successor);
              if (replacedAt === undefined || now - replacedAt < this.graceMs) continue;
            }
            // Else newer than the published one: a crash left it, and no reader ever saw it.
            await removeEntry(this.fsx, path.join(base, e));
            generations.push(e);
          } else if (isTempName(e)) {
            await clearEntry(this.fsx, root, rel, unexpected);
          }
        } catch (err) {
          if (!quiet) throw err;
        }
      }
    } catch (err) {
      if (!quiet) throw err;
    }
    return { generations, unexpected };
  }

  /**
   * Makes the visible names fixed symlinks into `..data`: once, at the first publish, and again when
   * something replaced them (a crash, another tool, a planted link). A regular file or a stranger's
   * link there is replaced atomically. Throws StoreError.
   */
  ensureVisibleLinks(): Promise<void> {
    return this.exclusive(async () => {
      let root;
      try {
        root = await this.resolveRoot(false);
      } catch (err) {
        throw storeError('while linking the visible names', this.certDir, err);
      }
      await this.linkVisibleNames(root, 'all', []);
    });
  }

  /**
   * 'before-swap' leaves regular files in place (what istiod reads until the swap); 'all' replaces
   * them too. Names that were missing and are now linked are added to `made`.
   */
  private async linkVisibleNames(root: string, phase: 'before-swap' | 'all', removed: string[], made: string[] = []): Promise<void> {
    for (const name of Object.values(BUNDLE_FILES)) {
      const visible = path.join(root, name);
      const target = visibleLinkTarget(name);
      try {
        const e = await entryAt(this.fsx, visible);
        if (e.kind === 'symlink' && e.target === target) continue;
        if (phase === 'before-swap' && e.kind === 'file') continue;
        if (e.kind === 'dir') throw plantedError(`while linking ${name}`, this.certDir, name, describeEntry(e));
        if ((await entryAt(this.fsx, path.join(root, GEN_DIR))).kind !== 'dir') await ensureGenDir(this.fsx, root, removed);
        const tmp = `${GEN_DIR}/${name}${TMP_SUFFIX}`;
        await clearEntry(this.fsx, root, tmp, removed);
        await this.fsx.symlink(target, path.join(root, tmp));
        await this.fsx.rename(path.join(root, tmp), visible);
        if (e.kind === 'missing') made.push(name);
      } catch (err) {
        throw storeError(`while linking ${name} to ${target}`, this.certDir, err);
      }
    }
  }
}
