/** Command-line flags and scratch locations shared by the bench scripts. */
import fs from 'node:fs';
import os from 'node:os';

/** Tiny flag parser: `--name`, `--name value`, `--name=value`. Throws on anything unknown. */
export function parseArgs(argv: readonly string[], known: Record<string, 'flag' | 'number' | 'string'>): Record<string, number | boolean | string | undefined> {
  const out: Record<string, number | boolean | string | undefined> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') continue;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    const kind = m ? known[m[1]!] : undefined;
    if (!m || !kind) throw new Error(`unknown argument ${arg}; known: ${Object.keys(known).map((k) => `--${k}`).join(', ')}`);
    if (kind === 'flag') {
      out[m[1]!] = true;
      continue;
    }
    const raw = m[2] ?? argv[++i];
    if (kind === 'string') {
      if (raw === undefined) throw new Error(`--${m[1]} needs a value`);
      out[m[1]!] = raw;
      continue;
    }
    const n = Number(raw);
    if (raw === undefined || !Number.isFinite(n) || n < 0) throw new Error(`--${m[1]} needs a number`);
    out[m[1]!] = n;
  }
  return out;
}

/** Folder for cert dirs: /dev/shm (tmpfs, like the memory emptyDir istiod reads) when writable. */
export function certBase(): string {
  try {
    fs.accessSync('/dev/shm', fs.constants.W_OK);
    return '/dev/shm';
  } catch {
    return os.tmpdir();
  }
}
