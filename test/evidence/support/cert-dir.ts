/**
 * Looking at a cert dir the way the evidence suites need: an exact snapshot (the `..data` target and
 * the bytes of the four visible files, read through the visible names as istiod reads them), and a
 * full consistency check (everything `check` does, plus: each visible name is the fixed symlink into
 * `..data`, and what the visible names show is byte-identical to the generation `..data` points at).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { certsFromPem } from '../../../src/pki/cert-info.js';
import { verifyBundle } from '../../../src/pki/verify.js';
import { readCertDir } from '../../../src/store/cert-dir-reader.js';
import { GENERATION_PATTERN } from '../../../src/store/layout.js';

export const VISIBLE = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'] as const;

export interface Snapshot {
  target: string | undefined;
  files: Record<string, string | undefined>;
}

export async function snapshot(dir: string): Promise<Snapshot> {
  const target = await fs.readlink(path.join(dir, '..data')).catch(() => undefined);
  const files: Record<string, string | undefined> = {};
  for (const n of VISIBLE) files[n] = await fs.readFile(path.join(dir, n), 'utf8').catch(() => undefined);
  return { target, files };
}

export function sameSnapshot(a: Snapshot, b: Snapshot): boolean {
  return a.target === b.target && VISIBLE.every((n) => a.files[n] === b.files[n]);
}

export type DirVerdict =
  | { ok: true; state: 'empty' }
  | { ok: true; state: 'valid'; generation: string; serial: string; notAfter: number }
  | { ok: false; problem: string };

/**
 * Judges the dir: empty (nothing published yet) or one complete, valid generation that the visible
 * names show exactly. Anything else (incomplete, invalid, visible names missing or out of step with
 * `..data`) is a problem.
 */
export async function judgeDir(dir: string, at: number | 'within-validity' = Date.now()): Promise<DirVerdict> {
  const outcome = await readCertDir(dir);
  const visible = await Promise.all(
    VISIBLE.map(async (n) => ({
      n,
      link: await fs.readlink(path.join(dir, n)).catch(() => undefined),
      content: await fs.readFile(path.join(dir, n), 'utf8').catch(() => undefined),
    })),
  );
  if (outcome.state === 'absent') {
    // Our links dangling before the first ..data exists are "no bundle yet": the first publish makes
    // them before its swap, so one rename makes all four appear at once.
    const stray = visible.filter((v) => v.content !== undefined || (v.link !== undefined && v.link !== `..data/${v.n}`)).map((v) => v.n);
    const data = await fs.readlink(path.join(dir, '..data')).catch(() => undefined);
    if (stray.length || data !== undefined) return { ok: false, problem: `no bundle via ..data but ${[...stray, data && `..data -> ${data}`].filter(Boolean).join(', ')} exist` };
    return { ok: true, state: 'empty' };
  }
  if (outcome.state === 'incomplete') return { ok: false, problem: `incomplete generation: missing ${outcome.missing.join(', ')}` };
  try {
    // 'within-validity': judge structure and pairing at an instant the intermediate is valid, for
    // short-lived test certificates that may have expired since they were published.
    const now = at === 'within-validity' ? Math.min(Date.now(), certsFromPem(outcome.bundle.files.caCert, 'ca-cert.pem')[0]!.notAfter - 1000) : at;
    const b = verifyBundle(outcome.bundle.files, { now });
    const keyOf: Record<string, keyof typeof outcome.bundle.files> = { 'ca-cert.pem': 'caCert', 'ca-key.pem': 'caKey', 'cert-chain.pem': 'certChain', 'root-cert.pem': 'rootCert' };
    for (const v of visible) {
      if (v.link !== `..data/${v.n}`) return { ok: false, problem: `${v.n} is ${v.link === undefined ? 'missing or not a symlink' : `a symlink to ${v.link}`}, not ..data/${v.n} (istiod reads the visible names)` };
      if (v.content !== outcome.bundle.files[keyOf[v.n]!]) return { ok: false, problem: `${v.n} differs from the generation ..data points at` };
    }
    return { ok: true, state: 'valid', generation: outcome.bundle.generation ?? '', serial: b.intermediate.serial, notAfter: b.intermediate.notAfter };
  } catch (err) {
    return { ok: false, problem: `verification failed: ${(err as Error).message}` };
  }
}

/** Generation folders and other entries under `.gen/`. */
export async function genEntries(dir: string): Promise<{ generations: string[]; other: string[] }> {
  const entries = await fs.readdir(path.join(dir, '.gen')).catch(() => [] as string[]);
  return { generations: entries.filter((e) => GENERATION_PATTERN.test(e)).sort(), other: entries.filter((e) => !GENERATION_PATTERN.test(e)) };
}

/** Every private key currently on disk in any generation folder. */
export async function keysOnDisk(dir: string): Promise<string[]> {
  const { generations } = await genEntries(dir);
  const out: string[] = [];
  for (const g of generations) {
    const k = await fs.readFile(path.join(dir, '.gen', g, 'ca-key.pem'), 'utf8').catch(() => undefined);
    if (k) out.push(k);
  }
  return out;
}
