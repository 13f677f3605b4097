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

export const REPORT_DOC = path.resolve('docs/reliability.md');
export const WRITE_REPORT = process.env.EVIDENCE_REPORT === '1';

export function table(header: string[], rows: (string | number)[][]): string {
  const esc = (v: string | number) => String(v).replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  const lock = `${REPORT_DOC}.lock`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await fs.mkdir(lock);
      break;
    } catch {
      if (Date.now() > deadline) await fs.rm(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
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

/** Secret material to search agent output for. */
export interface Secrets {
  tokens: Iterable<string>;
  jwts: Iterable<string>;
  privateKeys: Iterable<string>;
}

/** Distinctive pieces of a PEM key: each full base64 line of its body. */
function keyFragments(pem: string): string[] {
  return pem.split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'));
}

/** Names the kinds of secret found in `text` (never the secret itself); [] when clean. */
export function findSecrets(text: string, s: Secrets): string[] {
  const found: string[] = [];
  if (text.includes('PRIVATE KEY')) found.push('a PEM "PRIVATE KEY" label');
  for (const t of s.tokens) if (t.length >= 8 && text.includes(t)) found.push('a Vault token');
  for (const j of s.jwts) {
    if (text.includes(j)) found.push('the service-account JWT');
    else if (text.includes(j.split('.')[1] ?? '\u0000')) found.push('the JWT claims segment');
  }
  for (const k of s.privateKeys) if (keyFragments(k).some((f) => text.includes(f))) found.push('a fragment of a published private key');
  return [...new Set(found)];
}
