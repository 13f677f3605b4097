import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { watchMountedFile, type MountedFile } from '../../src/inputs/mounted-file.js';
import { waitFor } from '../helpers/wait.js';
import { kubeletWrite } from '../helpers/kubelet-volume.js';

let dir: string;
let watched: MountedFile | undefined;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-mount-'));
});
afterEach(async () => {
  await watched?.close();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('watchMountedFile', () => {
  it("sees kubelet's ..data swap (a watch on the file itself would not)", async () => {
    await kubeletWrite(dir, { 'ca.crt': 'one' });
    const changes: string[] = [];
    watched = await watchMountedFile(path.join(dir, 'ca.crt'), { onChange: (c) => changes.push(c) });
    expect(watched.current()).toBe('one');
    await kubeletWrite(dir, { 'ca.crt': 'two' });
    await waitFor(() => changes.length === 1, { what: 'one change', timeoutMs: 5000, intervalMs: 20 });
    expect(watched.current()).toBe('two');
    await kubeletWrite(dir, { 'ca.crt': 'three' });
    await waitFor(() => changes.length === 2, { what: 'two changes', timeoutMs: 5000, intervalMs: 20 });
    expect(changes).toEqual(['two', 'three']);
  });

  it('sees a plain in-place write too, and reports only real content changes', async () => {
    const file = path.join(dir, 'secret-id');
    await fs.writeFile(file, 'a');
    const changes: string[] = [];
    watched = await watchMountedFile(file, { onChange: (c) => changes.push(c) });
    await fs.writeFile(file, 'b');
    await waitFor(() => changes.length === 1, { what: 'one change', timeoutMs: 5000, intervalMs: 20 });
    // An unrelated file changes in the same folder, then ours: the events are handled in order, so once
    // 'c' is reported the unrelated write has been handled too, and it reported nothing.
    await fs.writeFile(path.join(dir, 'unrelated'), 'x');
    await fs.writeFile(file, 'c');
    await waitFor(() => changes.length >= 2, { what: 'two changes', timeoutMs: 5000, intervalMs: 20 });
    expect(changes).toEqual(['b', 'c']);
  });

  it('keeps the last content and reports an error when the file disappears', async () => {
    const file = path.join(dir, 'f');
    await fs.writeFile(file, 'keep');
    const errors: unknown[] = [];
    watched = await watchMountedFile(file, { onError: (e) => errors.push(e) });
    await fs.rm(file);
    await waitFor(() => errors.length >= 1, { what: 'an error', timeoutMs: 5000, intervalMs: 20 });
    expect(watched.current()).toBe('keep');
  });

  it('throws at start when the file cannot be read', async () => {
    await expect(watchMountedFile(path.join(dir, 'missing'))).rejects.toThrow(/ENOENT/);
  });
});
