/**
 * bench/RESULTS.md holds one section per script and runtime (`npm run bench` once per Node.js major,
 * `npm run bench:candidates`, `npm run soak`, `npm run bench:storm`), each between HTML comment markers so
 * a script replaces its own section and leaves the others alone. The soak and storm sections keep a
 * history: new runs are added on top.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'RESULTS.md');

const HEADER = [
  '# Benchmark and soak results',
  '',
  'Written by `npm run bench` (bench/run.ts), `npm run bench:candidates` (bench/candidates.ts), `npm run soak`',
  '(bench/soak.ts) and `npm run bench:storm` (bench/storm.ts); see docs/performance.md and docs/sizing.md for',
  'what is measured and how to reproduce it. Each script rewrites its own section (the bench one per Node.js major).',
  '',
];

export type Section = `bench-node${number}` | `candidates-node${number}` | 'soak' | 'storm';

function markers(name: Section): [string, string] {
  return [`<!-- ${name}:start -->`, `<!-- ${name}:end -->`];
}

function read(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return `${HEADER.join('\n')}\n${(['soak', 'storm'] as const).map((s) => markers(s).join('\n')).join('\n\n')}\n`;
  }
}

/** Current body of a section ('' when empty or absent). */
export function readSection(name: Section, file = RESULTS_FILE): string {
  const text = read(file);
  const [start, end] = markers(name);
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) return '';
  return text.slice(a + start.length, b).trim();
}

/** Replaces the body of a section (creating the file or the section when needed). */
export function writeSection(name: Section, body: string, file = RESULTS_FILE): void {
  let text = read(file);
  const [start, end] = markers(name);
  const block = `${start}\n${body.trim()}\n${end}`;
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a >= 0 && b > a) text = text.slice(0, a) + block + text.slice(b + end.length);
  else if (name !== 'soak' && text.includes(markers('soak')[0])) {
    // New bench sections go before the soak history, which grows at the end of the file.
    const at = text.indexOf(markers('soak')[0]);
    text = `${text.slice(0, at)}${block}\n\n${text.slice(at)}`;
  } else text = `${text.trimEnd()}\n\n${block}\n`;
  fs.writeFileSync(file, text);
}
