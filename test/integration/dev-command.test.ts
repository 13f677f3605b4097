/**
 * `istiod-vault-agent dev` (what `npm start` runs): with no VAULT_ADDR it starts a local OpenBao,
 * configures it, writes a valid ./cacerts, rotates on request, and cleans everything up on SIGTERM.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { checkCertDir } from '../../src/agent/check-dir.js';
import { freePort } from '../../src/dev/dev-server.js';
import { BUNDLE, type LogLine } from '../helpers/agent-process.js';
import { httpGet } from '../helpers/metrics-text.js';
import { waitFor } from '../helpers/wait.js';
import { vaultBin } from '../helpers/tools.js';

const bin = vaultBin();

describe.skipIf(!bin)('dev command', () => {
  it('brings up OpenBao, writes a valid ./cacerts, rotates, and stops cleanly', async () => {
    const cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-devcmd-'));
    const port = await freePort();
    const child = spawn(process.execPath, [BUNDLE, 'dev'], {
      cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', VAULT_BIN: bin, METRICS_ADDR: `127.0.0.1:${port}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines = () => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitFor(() => lines().some((l) => l.msg === 'published a new intermediate'), { what: 'a first publish', timeoutMs: 30_000 });
      const report = await checkCertDir(path.join(cwd, 'cacerts'), Date.now(), undefined);
      expect(report.ok, report.lines.join('\n')).toBe(true);
      expect(report.bundle!.intermediate.notAfter - report.bundle!.intermediate.notBefore).toBeLessThanOrEqual(4 * 60_000);
      expect((await httpGet(`http://127.0.0.1:${port}/rotate`, { method: 'POST' })).status).toBe(202);
      await waitFor(() => lines().filter((l) => l.msg === 'published a new intermediate').length === 2, { what: 'a second publish', timeoutMs: 30_000 });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    const addr = /OpenBao at (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1];
    const tokenFile = /root token is in (\S+),/.exec(stderr)?.[1];
    expect(addr).toBeDefined();
    expect(tokenFile).toMatch(/^\/.*root-token$/);
    await expect(fetch(`${addr}/v1/sys/health`)).rejects.toThrow();
    await expect(fs.access(tokenFile!)).rejects.toThrow();
    expect(stdout + stderr).not.toMatch(/root-[0-9a-f]{24}/);
    await fs.rm(cwd, { recursive: true, force: true });
  });
});
