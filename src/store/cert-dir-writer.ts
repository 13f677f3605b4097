/**
 * Publishes a bundle into the cert dir so that a reader always sees one complete, matching generation:
 * write the four files into a new generation folder, fsync them and the folders, then one rename(2) of a
 * symlink onto `..data`. A failure before the rename leaves the published generation untouched and
 * removes the partial folder. A replaced generation is removed once its successor is older than
 * GENERATION_GRACE_MS: a reader that resolved `..data` just before a swap can finish, and an old key
 * (after a rotation because of a compromise) does not linger. A crash mid-publish leaves nothing that
 * outlives the next start. One operation at a time: publishes, prunes and repairs are serialised.
 */
import { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AbortedError, type Clock } from '../common/clock.js';
import { AgentError } from '../common/errors.js';
import { BUNDLE_FILES, type BundleFiles } from '../pki/bundle.js';
import {
  CERT_MODE, DATA_LINK, DATA_TMP_LINK, DIR_MODE, GEN_DIR, GENERATION_PATTERN, KEY_MODE,
  dataLinkTarget, genPath, generationName, generationTime,
} from './layout.js';
import { currentGeneration } from './cert-dir-reader.js';

/** Minimum spacing of publishes: istiod reloads 100 ms after the first event, then reads the files. */
export const MIN_PUBLISH_INTERVAL_MS = 2000;
/**
 * A replaced generation stays on disk at least this long, so a reader that resolved `..data` just
 * before a swap can finish reading it even if several publishes follow quickly.
 */
export const GENERATION_GRACE_MS = 30_000;

const NOT_RETRYABLE = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR']);

export class StoreError extends AgentError {
  constructor(message: string, errno: string | undefined, cause?: unknown) {
    super(message, { code: `STORE_${errno ?? 'ERROR'}`, reason: 'write_failed', retryable: !NOT_RETRYABLE.has(errno ?? ''), cause });
  }
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code : undefined;
}

const ADVICE: Record<string, string> = {
  ENOSPC: 'the volume is full: raise the emptyDir sizeLimit or free space',
  EDQUOT: 'the volume quota is exhausted: raise the emptyDir sizeLimit',
  EACCES: 'permission denied: CERT_DIR must be writable by the agent (run as 1337 with fsGroup 1337)',
  EPERM: 'operation not permitted: CERT_DIR must be writable by the agent (run as 1337 with fsGroup 1337)',
  EROFS: 'the volume is read-only: mount CERT_DIR read-write in the agent container',
  ENOENT: 'CERT_DIR does not exist: mount the emptyDir there',
};

async function writeFileDurable(file: string, content: string, mode: number): Promise<void> {
  const fh = await fs.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, mode);
  try {
    await fh.writeFile(content);
    // open()'s mode is filtered by the umask; the contract is exactly 0600 / 0644.
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, fsc.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface PublishResult {
  generation: string;
}

export class CertDirWriter {
  private seq = 0;
  private lastPublishAt = -Infinity;
  /** When the generations replaced since the last prune() are past their grace period. */
  private pruneDue: number | undefined;
  /** Every operation on the dir runs under this promise chain: one at a time, in call order. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly certDir: string,
    private readonly clock: Clock,
    private readonly minIntervalMs = MIN_PUBLISH_INTERVAL_MS,
    private readonly graceMs = GENERATION_GRACE_MS,
  ) {}

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Publishes `files` as the new current generation. Waits first if the previous publish was less than
   * the minimum interval ago. Throws StoreError (reason write_failed) with nothing visible changed.
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
    const gen = generationName(this.clock.now(), ++this.seq);
    const dir = genPath(this.certDir, gen);
    let step = 'preparing';
    let madeStaging: string | undefined;
    try {
      step = `creating ${path.join(GEN_DIR, gen)}`;
      madeStaging = await fs.mkdir(path.join(this.certDir, GEN_DIR), { recursive: true, mode: DIR_MODE });
      await fs.mkdir(dir, { mode: DIR_MODE });
      await fs.chmod(dir, DIR_MODE);
      for (const [k, name] of Object.entries(BUNDLE_FILES) as [keyof BundleFiles, string][]) {
        step = `writing ${name}`;
        await writeFileDurable(path.join(dir, name), files[k], k === 'caKey' ? KEY_MODE : CERT_MODE);
      }
      step = 'syncing the generation folder';
      await fsyncDir(dir);
      await fsyncDir(path.join(this.certDir, GEN_DIR));
    } catch (err) {
      await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
      // A failed first publish leaves CERT_DIR as it found it (rmdir only removes it if empty).
      if (madeStaging) await fs.rmdir(path.join(this.certDir, GEN_DIR)).catch(() => undefined);
      throw this.error(`while ${step} for a new generation`, err);
    }

    try {
      // Shutdown began while the files were written: never publish during shutdown.
      if (signal?.aborted) throw new AbortedError();
      step = 'swapping ..data';
      const tmp = path.join(this.certDir, GEN_DIR, DATA_TMP_LINK);
      await fs.rm(tmp, { force: true });
      await fs.symlink(dataLinkTarget(gen), tmp);
      await fs.rename(tmp, path.join(this.certDir, DATA_LINK));
      this.lastPublishAt = this.clock.now();
      this.pruneDue = this.lastPublishAt + this.graceMs + 1000;
    } catch (err) {
      await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
      if (err instanceof AbortedError) throw err;
      throw this.error(`while ${step}`, err);
    }
    // From here on the new generation is published; what follows only tidies up. The one it replaced
    // stays for the grace period (a reader may be in it); tidyAfterGrace() removes it then.
    await this.linkVisibleNames();
    await fsyncDir(this.certDir).catch(() => undefined);
    await this.pruneLocked([gen]);
    return { generation: gen };
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
   * `keep`), and stray temporary links. Called after each publish and at start (a crash mid-publish
   * leaves a partial folder behind). Never throws. Returns what it removed.
   */
  prune(keep: readonly (string | undefined)[] = []): Promise<string[]> {
    return this.exclusive(() => {
      if (this.pruneDue !== undefined && this.clock.now() >= this.pruneDue) this.pruneDue = undefined;
      return this.pruneLocked(keep);
    });
  }

  private async pruneLocked(keep: readonly (string | undefined)[]): Promise<string[]> {
    const removed: string[] = [];
    const base = path.join(this.certDir, GEN_DIR);
    const entries = (await fs.readdir(base).catch(() => [] as string[])).sort();
    const current = await currentGeneration(this.certDir);
    const now = this.clock.now();
    const gens = entries.filter((e) => GENERATION_PATTERN.test(e));
    for (const e of entries) {
      if (e === current || keep.includes(e)) continue;
      if (GENERATION_PATTERN.test(e) && current !== undefined && e > current) {
        // Newer than the published one: a crash left it half-written, and no reader ever saw it.
      } else if (GENERATION_PATTERN.test(e)) {
        const successor = gens[gens.indexOf(e) + 1];
        const replacedAt = successor === undefined ? undefined : generationTime(successor);
        if (replacedAt === undefined || now - replacedAt < this.graceMs) continue;
      } else if (e !== DATA_TMP_LINK && !e.endsWith('.pem.tmp')) {
        continue;
      }
      await fs.rm(path.join(base, e), { recursive: true, force: true }).then(
        () => removed.push(e),
        () => undefined,
      );
    }
    return removed;
  }

  /**
   * Makes the visible names fixed symlinks into `..data`: once, at the first publish, and again when a
   * crash between that publish's swap and its links left some missing. A regular file left there by
   * another tool is replaced atomically. Throws StoreError.
   */
  ensureVisibleLinks(): Promise<void> {
    return this.exclusive(() => this.linkVisibleNames());
  }

  private async linkVisibleNames(): Promise<void> {
    for (const name of Object.values(BUNDLE_FILES)) {
      const visible = path.join(this.certDir, name);
      const target = `${DATA_LINK}/${name}`;
      const existing = await fs.readlink(visible).catch(() => undefined);
      if (existing === target) continue;
      const tmp = path.join(this.certDir, GEN_DIR, `${name}.tmp`);
      try {
        await fs.rm(tmp, { force: true });
        await fs.symlink(target, tmp);
        await fs.rename(tmp, visible);
      } catch (err) {
        throw this.error(`while linking ${name} to ${target}`, err);
      }
    }
  }

  /**
   * Checks that CERT_DIR can take a publish before anything is asked of Vault. Throws StoreError.
   * (Interim: the dedicated preflight lands with the symlink-safety work on the store.)
   */
  async checkWritable(): Promise<void> {
    try {
      await fs.access(this.certDir, fsc.W_OK);
    } catch (err) {
      throw this.error('while checking that CERT_DIR is writable', err);
    }
  }

  private error(doing: string, err: unknown): StoreError {
    const errno = errnoOf(err);
    const advice = (errno && ADVICE[errno]) ?? 'check CERT_DIR';
    return new StoreError(`${doing} in ${this.certDir}: ${errno ?? (err instanceof Error ? err.message : String(err))} (${advice})`, errno, err);
  }
}
