/**
 * Reader processes for the concurrent-readers evidence: plain `node -e` scripts (real parallelism,
 * nothing shared with the test process) that read the four visible files of a cert dir the way
 * istiod does (one after another, by name, in istiod's order: ca-cert.pem, ca-key.pem,
 * cert-chain.pem, root-cert.pem) and classify every read:
 *
 * - missing: a name did not resolve (ENOENT);
 * - torn: a file was empty, not one complete PEM, or did not parse;
 * - mixed: the four files are not one generation: the key does not match ca-cert.pem, cert-chain.pem
 *   does not start with ca-cert.pem, or root-cert.pem is not the bytes every generation carries;
 * - straddled: a mixed read during which `..data` changed (readlink before the first open and after
 *   the last one differ), i.e. a publish happened between two of the four opens: expected physics for
 *   a reader that opens four paths without re-checking; `unexplained` is a mixed read WITHOUT such a
 *   change, which the layout must make impossible.
 *
 * `tight` reads in a loop until stopped. `istiod` does what istiod does: watch the directory
 * (inotify, not subfolders), and 100 ms after the first event read the four files once; it reports
 * each reload as it happens, so a test can wait for the reader to have seen a publish (an event)
 * instead of giving it time. A reader stops when the test closes its stdin (or at `maxMs`, a safety
 * net only) and then reports its stats.
 */
import { spawn } from 'node:child_process';

export interface ReaderStats {
  mode: 'tight' | 'istiod';
  reads: number;
  missing: number;
  torn: number;
  mixed: number;
  straddled: number;
  unexplained: number;
  /** Reads during which ..data changed (mixed or not). */
  swapsDuringRead: number;
  events: number;
  /** ca-cert.pem serials seen, in order of first sight (istiod mode: one per reload). */
  serials: string[];
  examples: string[];
}

const SCRIPT = String.raw`
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const [dir, maxMs, mode] = [process.argv[1], Number(process.argv[2]), process.argv[3]];
const names = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'];
const s = { mode, reads: 0, missing: 0, torn: 0, mixed: 0, straddled: 0, unexplained: 0, swapsDuringRead: 0, events: 0, serials: [], examples: [] };
const certPub = new Map();
const keyPub = new Map();
const seen = new Set();
let root;
const PEM = /^-----BEGIN ([A-Z ]+)-----\n[A-Za-z0-9+/=\n]+-----END \1-----\n$/;
function spkiOfCert(pem) {
  let v = certPub.get(pem);
  if (v === undefined) {
    const c = new crypto.X509Certificate(pem);
    v = { spki: c.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'), serial: c.serialNumber };
    certPub.set(pem, v);
  }
  return v;
}
function spkiOfKey(pem) {
  let v = keyPub.get(pem);
  if (v === undefined) {
    v = crypto.createPublicKey(crypto.createPrivateKey(pem)).export({ type: 'spki', format: 'der' }).toString('base64');
    keyPub.set(pem, v);
  }
  return v;
}
function note(kind, detail) {
  if (s.examples.length < 5) s.examples.push(kind + ': ' + detail);
}
function readOnce() {
  const before = fs.readlinkSync(path.join(dir, '..data'));
  const got = [];
  try {
    for (const n of names) got.push(fs.readFileSync(path.join(dir, n), 'utf8'));
  } catch (e) {
    s.reads++;
    s.missing++;
    note('missing', e.code + ' ' + (e.path || ''));
    return;
  }
  const after = fs.readlinkSync(path.join(dir, '..data'));
  s.reads++;
  const swapped = before !== after;
  if (swapped) s.swapsDuringRead++;
  const [cert, key, chain, rootPem] = got;
  let cinfo, kspki;
  try {
    if (!PEM.test(cert) || !PEM.test(key) || !PEM.test(rootPem) || !chain.endsWith('-----END CERTIFICATE-----\n')) throw new Error('not complete PEM');
    cinfo = spkiOfCert(cert);
    kspki = spkiOfKey(key);
  } catch (e) {
    s.torn++;
    note('torn', e.message);
    return;
  }
  if (root === undefined) root = rootPem;
  if (!seen.has(cinfo.serial)) {
    seen.add(cinfo.serial);
    if (mode === 'tight') s.serials.push(cinfo.serial);
  }
  if (mode === 'istiod') {
    s.serials.push(cinfo.serial);
    process.stdout.write('reload ' + cinfo.serial + '\n');
  }
  const mixed = cinfo.spki !== kspki || !chain.startsWith(cert) || rootPem !== root;
  if (!mixed) return;
  s.mixed++;
  if (swapped) s.straddled++;
  else {
    s.unexplained++;
    note('unexplained mix', before + ' -> ' + after);
  }
}
let stopped = false;
function finish() {
  stopped = true;
  process.stdout.write('stats ' + JSON.stringify(s) + '\n', () => process.exit(0));
}
process.stdin.on('end', finish);
process.stdin.resume();
setTimeout(finish, maxMs);
if (mode === 'tight') {
  process.stdout.write('ready\n');
  // Yield to the event loop now and then, so the stop request is seen.
  (function loop() {
    const until = Date.now() + 50;
    while (Date.now() < until) readOnce();
    if (!stopped) setImmediate(loop);
  })();
} else {
  let pending = false;
  fs.watch(dir, () => {
    s.events++;
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      readOnce();
    }, 100);
  });
  process.stdout.write('ready\n');
}
`;

export interface Reader {
  /** Resolves once the reader reads (tight) or watches (istiod). */
  ready: Promise<void>;
  /** Serials of the reloads so far, as they happen (istiod mode). */
  reloads: string[];
  /** Asks the reader to stop; resolves with its stats. */
  stop(): Promise<ReaderStats>;
}

/** Starts one reader; it runs until stop() (or `maxMs`, a safety net). */
export function startReader(dir: string, maxMs: number, mode: 'tight' | 'istiod'): Reader {
  const child = spawn(process.execPath, ['-e', SCRIPT, dir, String(maxMs), mode], { stdio: ['pipe', 'pipe', 'pipe'] });
  const reloads: string[] = [];
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (onReady = r));
  let out = '';
  let partial = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      if (l === 'ready') onReady();
      else if (l.startsWith('reload ')) reloads.push(l.slice('reload '.length));
      else out += l;
    }
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const stats = new Promise<ReaderStats>((resolve, reject) => {
    const t = setTimeout(() => child.kill('SIGKILL'), maxMs + 15_000);
    child.on('exit', (code) => {
      clearTimeout(t);
      try {
        resolve(JSON.parse(out.replace(/^stats /, '')) as ReaderStats);
      } catch {
        reject(new Error(`reader (${mode}) exited ${code}: ${err.slice(-2000)}`));
      }
    });
  });
  return {
    ready,
    reloads,
    stop: () => {
      child.stdin.end();
      return stats;
    },
  };
}
