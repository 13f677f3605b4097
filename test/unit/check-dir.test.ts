/**
 * `check` shows a cert dir's root rotation state: the roots of root-cert.pem in file order, the one the
 * intermediate chains to, the phase that implies, and the running agent's own view from its metrics.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checkCertDir, describeRotation } from '../../src/agent/check-dir.js';
import { rotationFromMetrics } from '../../src/cli/check-command.js';
import { certsFromPem } from '../../src/pki/cert-info.js';
import { AgentMetrics } from '../../src/telemetry/metrics.js';
import { bundleOf, makeIntermediate, makeRoot, type TestCa } from '../helpers/test-pki.js';

const DAY = 86_400_000;
let oldRoot: TestCa;
let newRoot: TestCa;
let dir: string;

beforeAll(async () => {
  oldRoot = await makeRoot('CN=Mesh Root 2025', { notBefore: new Date(Date.now() - 300 * DAY) });
  newRoot = await makeRoot('CN=Mesh Root 2026', { notBefore: new Date(Date.now() - 2 * DAY) });
});
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-check-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const info = (ca: TestCa) => certsFromPem(ca.pem, 'x')[0]!;
const rotationLine = (lines: string[]) => lines.find((l) => l.startsWith('  rotation:'))!;
const marked = (lines: string[]) => lines.filter((l) => l.includes('<- the intermediate chains to this one')).map((l) => /\d\. (CN=[^ ]+ [^ ]+ [^ ]+)/.exec(l)?.[1]);

describe('describeRotation', () => {
  it.each([
    { name: 'one root', roots: () => [oldRoot], anchor: () => oldRoot, phase: /^ {2}rotation: {3}steady: one root/ },
    { name: 'a newer root added next to the one in use', roots: () => [oldRoot, newRoot], anchor: () => oldRoot, phase: /^ {2}rotation: {3}added: "CN=Mesh Root 2026" is trusted next to "CN=Mesh Root 2025"/ },
    { name: 'switched to the newer root, the old one still trusted', roots: () => [newRoot, oldRoot], anchor: () => newRoot, phase: /^ {2}rotation: {3}switched: .*"CN=Mesh Root 2025" stays trusted/ },
    // Without a reorder (istiod < 1.30) the file order says nothing: the dates do.
    { name: 'switched, same order as at add', roots: () => [oldRoot, newRoot], anchor: () => newRoot, phase: /^ {2}rotation: {3}switched:/ },
  ])('$name', ({ roots, anchor, phase }) => {
    const lines = describeRotation({ roots: roots().map(info), anchor: info(anchor()) }, Date.now());
    expect(rotationLine(lines)).toMatch(phase);
    expect(lines.filter((l) => /^ {4}\d\. /.test(l))).toHaveLength(roots().length);
    expect(marked(lines)).toHaveLength(1);
    expect(lines.find((l) => l.includes('<- the intermediate'))).toContain(anchor().cert.subject);
  });

  it("adds the running agent's view: phase, next step, a restart that is due", () => {
    const now = Date.now();
    const lines = describeRotation({ roots: [info(oldRoot), info(newRoot)], anchor: info(oldRoot) }, now, {
      renewAt: now + DAY,
      from: 'http://127.0.0.1:15099/metrics',
      rotation: { phase: 'added', nextAt: now + 3_600_000, restartRequired: true },
    });
    expect(lines.at(-1)).toMatch(/the running agent at http:\/\/127\.0\.0\.1:15099\/metrics: added, next step .* \(in 1h\); a root change waits for a rolling restart of istiod/);
  });
});

describe('check on a cert dir in the middle of a rotation', () => {
  it('lists both roots, marks the one the intermediate chains to, and says "added"', async () => {
    const b = bundleOf(await makeIntermediate(oldRoot), oldRoot);
    await fs.writeFile(path.join(dir, 'ca-key.pem'), b.caKey);
    await fs.writeFile(path.join(dir, 'ca-cert.pem'), b.caCert);
    await fs.writeFile(path.join(dir, 'cert-chain.pem'), b.certChain);
    await fs.writeFile(path.join(dir, 'root-cert.pem'), oldRoot.pem + newRoot.pem);
    const report = await checkCertDir(dir, Date.now(), undefined);
    expect(report.ok, report.lines.join('\n')).toBe(true);
    expect(report.lines).toContain('  roots:      2 in root-cert.pem, in file order (istiod\'s citadel_server_root_cert_expiry_timestamp reports the first)');
    const rootLines = report.lines.slice(report.lines.findIndex((l) => l.startsWith('  roots:')) + 1, report.lines.findIndex((l) => l.startsWith('  rotation:')));
    expect(rootLines.map((l) => l.slice(0, 25))).toEqual(['    1. CN=Mesh Root 2025 ', '    2. CN=Mesh Root 2026 ']);
    expect(report.lines.find((l) => l.includes('<- the intermediate'))).toMatch(/^ {4}1\. CN=Mesh Root 2025/);
    expect(rotationLine(report.lines)).toMatch(/added/);
  });
});

describe('rotationFromMetrics', () => {
  it("reads what the agent's metrics say (the same names the agent exports)", async () => {
    const m = new AgentMetrics('test', { defaultMetrics: false });
    expect(rotationFromMetrics(await m.registry.metrics())).toBeUndefined();
    const nextAt = 1_800_000_000_000;
    m.recordRootRotation({ phase: 'switched', nextAt, restartRequired: false });
    expect(rotationFromMetrics(await m.registry.metrics())).toEqual({ phase: 'switched', nextAt, restartRequired: false });
    m.recordRootRotation({ phase: 'added', nextAt: undefined, restartRequired: true });
    expect(rotationFromMetrics(await m.registry.metrics())).toEqual({ phase: 'added', nextAt: undefined, restartRequired: true });
  });
});
