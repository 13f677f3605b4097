/**
 * The documentation is the user's manual: it must not drift from the code. The settings table in
 * docs/configuration.md is exactly what the settings rows generate, every metric the agent exports is
 * documented, the README keeps the two quick-start commands, and links between documents resolve.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_DOC, withTable } from '../../scripts/settings-table.js';
import { AgentMetrics } from '../../src/telemetry/metrics.js';

const readme = fs.readFileSync('README.md', 'utf8');
const docs = fs.readdirSync('docs', { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f));
const allDocs = ['README.md', ...docs];

function anchorsOf(text: string): Set<string> {
  return new Set(
    [...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      m[1]!.toLowerCase().replace(/[`*]/g, '').replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-'),
    ),
  );
}

describe('documentation', () => {
  it('docs/configuration.md holds the settings table the code generates (npm run docs rewrites it)', () => {
    const doc = fs.readFileSync(CONFIG_DOC, 'utf8');
    expect(doc).toBe(withTable(doc));
  });

  it('documents every metric the agent exports', async () => {
    const names = (await new AgentMetrics('x', { defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names.length).toBeGreaterThan(8);
    const text = allDocs.map((f) => fs.readFileSync(f, 'utf8')).join('\n');
    for (const n of names) expect(text, `no metrics table documents ${n}`).toContain(`| \`${n}\` |`);
  });

  it('the README starts with the two quick-start commands and stays short', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
    // What a newcomer reads in ten minutes: the rest lives in docs/.
    expect(readme.split('\n').length).toBeLessThanOrEqual(300);
  });

  it.each(allDocs)('%s: every relative link and anchor resolves', (file) => {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target)) continue;
      const [p, anchor] = target.split('#') as [string, string | undefined];
      const dest = p === '' ? file : path.normalize(path.join(path.dirname(file), p));
      expect(fs.existsSync(dest), `${file}: broken link ${target}`).toBe(true);
      if (anchor && dest.endsWith('.md')) expect(anchorsOf(fs.readFileSync(dest, 'utf8')), `${file}: broken anchor ${target}`).toContain(anchor);
    }
  });
});
