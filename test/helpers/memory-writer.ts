/**
 * An in-memory BundleWriter for keeper and loop tests: records what was published and fails on demand
 * (the real writer and its crash-safety are tested against real folders in the store tests).
 */
import type { BundleWriter } from '../../src/agent/bundle-keeper.js';
import type { BundleFiles } from '../../src/pki/bundle.js';
import { StoreError } from '../../src/store/cert-dir-writer.js';

export class MemoryWriter implements BundleWriter {
  readonly published: BundleFiles[] = [];
  /** Errors thrown by the next publish() calls, in order. */
  failPublish: Error[] = [];
  /** Error thrown by checkWritable() while set. */
  notWritable: Error | undefined;

  async prepareToPublish(): Promise<{ removed: string[] }> {
    if (this.notWritable) throw this.notWritable;
    return { removed: [] };
  }

  async publish(files: BundleFiles): Promise<{ generation: string; removed: string[] }> {
    const err = this.failPublish.shift();
    if (err) throw err;
    this.published.push(files);
    return { generation: `gen-${this.published.length}`, removed: [] };
  }

  async publishIf(select: () => BundleFiles | undefined): Promise<{ generation: string; removed: string[] } | undefined> {
    const files = select();
    return files ? this.publish(files) : undefined;
  }

  async prune(): Promise<string[]> {
    return [];
  }

  pruneDueAt(): number | undefined {
    return undefined;
  }

  async ensureVisibleLinks(): Promise<void> {}
}

/** A write failure as the real writer reports it. */
export function storeError(errno: string): StoreError {
  return new StoreError(`while writing ca-key.pem for a new generation in /cert-dir: ${errno}`, errno);
}
