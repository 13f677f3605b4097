/**
 * The atomic writer on a real filesystem. A separate reader PROCESS (true parallelism, not interleaved
 * promises) reads in a tight loop while 200 generations are published.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.js';
import { readCertDir } from '../../src/store/cert-dir-reader.js';
import { CertDirWriter } from '../../src/store/cert-dir-writer.js';
import { GEN_DIR } from '../../src/store/layout.js';
import { nodeStoreFs, type StoreFs } from '../../src/store/store-fs.js';
import { FakeClock } from '../helpers/fake-clock.js';

const NAMES = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'];
const tagged = (n: number) => ({ caKey: `key ${n}\n`, caCert: `cert ${n}\n`, certChain: `chain ${n}\n`, rootCert: `root ${n}\n` });
const genOf = (text: string) => text.split(' ')[1]?.trim();

// Reads both ways istiod-like consumers could: through ..data resolved once (the agent's own reader),
// and through the four visible names one by one (what istiod does).
const READER = `
const fs = require('fs'), path = require('path');
const dir = process.argv[1], stop = path.join(dir, '..', 'stop-' + path.basename(dir));
const names = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'];
const gen = (t) => t.split(' ')[1].trim();
const r = { reads: 0, resolvedMixed: 0, resolvedMissing: 0, visibleMixed: 0, visibleMixedUndetected: 0, visibleMissing: 0, torn: 0 };
let started = false;
for (let i = 0; ; i++) {
  if (i % 200 === 0 && fs.existsSync(stop)) break;
  let target;
  try { target = fs.readlinkSync(path.join(dir, '..data')); } catch { if (started) r.resolvedMissing++; continue; }
  started = true;
  r.reads++;
  try {
    const g = names.map((n) => gen(fs.readFileSync(path.join(dir, target, n), 'utf8')));
    if (new Set(g).size !== 1) r.resolvedMixed++;
  } catch { r.resolvedMissing++; }
  try {
    const before = fs.readlinkSync(path.join(dir, '..data'));
    const texts = names.map((n) => fs.readFileSync(path.join(dir, n), 'utf8'));
    const after = fs.readlinkSync(path.join(dir, '..data'));
    if (texts.some((t) => !/^\\w+ \\d+\\n$/.test(t))) r.torn++;
    const g = texts.map(gen);
    if (new Set(g).size !== 1) { r.visibleMixed++; if (before === after) r.visibleMixedUndetected++; }
  } catch { r.visibleMissing++; }
}
process.stdout.write(JSON.stringify(r));
`;

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-store-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('CertDirWriter', () => {
  it('publishes the kubelet layout with exact modes', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation } = await w.publish(tagged(1));
    expect(await fs.readlink(path.join(dir, '..data'))).toBe(`${GEN_DIR}/${generation}`);
    for (const n of ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']) {
      expect(await fs.readlink(path.join(dir, n))).toBe(`..data/${n}`);
    }
    const mode = async (n: string) => (await fs.stat(path.join(dir, GEN_DIR, generation, n))).mode & 0o777;
    expect(await mode('ca-key.pem')).toBe(0o600);
    expect(await mode('ca-cert.pem')).toBe(0o644);
    expect(((await fs.stat(path.join(dir, GEN_DIR, generation))).mode & 0o777)).toBe(0o755);
    const read = await readCertDir(dir);
    expect(read).toEqual({ state: 'present', bundle: { files: tagged(1), generation, brokenLinks: [] } });
  });

  it('keeps replaced generations for the grace period, then only the current and the previous', async () => {
    const clock = new FakeClock(Date.now());
    const w = new CertDirWriter(dir, clock, 0, 30_000);
    const gens: string[] = [];
    for (let i = 0; i < 4; i++) {
      gens.push((await w.publish(tagged(i))).generation);
      await clock.advance(1000);
    }
    expect((await fs.readdir(path.join(dir, GEN_DIR))).sort()).toEqual(gens);
    await clock.advance(30_000);
    gens.push((await w.publish(tagged(4))).generation);
    expect((await fs.readdir(path.join(dir, GEN_DIR))).sort()).toEqual(gens.slice(-2));
    // Once the grace period has passed, the replaced generation and its key are gone too.
    await clock.advanceTo(w.pruneDueAt()!);
    await w.prune();
    expect(await fs.readdir(path.join(dir, GEN_DIR))).toEqual(gens.slice(-1));
  });

  it('serialises concurrent publishes: each one complete, ..data never dangling', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => w.publish(tagged(n))));
    expect(new Set(results.map((r) => r.generation)).size).toBe(5);
    const read = await readCertDir(dir);
    expect(read.state === 'present' && read.bundle.files).toEqual(tagged(5));
    for (const r of results) expect(await fs.readFile(path.join(dir, GEN_DIR, r.generation, 'ca-cert.pem'), 'utf8')).toMatch(/^cert \d\n$/);
  });

  it('publishIf re-checks what to publish when its turn comes', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    let current = tagged(1);
    const first = w.publish(current);
    const stale = w.publishIf(() => (current.caCert === 'cert 1\n' ? current : undefined));
    current = tagged(2);
    await first;
    expect(await stale).toBeUndefined();
  });

  it('clears what a crash mid-publish left: a never-published folder and temporary links', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    const { generation } = await w.publish(tagged(1));
    const partial = '29990101T000000000Z-0099';
    await fs.mkdir(path.join(dir, GEN_DIR, partial));
    await fs.writeFile(path.join(dir, GEN_DIR, partial, 'ca-cert.pem'), 'half');
    await fs.symlink('x', path.join(dir, GEN_DIR, '..data_tmp'));
    expect((await w.prune([])).sort()).toEqual(['.gen/..data_tmp (a symlink to x)', partial]);
    expect(await fs.readdir(path.join(dir, GEN_DIR))).toEqual([generation]);
  });

  it('reports visible names a crash left missing, and re-links them', async () => {
    const w = new CertDirWriter(dir, systemClock, 0);
    await w.publish(tagged(1));
    await fs.rm(path.join(dir, 'root-cert.pem'));
    await fs.rm(path.join(dir, 'cert-chain.pem'));
    const read = await readCertDir(dir);
    expect(read.state === 'present' && read.bundle.brokenLinks).toEqual(['cert-chain.pem', 'root-cert.pem']);
    await w.ensureVisibleLinks();
    expect(await fs.readFile(path.join(dir, 'root-cert.pem'), 'utf8')).toBe('root 1\n');
  });

  it('replaces regular files another tool left at the visible names', async () => {
    await fs.writeFile(path.join(dir, 'ca-cert.pem'), 'old plain file');
    const w = new CertDirWriter(dir, systemClock, 0);
    await w.publish(tagged(3));
    expect(await fs.readFile(path.join(dir, 'ca-cert.pem'), 'utf8')).toBe('cert 3\n');
  });

  it('spaces publishes by the minimum interval, on the injected clock', async () => {
    const clock = new FakeClock(Date.now());
    const w = new CertDirWriter(dir, clock, 2000);
    await w.publish(tagged(1));
    const second = w.publish(tagged(2));
    await clock.waitForSleepers(1);
    expect(clock.requested.at(-1)).toBe(2000);
    expect(genOf((await fs.readFile(path.join(dir, 'ca-cert.pem'), 'utf8')))).toBe('1');
    await clock.advance(2000);
    await second;
    expect(genOf((await fs.readFile(path.join(dir, 'ca-cert.pem'), 'utf8')))).toBe('2');
  });

  // A failed write leaving the published generation untouched, and the retry with the same files:
  // cert-dir-preflight.test.ts ("a failed publish can be retried with the same bundle").

  it('first publish: the four visible links are there before ..data appears, so one rename shows all four', async () => {
    const seen: string[][] = [];
    const watching: StoreFs = {
      ...nodeStoreFs,
      rename: async (from, to) => {
        if (path.basename(to) === '..data') {
          const links = await Promise.all(NAMES.map((n) => fs.readlink(path.join(dir, n)).catch(() => 'missing')));
          seen.push([await fs.readlink(path.join(dir, '..data')).catch(() => 'no ..data'), ...links]);
        }
        return nodeStoreFs.rename(from, to);
      },
    };
    const w = new CertDirWriter(dir, systemClock, 0, undefined, watching);
    await w.publish(tagged(1));
    await w.publish(tagged(2));
    const links = NAMES.map((n) => `..data/${n}`);
    expect(seen).toEqual([['no ..data', ...links], [expect.stringMatching(/^\.gen\//), ...links]]);
  });

  it('never shows a reader a missing file or a mixed generation through ..data, across 200 publishes', async () => {
    const reader = spawn(process.execPath, ['-e', READER, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    reader.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // 10 ms apart (production: 2 s); replaced generations stay for the 30 s grace period.
    const w = new CertDirWriter(dir, systemClock, 10);
    for (let i = 0; i < 200; i++) await w.publish(tagged(i));
    await fs.writeFile(path.join(dir, '..', `stop-${path.basename(dir)}`), '');
    await new Promise((r) => reader.once('exit', r));
    await fs.rm(path.join(dir, '..', `stop-${path.basename(dir)}`));
    const r = JSON.parse(out) as Record<string, number>;
    expect(r.reads).toBeGreaterThan(1000);
    // Through ..data resolved once (the agent's reader, and `check`): always one complete generation.
    expect(r.resolvedMixed).toBe(0);
    expect(r.resolvedMissing).toBe(0);
    // Through the visible names: never a missing or partial file...
    expect(r.visibleMissing).toBe(0);
    expect(r.torn).toBe(0);
    // ...and a mix of generations only when a publish landed between the first and the last open,
    // which a reader sees as a ..data change. istiod reads 100 ms after the event; publishes are >= 2 s
    // apart in production (MIN_PUBLISH_INTERVAL_MS), so its reads never straddle one.
    expect(r.visibleMixedUndetected).toBe(0);
    console.log(`reader: ${JSON.stringify(r)}`);
  });
});
