/**
 * The README is the user's manual: it must not drift from the code. Every setting the parser knows is in
 * its settings table with the right flag, every metric the agent exports is in its metrics table, and the
 * quick start is the two commands that work on a fresh clone.
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SETTINGS, flagName } from '../../src/config.js';
import { AgentMetrics } from '../../src/telemetry/metrics.js';

const readme = fs.readFileSync('README.md', 'utf8');

describe('README', () => {
  it('documents every setting, with its flag and default', () => {
    for (const s of SETTINGS) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${s.env}\` |`));
      expect(row, `README settings table lacks ${s.env}`).toBeDefined();
      expect(row).toContain(`\`${flagName(s.env)}\``);
      if (s.default !== undefined) expect(row).toContain(s.default);
    }
  });

  it('documents every metric the agent exports', async () => {
    const names = (await new AgentMetrics('x', { defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names.length).toBeGreaterThan(8);
    for (const n of names) expect(readme, `README metrics table lacks ${n}`).toContain(`| \`${n}\` |`);
  });

  it('starts with the two quick-start commands', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
  });

  it('has every internal link pointing at a heading that exists', () => {
    const anchors = new Set(
      [...readme.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
        m[1]!.toLowerCase().replace(/[`*]/g, '').replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-'),
      ),
    );
    for (const m of readme.matchAll(/\]\(#([^)]+)\)/g)) expect(anchors, `broken link #${m[1]}`).toContain(m[1]);
  });
});
