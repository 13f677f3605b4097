/**
 * Issue 9, point 3: the agent follows no symlink it did not make, anywhere under CERT_DIR. Each test
 * plants one entry the writer or the reader touches (`.gen`, the staging generation folder,
 * `.gen/..data_tmp`, `.gen/<name>.pem.tmp`, existing generation folders and their files, `..data`, the
 * visible names) as a symlink or something else leading OUTSIDE CERT_DIR, to a folder holding a
 * sentinel, a key and a complete "evil" bundle. Every test asserts that not one byte, name or mode
 * outside CERT_DIR changed, that nothing outside was read as the bundle, and what became of the entry:
 * removed (our namespace) or refused with a StoreError naming it.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.js';
import { readCertDir, visibleBundlePresent } from '../../src/store/cert-dir-reader.js';
import { CertDirWriter } from '../../src/store/cert-dir-writer.js';
import { GEN_DIR, generationName } from '../../src/store/layout.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { makeOutside, pictureOf } from '../helpers/outside-tree.js';

const NAMES = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'] as const;
const tagged = (n: number) => ({ caKey: `key ${n}\n`, caCert: `cert ${n}\n`, certChain: `chain ${n}\n`, rootCert: `root ${n}\n` });

let base: string;
let dir: string;
let outside: string;
let outsideBefore: string[];

beforeEach(async () => {
  base = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-planted-'));
  dir = path.join(base, 'cacerts');
  outside = path.join(base, 'outside');
  await fs.mkdir(dir);
  await makeOutside(outside);
  outsideBefore = await pictureOf(outside);
});
afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

const at = (...p: string[]) => path.join(dir, ...p);
const out = (...p: string[]) => path.join(outside, ...p);

/** Not one byte, name or mode changed outside CERT_DIR; the sentinel is still there. */
async function expectOutsideUnchanged(): Promise<void> {
  expect(await pictureOf(outside)).toEqual(outsideBefore);
  expect(await fs.readFile(out('sentinel'), 'utf8')).toBe('sentinel: must never change\n');
}

/** `gen` is published exactly: ..data and the visible names are ours, the folder is a real one. */
async function expectPublished(n: number, gen: string): Promise<void> {
  expect(await fs.readlink(at('..data'))).toBe(`${GEN_DIR}/${gen}`);
  expect((await fs.lstat(at(GEN_DIR))).isDirectory()).toBe(true);
  expect((await fs.lstat(at(GEN_DIR, gen))).isDirectory()).toBe(true);
  for (const name of NAMES) expect(await fs.readlink(at(name))).toBe(`..data/${name}`);
  expect(await readCertDir(dir)).toMatchObject({ state: 'present', bundle: { files: tagged(n), generation: gen, brokenLinks: [] } });
  expect(await visibleBundlePresent(dir)).toBe(true);
}

/** What the reader returned holds nothing from outside. */
function expectNothingOutsideRead(read: unknown): void {
  expect(JSON.stringify(read)).not.toMatch(/evil (cert|key|chain|root)|outside key:|sentinel:|old-looking|temp-looking/);
}

describe('.gen planted', () => {
  it.each([
    ['a symlink to a folder outside', () => fs.symlink(outside, at(GEN_DIR))],
    ['a relative symlink escaping CERT_DIR', () => fs.symlink('../outside', at(GEN_DIR))],
    ['a symlink to a file outside', () => fs.symlink(out('sentinel'), at(GEN_DIR))],
    ['a regular file', () => fs.writeFile(at(GEN_DIR), 'not a folder')],
  ])('as %s: removed, the new generation and its key written inside CERT_DIR', async (_, plant) => {
    await plant();
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation, removed } = await w.publish(tagged(1));
    expect(removed).toEqual([expect.stringMatching(/^\.gen \(/)]);
    expect(await fs.readdir(at(GEN_DIR))).toEqual([generation]);
    await expectPublished(1, generation);
    await expectOutsideUnchanged();
  });

  it('swapped for a link to an outside copy after a publish: not read, not pruned through, replaced', async () => {
    const clock = new FakeClock(Date.now());
    const w = new CertDirWriter(dir, clock, 0, 30_000);
    const { generation } = await w.publish(tagged(1));
    // The outside folder now holds a copy of the real .gen plus old-looking generation names.
    await fs.cp(at(GEN_DIR, generation), out(generation), { recursive: true });
    outsideBefore = await pictureOf(outside);
    await fs.rm(at(GEN_DIR), { recursive: true });
    await fs.symlink(outside, at(GEN_DIR));
    const read = await readCertDir(dir);
    expect(read.state).not.toBe('present');
    expect(read).toMatchObject({ refused: [GEN_DIR] });
    expect(await visibleBundlePresent(dir)).toBe(false);
    await clock.advance(60_000);
    expect(await w.prune()).toEqual([expect.stringMatching(/^\.gen \(/)]);
    await expectOutsideUnchanged();
    const next = await w.publish(tagged(2));
    await expectPublished(2, next.generation);
    await clock.advance(60_000);
    await w.prune();
    await expectOutsideUnchanged();
  });
});

describe('the staging generation folder planted under the next generation name', () => {
  it.each([
    ['a symlink to a folder outside', () => outside],
    ['a symlink to the outside key', () => out('key.pem')],
  ])('as %s: removed, never written through', async (_, target) => {
    const clock = new FakeClock(Date.UTC(2026, 0, 1));
    const w = new CertDirWriter(dir, clock, 0);
    await fs.mkdir(at(GEN_DIR));
    const next = generationName(clock.now(), 1);
    await fs.symlink(target(), at(GEN_DIR, next));
    const { generation, removed } = await w.publish(tagged(1));
    expect(removed).toEqual([`${GEN_DIR}/${next} (a symlink to ${target()})`]);
    await expectPublished(1, generation);
    expect(await fs.readdir(at(GEN_DIR))).toEqual([generation]);
    await expectOutsideUnchanged();
  });

  it('as a folder holding a link to the outside key: removed without following the link', async () => {
    const clock = new FakeClock(Date.UTC(2026, 0, 1));
    const w = new CertDirWriter(dir, clock, 0);
    const next = generationName(clock.now(), 1);
    await fs.mkdir(at(GEN_DIR, next), { recursive: true });
    await fs.symlink(out('key.pem'), at(GEN_DIR, next, 'ca-key.pem'));
    const { generation } = await w.publish(tagged(1));
    await expectPublished(1, generation);
    expect(await fs.readFile(at(GEN_DIR, generation, 'ca-key.pem'), 'utf8')).toBe('key 1\n');
    expect(await fs.readdir(at(GEN_DIR))).toEqual([generation]);
    await expectOutsideUnchanged();
  });
});

describe('temporary links planted', () => {
  const plants: [string, (p: string) => Promise<void>][] = [
    ['a symlink to a folder outside', (p) => fs.symlink(outside, p)],
    ['a symlink to the outside key', (p) => fs.symlink(out('key.pem'), p)],
    ['a folder holding a link to the outside key', async (p) => {
      await fs.mkdir(p);
      await fs.symlink(out('key.pem'), path.join(p, 'ca-key.pem'));
    }],
  ];

  it.each(plants)('.gen/..data_tmp as %s: removed before the swap', async (_, plant) => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const first = await w.publish(tagged(1));
    await plant(at(GEN_DIR, '..data_tmp'));
    const { generation, removed } = await w.publish(tagged(2));
    expect(removed).toEqual([expect.stringMatching(/^\.gen\/\.\.data_tmp \(/)]);
    expect(generation).not.toBe(first.generation);
    await expectPublished(2, generation);
    await expectOutsideUnchanged();
  });

  it.each(plants)('.gen/ca-key.pem.tmp as %s (first publish): removed before linking', async (_, plant) => {
    await fs.mkdir(at(GEN_DIR));
    await plant(at(GEN_DIR, 'ca-key.pem.tmp'));
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation, removed } = await w.publish(tagged(1));
    expect(removed).toEqual([expect.stringMatching(/^\.gen\/ca-key\.pem\.tmp \(/)]);
    await expectPublished(1, generation);
    expect(await fs.readdir(at(GEN_DIR))).toEqual([generation]);
    await expectOutsideUnchanged();
  });

  it('stray temporary entries of every kind are removed by prune without following them', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation } = await w.publish(tagged(1));
    await fs.symlink(outside, at(GEN_DIR, '..data_tmp'));
    await fs.symlink(out('key.pem'), at(GEN_DIR, 'ca-key.pem.tmp'));
    await fs.mkdir(at(GEN_DIR, 'root-cert.pem.tmp'));
    await fs.symlink(out('sentinel'), at(GEN_DIR, 'root-cert.pem.tmp', 'x'));
    expect((await w.prune()).sort()).toEqual(['.gen/..data_tmp (a symlink to ' + outside + ')', `.gen/ca-key.pem.tmp (a symlink to ${out('key.pem')})`, '.gen/root-cert.pem.tmp (a directory)']);
    expect(await fs.readdir(at(GEN_DIR))).toEqual([generation]);
    await expectOutsideUnchanged();
  });
});

describe('existing generation folders planted', () => {
  it('a replaced generation swapped for a link to an outside folder: prune unlinks it, never recurses into the target', async () => {
    const clock = new FakeClock(Date.now());
    const w = new CertDirWriter(dir, clock, 0, 30_000);
    const old = (await w.publish(tagged(1))).generation;
    await clock.advance(1000);
    const cur = (await w.publish(tagged(2))).generation;
    await fs.rm(at(GEN_DIR, old), { recursive: true });
    await fs.symlink(outside, at(GEN_DIR, old));
    const removed = await w.prune();
    expect(removed).toEqual([`${GEN_DIR}/${old} (a symlink to ${outside})`]);
    await clock.advance(60_000);
    await w.prune();
    expect(await fs.readdir(at(GEN_DIR))).toEqual([cur]);
    await expectPublished(2, cur);
    await expectOutsideUnchanged();
  });

  it('a replaced generation whose key is a link to the outside key: prune removes the link, not the key', async () => {
    const clock = new FakeClock(Date.now());
    const w = new CertDirWriter(dir, clock, 0, 30_000);
    const old = (await w.publish(tagged(1))).generation;
    await clock.advance(1000);
    const cur = (await w.publish(tagged(2))).generation;
    await fs.rm(at(GEN_DIR, old, 'ca-key.pem'));
    await fs.symlink(out('key.pem'), at(GEN_DIR, old, 'ca-key.pem'));
    await clock.advance(60_000);
    expect(await w.prune()).toEqual([old]);
    expect(await fs.readdir(at(GEN_DIR))).toEqual([cur]);
    await expectOutsideUnchanged();
  });

  it('the current generation swapped for a link to an outside bundle: not read as ours, replaced by the next publish', async () => {
    const clock = new FakeClock(Date.now());
    const w = new CertDirWriter(dir, clock, 0, 30_000);
    const cur = (await w.publish(tagged(1))).generation;
    await fs.rm(at(GEN_DIR, cur), { recursive: true });
    await fs.symlink(out('bundle'), at(GEN_DIR, cur));
    const read = await readCertDir(dir);
    expect(read.state).not.toBe('present');
    expect(read).toMatchObject({ refused: [`${GEN_DIR}/${cur}`] });
    expectNothingOutsideRead(read);
    expect(await visibleBundlePresent(dir)).toBe(false);
    await clock.advance(1000);
    const next = await w.publish(tagged(2));
    expect(next.removed).toEqual([`${GEN_DIR}/${cur} (a symlink to ${out('bundle')})`]);
    await expectPublished(2, next.generation);
    await expectOutsideUnchanged();
  });

  it.each(NAMES)('%s inside the current generation swapped for a link to the outside key: refused by the reader', async (name) => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const cur = (await w.publish(tagged(1))).generation;
    await fs.rm(at(GEN_DIR, cur, name));
    await fs.symlink(out('key.pem'), at(GEN_DIR, cur, name));
    const read = await readCertDir(dir);
    expect(read.state).toBe('incomplete');
    expect(read).toMatchObject({ refused: [`${GEN_DIR}/${cur}/${name}`] });
    expectNothingOutsideRead(read);
    expect(await visibleBundlePresent(dir)).toBe(false);
    const next = await w.publish(tagged(2));
    await expectPublished(2, next.generation);
    await expectOutsideUnchanged();
  });
});

describe('..data planted', () => {
  const visibleLinks = async () => {
    for (const n of NAMES) await fs.symlink(`..data/${n}`, at(n));
  };
  it.each([
    ['an absolute path to a folder outside', () => out('bundle')],
    ['a relative path escaping CERT_DIR', () => '../outside/bundle'],
    ['a .gen path escaping with ..', () => `${GEN_DIR}/../../outside/bundle`],
    ['a generation-like name that escapes', () => `${GEN_DIR}/20260101T000000000Z-0001/../../../outside/bundle`],
  ])('as %s: not read as ours; the writer replaces it', async (_, target) => {
    await visibleLinks();
    await fs.symlink(target(), at('..data'));
    const read = await readCertDir(dir);
    expect(read.state).toBe('incomplete');
    expect(read).toMatchObject({ refused: ['..data'] });
    expectNothingOutsideRead(read);
    expect(await visibleBundlePresent(dir)).toBe(false);
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation } = await w.publish(tagged(1));
    await expectPublished(1, generation);
    await expectOutsideUnchanged();
  });

  it('as a real folder holding links to the outside bundle: not read; removed without following, then replaced', async () => {
    await visibleLinks();
    await fs.mkdir(at('..data'));
    for (const n of NAMES) await fs.symlink(out('bundle', n), at('..data', n));
    const read = await readCertDir(dir);
    expect(read).toMatchObject({ state: 'incomplete', refused: ['..data'] });
    expectNothingOutsideRead(read);
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation, removed } = await w.publish(tagged(1));
    expect(removed).toEqual(['..data (a directory)']);
    await expectPublished(1, generation);
    await expectOutsideUnchanged();
  });
});

describe('visible names planted', () => {
  it('links to /etc/passwd-like and outside key files in a plain dir: never read as the bundle, replaced by our links', async () => {
    await fs.symlink(out('sentinel'), at('ca-cert.pem'));
    await fs.symlink(out('key.pem'), at('ca-key.pem'));
    await fs.symlink(out('bundle', 'cert-chain.pem'), at('cert-chain.pem'));
    await fs.symlink(out('bundle', 'root-cert.pem'), at('root-cert.pem'));
    const read = await readCertDir(dir);
    expect(read).toMatchObject({ state: 'incomplete', refused: [...NAMES] });
    expectNothingOutsideRead(read);
    expect(await visibleBundlePresent(dir)).toBe(false);
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation } = await w.publish(tagged(1));
    await expectPublished(1, generation);
    await expectOutsideUnchanged();
  });

  it('a visible name swapped for a link to the outside key after a publish: the reader reads the generation, not the link; re-linked', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation } = await w.publish(tagged(1));
    await fs.rm(at('ca-key.pem'));
    await fs.symlink(out('key.pem'), at('ca-key.pem'));
    const read = await readCertDir(dir);
    expect(read).toMatchObject({ state: 'present', bundle: { files: tagged(1), brokenLinks: ['ca-key.pem'] } });
    expectNothingOutsideRead(read);
    // istiod would read the outside key through it: the bundle is not really there for istiod.
    expect(await visibleBundlePresent(dir)).toBe(false);
    await w.ensureVisibleLinks();
    await expectPublished(1, generation);
    await expectOutsideUnchanged();
  });

  it('a visible name that is a folder: refused with a StoreError naming it, nothing half-made, nothing followed', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation } = await w.publish(tagged(1));
    await fs.rm(at('ca-cert.pem'));
    await fs.mkdir(at('ca-cert.pem'));
    await fs.symlink(out('key.pem'), at('ca-cert.pem', 'inner'));
    const err = await w.publish(tagged(2)).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'StoreError', code: 'STORE_PLANTED', reason: 'write_failed', retryable: false });
    expect((err as Error).message).toMatch(/^while linking ca-cert\.pem .*: ca-cert\.pem is a directory, which the agent did not make \(remove it/);
    // The previous generation is still the published one, and no new folder or temporary entry is left.
    expect(await fs.readlink(at('..data'))).toBe(`${GEN_DIR}/${generation}`);
    expect(await fs.readdir(at(GEN_DIR))).toEqual([generation]);
    await expectOutsideUnchanged();
  });
});

describe('reader', () => {
  it('still reads a plain dir of regular files (a hand-made cacerts dir)', async () => {
    for (const [k, n] of [['caCert', 'ca-cert.pem'], ['caKey', 'ca-key.pem'], ['certChain', 'cert-chain.pem'], ['rootCert', 'root-cert.pem']] as const) await fs.writeFile(at(n), tagged(7)[k]);
    expect(await readCertDir(dir)).toEqual({ state: 'present', bundle: { files: tagged(7), generation: undefined, brokenLinks: [] } });
    expect(await visibleBundlePresent(dir)).toBe(true);
    await expectOutsideUnchanged();
  });

  it('sees our links dangling before the first ..data appears as no bundle yet', async () => {
    for (const n of NAMES) await fs.symlink(`..data/${n}`, at(n));
    expect(await readCertDir(dir)).toEqual({ state: 'absent' });
    await expectOutsideUnchanged();
  });
});
