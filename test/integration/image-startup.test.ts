/**
 * The image's start-up, run the way image/Dockerfile builds and starts it, on the Node.js version it pins
 * (scripts/image-node.sh; under CI=true it must be installed, elsewhere these tests skip and say how):
 * its `snapshot` stage turns the bundle into a V8 startup snapshot with that binary, the runtime keeps
 * only the snapshot in /app, and the ENTRYPOINT starts node on it. Here /app is a folder with nothing
 * else in it and no node_modules above it, and the agent issues, checks and serves metrics from there.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import pkg from '../../package.json' with { type: 'json' };
import { cleanEnv, type LogLine } from '../helpers/agent-process.js';
import { buildLocalImage, imageNode, readImageStartup, type LocalImage } from '../helpers/image-launch.js';
import { httpGet, sample } from '../helpers/metrics-text.js';
import { useOpenBao } from '../helpers/openbao.js';
import { IN_CI } from '../helpers/tools.js';
import { passTime, waitFor } from '../helpers/wait.js';

const spec = readImageStartup();
const node = imageNode();
if (!node) {
  const why = `Node.js ${spec.nodeVersion} (the image's) is not installed: scripts/image-node.sh install`;
  if (IN_CI) throw new Error(why);
  console.warn(`skipping the image start-up tests: ${why}`);
}

describe('image/Dockerfile start-up', () => {
  it('builds the snapshot and runs it with one pinned Node.js binary', () => {
    // The snapshot stage is the node image of NODE_VERSION, its RUN builds the snapshot with that image's
    // node, and the runtime copies that very binary: a snapshot only starts on the version that built it.
    const text = readFileSync(path.resolve('image/Dockerfile'), 'utf8');
    expect(text).toMatch(/^FROM \$\{NODE_BUILD_IMAGE\} AS snapshot$/m);
    const image = /^ARG NODE_BUILD_IMAGE=(.*)$/m.exec(text)?.[1];
    expect(image, 'NODE_BUILD_IMAGE names NODE_VERSION').toMatch(new RegExp(`^node:${spec.nodeVersion.replace(/\./g, '\\.')}-[a-z]+-slim(@sha256:[0-9a-f]{64})?$`));
    expect(spec.snapshotRuns).toHaveLength(1);
    const [run] = spec.snapshotRuns as [string[]];
    expect(run[0]).toBe('node');
    expect(run.slice(-3)).toEqual(['/build/build-snapshot.mjs', '/app/istiod-vault-agent.cjs', '/app/istiod-vault-agent.blob']);
    // The snapshot is built with the flags it is started with (Node.js 20 refuses any difference).
    expect(run.slice(1, -3), 'snapshot RUN flags = ENTRYPOINT flags').toEqual(spec.entrypoint.slice(1, -3));
    expect(spec.runtimeFiles).toEqual([
      ['/usr/local/bin/node', '/nodejs/bin/node'],
      ['/app/istiod-vault-agent.blob', '/app/istiod-vault-agent.blob'],
    ]);
    expect(spec.entrypoint[0]).toBe('/nodejs/bin/node');
    expect(spec.entrypoint.slice(-3)).toEqual(['--snapshot-blob', '/app/istiod-vault-agent.blob', '--']);
    // Between them, only Node.js/V8 options (the heap settings), never an agent argument.
    for (const flag of spec.entrypoint.slice(1, -3)) expect(flag).toMatch(/^--[a-z-]+(=\d+)?$/);
  });

  it('gives the build stage every file scripts/build.mjs imports', () => {
    const imports = [...readFileSync(path.resolve('scripts/build.mjs'), 'utf8').matchAll(/from '\.\/([^']+)'/g)].map((m) => `scripts/${m[1]}`);
    expect(imports.length).toBeGreaterThan(0);
    const copied = readFileSync(path.resolve('image/Dockerfile'), 'utf8').match(/^COPY scripts\/.*$/gm)!.join(' ');
    for (const f of imports) expect(copied, f).toContain(f);
  });
});

const bao = useOpenBao();

describe.skipIf(!node)(`the agent started as the image's ENTRYPOINT starts it (Node.js ${spec.nodeVersion})`, () => {
  let base: string;
  let image: LocalImage;
  let builtAtS: number;

  beforeAll(async () => {
    base = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-image-'));
    image = buildLocalImage(node!, path.resolve('dist'), path.join(base, 'app'), spec);
    builtAtS = Date.now() / 1000;
  }, 120_000);
  afterAll(async () => {
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  const run = (args: string[], env: Record<string, string> = cleanEnv({})) => {
    const [cmd, ...rest] = image.entrypoint as [string, ...string[]];
    return spawnSync(cmd, [...rest, ...args], { cwd: image.appDir, env, encoding: 'utf8', timeout: 60_000 });
  };

  it('has only the snapshot in /app, no node_modules above it, and the pinned Node.js', async () => {
    expect(await fs.readdir(image.appDir)).toEqual(['istiod-vault-agent.blob']);
    for (let d = image.appDir; ; d = path.dirname(d)) {
      expect(existsSync(path.join(d, 'node_modules')), `${d}/node_modules`).toBe(false);
      if (path.dirname(d) === d) break;
    }
    expect(spawnSync(image.entrypoint[0]!, ['-v'], { encoding: 'utf8' }).stdout.trim()).toBe(`v${spec.nodeVersion}`);
  });

  it('prints the version, and the usage for the image CMD', () => {
    const version = run(['version']);
    expect(version.status, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(pkg.version);
    const help = run(spec.cmd);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: istiod-vault-agent <command>/m);
  });

  it('starts only on the Node.js version that built the snapshot', () => {
    const other = process.version === `v${spec.nodeVersion}` ? undefined : process.execPath;
    if (!other) return;
    const res = spawnSync(other, [...image.entrypoint.slice(1), 'version'], { cwd: image.appDir, encoding: 'utf8' });
    expect(res.status).not.toBe(0);
    expect(res.stdout).not.toContain(pkg.version);
  });

  describe.skipIf(!bao.available)('against OpenBao, with the example ConfigMap', () => {
    const settings = (certDir: string, extra: Record<string, string> = {}) => {
      const cm = YAML.parse(readFileSync(path.resolve('manifests/kustomize/examples/configmap.yaml'), 'utf8')) as { data: Record<string, string> };
      return cleanEnv({ ...cm.data, ...bao.get().env, PKI_SIGN_PATH: 'pki/root/sign-intermediate', KEY_TYPE: 'ec', CERT_DIR: certDir, ...extra });
    };

    it('init publishes a bundle that check accepts', async () => {
      const certDir = path.join(base, 'init-cacerts');
      await fs.mkdir(certDir);
      const res = run(['init'], settings(certDir));
      expect(res.status, res.stdout + res.stderr).toBe(0);
      const lines = res.stdout.trim().split('\n').map((l) => JSON.parse(l) as LogLine);
      expect(lines.some((l) => l.msg === 'published a new intermediate')).toBe(true);
      expect((await fs.readdir(certDir)).sort()).toEqual(expect.arrayContaining(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']));
      const check = run(['check', certDir], settings(certDir));
      expect(check.status, check.stderr).toBe(0);
      expect(check.stdout).toMatch(/L=cluster1/);
    });

    it('run serves metrics that describe this process, not the snapshot build', async () => {
      // prom-client reads the process start time when it loads: loaded into the snapshot it would report
      // the build's. Make the two times at least 2 s apart so that the check below can tell them apart.
      // Time itself is the point here: a wait for a moment, not for an event.
      await passTime(builtAtS * 1000 + 2500 - Date.now());
      const certDir = path.join(base, 'run-cacerts');
      await fs.mkdir(certDir);
      const [cmd, ...rest] = image.entrypoint as [string, ...string[]];
      const spawnedAtS = Date.now() / 1000;
      const child = spawn(cmd, [...rest, 'run'], { cwd: image.appDir, env: settings(certDir, { METRICS_ADDR: '127.0.0.1:0' }), stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      try {
        let out = '';
        const addr = await new Promise<string>((resolve, reject) => {
          child.stdout.on('data', (d: Buffer) => {
            out += d.toString();
            const m = /"addr":"([^"]+)"[^\n]*"msg":"serving \/metrics/.exec(out);
            if (m) resolve(m[1]!);
          });
          child.once('exit', (code) => reject(new Error(`exited ${code} before serving: ${out}`)));
        });
        await waitFor(async () => (await httpGet(`http://${addr}/readyz`)).status === 200, { what: '/readyz 200', timeoutMs: 30_000 });
        const text = (await httpGet(`http://${addr}/metrics`)).text;
        expect(sample(text, 'istiod_vault_agent_build_info', { version: pkg.version })).toBe(1);
        expect(sample(text, 'istiod_vault_agent_issuances_total', { result: 'success', reason: 'none' })).toBe(1);
        const started = sample(text, 'process_start_time_seconds')!;
        expect(started).toBeGreaterThanOrEqual(Math.floor(spawnedAtS) - 1);
        expect(started).toBeLessThanOrEqual(Date.now() / 1000 + 1);
        // `check` asks the running agent over HTTP with fetch (undici, which needs WebAssembly: a V8
        // flag such as --lite-mode would quietly take it away and check would fall back to its own guess).
        const check = run(['check', certDir], settings(certDir, { METRICS_ADDR: addr }));
        expect(check.status, check.stderr).toBe(0);
        expect(check.stdout).toContain(`as the running agent at http://${addr}/metrics reports it`);
      } finally {
        child.kill('SIGTERM');
      }
      expect(await exited, 'SIGTERM: clean exit').toBe(0);
    });
  });
});

describe.skipIf(!node)('scripts/build-snapshot.mjs', () => {
  it('refuses a snapshot whose build warns about a module it cannot hold', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-snapshot-'));
    try {
      // worker_threads (what pino loads) makes Node.js warn rather than crash: the script must still refuse.
      await fs.writeFile(path.join(dir, 'entry.cjs'), "require('node:worker_threads');\nrequire('node:v8').startupSnapshot.setDeserializeMainFunction(() => console.log('1.0.0'));\n");
      const res = spawnSync(node!, [path.resolve('scripts/build-snapshot.mjs'), path.join(dir, 'entry.cjs'), path.join(dir, 'entry.blob')], { encoding: 'utf8' });
      expect(res.status).toBe(1);
      expect(res.stderr).toMatch(/warned; a module it loads at start-up must be imported when first needed/);
      expect(res.stderr).toContain('worker_threads');
      expect(existsSync(path.join(dir, 'entry.blob'))).toBe(false);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
