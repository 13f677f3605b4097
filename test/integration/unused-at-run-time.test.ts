/**
 * scripts/unused-at-run-time.mjs: the packages it names (axios, which node-vault loads but our transport
 * never lets it call) are left out of the bundle, and their stub fails loudly if anything calls it. That
 * nothing does is shown by every suite that runs the bundle against a real OpenBao.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { UNUSED_AT_RUN_TIME, unusedAtRunTime } from '../../scripts/unused-at-run-time.mjs';

const NAMES = Object.keys(UNUSED_AT_RUN_TIME);

describe('packages loaded but never called', () => {
  it('are stubs in the bundle, not the packages', () => {
    const meta = JSON.parse(readFileSync(path.resolve('dist/meta.json'), 'utf8')) as { inputs: Record<string, unknown> };
    const inputs = Object.keys(meta.inputs);
    expect(NAMES).toContain('axios');
    for (const name of NAMES) {
      expect(inputs.filter((f) => f.includes(`node_modules/${name}/`)), `${name} in the bundle`).toEqual([]);
      expect(inputs).toContain(`unused-at-run-time:${name}`);
    }
    // What axios alone brought along.
    for (const dep of ['follow-redirects', 'form-data', 'mime-db']) expect(inputs.filter((f) => f.includes(`node_modules/${dep}/`)), dep).toEqual([]);
    // node-vault itself stays: it builds the requests and maps Vault's answers.
    expect(inputs.some((f) => f.includes('node_modules/node-vault/'))).toBe(true);
  });

  it.each(NAMES)('%s: loading the stub works, calling it throws and says why', async (name) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-stub-'));
    try {
      await fs.writeFile(path.join(dir, 'entry.cjs'), `const pkg = require(${JSON.stringify(name)});\nconsole.log('loaded');\npkg.create({});\nconsole.log('called');\n`);
      await build({ entryPoints: [path.join(dir, 'entry.cjs')], outfile: path.join(dir, 'out.cjs'), bundle: true, platform: 'node', format: 'cjs', logLevel: 'silent', plugins: [unusedAtRunTime] });
      const res = spawnSync(process.execPath, [path.join(dir, 'out.cjs')], { encoding: 'utf8' });
      expect(res.stdout.trim()).toBe('loaded');
      expect(res.status).not.toBe(0);
      expect(res.stderr).toContain(`${name} is not in this bundle`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
