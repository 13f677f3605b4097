/**
 * A small file mounted from a Secret or ConfigMap that can change under a running agent (VAULT_CACERT,
 * the AppRole secret-id, extra trust roots). kubelet updates such volumes by swapping the `..data`
 * symlink, which a watch on the file itself misses (the watched inode is never written; it is unlinked
 * with its old folder). So the parent folder is watched, without following symlinks, and any event
 * there re-reads the file and reports it when the content really changed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { FSWatcher } from 'chokidar';

export interface MountedFile {
  readonly path: string;
  /** Content as last read. */
  current(): string;
  /** Re-reads now (also done on every change event); resolves with the content. */
  refresh(): Promise<string>;
  close(): Promise<void>;
}

export interface MountedFileOptions {
  /** Called after the content changed; errors in it are the caller's to handle. */
  onChange?: (content: string) => void;
  /** Called when a re-read fails (the old content stays current). */
  onError?: (err: unknown) => void;
}

/** Reads `file` once (throws if unreadable) and keeps it fresh. */
export async function watchMountedFile(file: string, opts: MountedFileOptions = {}): Promise<MountedFile> {
  let content = await fs.readFile(file, 'utf8');
  const dir = path.dirname(path.resolve(file));
  let watcher: FSWatcher | undefined;
  let pending: Promise<string> | undefined;

  const refresh = async (): Promise<string> => {
    const next = await fs.readFile(file, 'utf8');
    if (next !== content) {
      content = next;
      opts.onChange?.(next);
    }
    return content;
  };
  let again = false;
  const onEvent = () => {
    // Coalesce the burst of events one kubelet swap produces (add ..data_tmp, rename, unlink old dir);
    // an event during a re-read asks for one more read after it.
    if (pending) {
      again = true;
      return;
    }
    pending = new Promise<void>((r) => setTimeout(r, 50)).then(refresh).catch((err) => {
      opts.onError?.(err);
      return content;
    }).finally(() => {
      pending = undefined;
      if (again) {
        again = false;
        onEvent();
      }
    });
  };

  // Loaded on first use: `init` never watches, and a cold start should not pay for it.
  const { watch } = await import('chokidar');
  watcher = watch(dir, { depth: 0, ignoreInitial: true, followSymlinks: false, persistent: false });
  watcher.on('all', onEvent);
  await new Promise<void>((resolve) => watcher!.once('ready', () => resolve()));

  return {
    path: file,
    current: () => content,
    refresh,
    close: async () => {
      await watcher?.close();
      watcher = undefined;
    },
  };
}
