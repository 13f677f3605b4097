/**
 * Evidence output. Every suite prints its table (console.log, so it shows in the test output), and
 * with EVIDENCE_REPORT=1 also rewrites its own marked block in docs/reliability.md:
 *
 *   <!-- evidence:<name>:start --> ... <!-- evidence:<name>:end -->
 *
 * Suites run in parallel workers, so the read-modify-write of the document is serialised by a lock
 * directory and the new text is renamed into place. Without EVIDENCE_REPORT=1 a test run leaves the
 * tracked document alone.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { waitFor } from '../../helpers/wait.js';

export const REPORT_DOC = path.resolve('docs/reliability.md');
export const WRITE_REPORT = process.env.EVIDENCE_REPORT === '1';

export function table(header: string[], rows: (string | number)[][]): string {
  const esc = (v: string | number) => String(v).replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  const lock = `${REPORT_DOC}.lock`;
  // A lock older than 10 s was left by a worker that died holding it: broken, then taken.
  const staleAfter = Date.now() + 10_000;
  await waitFor(async () => {
    try {
      await fs.mkdir(lock);
      return true;
    } catch {
      if (Date.now() > staleAfter) await fs.rm(lock, { recursive: true, force: true });
      return false;
    }
  }, { what: `the lock ${lock}`, timeoutMs: 30_000, intervalMs: 50 });
  try {
    return await fn();
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
  }
}

/** Prints `markdown`, and with EVIDENCE_REPORT=1 replaces block `name` of docs/reliability.md with it. */
export async function publishEvidence(name: string, markdown: string): Promise<void> {
  console.log(`\n=== evidence: ${name} ===\n${markdown}\n`);
  if (!WRITE_REPORT) return;
  const start = `<!-- evidence:${name}:start -->`;
  const end = `<!-- evidence:${name}:end -->`;
  await withLock(async () => {
    const doc = await fs.readFile(REPORT_DOC, 'utf8').catch(() => '# Reliability\n');
    const block = `${start}\n${markdown.trim()}\n\n_Measured ${new Date().toISOString().slice(0, 16)}Z by \`EVIDENCE_REPORT=1 npx vitest run test/evidence\`._\n${end}`;
    const i = doc.indexOf(start);
    const j = doc.indexOf(end);
    const next = i !== -1 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`;
    const tmp = `${REPORT_DOC}.${process.pid}.tmp`;
    await fs.writeFile(tmp, next);
    await fs.rename(tmp, REPORT_DOC);
  });
}
