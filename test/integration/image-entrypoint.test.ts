/**
 * The image, without a Docker engine: image/Dockerfile is parsed and held to its contract (multi-stage,
 * pinned bases, distroless Node LTS runtime, UID 1337, exec-form ENTRYPOINT running node on the bundle,
 * no RUN in the runtime stage), and the bundle is run exactly as that ENTRYPOINT runs it, from a folder
 * with no node_modules anywhere above it, with the settings the kustomize ConfigMap and container env
 * would give it (pointed at the test OpenBao with jwt auth).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { builtinModules } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import pkg from '../../package.json' with { type: 'json' };
import { BUNDLE, cleanEnv, type LogLine } from '../helpers/agent-process.js';
import { useOpenBao } from '../helpers/openbao.js';

const DOCKERFILE = path.resolve('image/Dockerfile');
const ENTRYPOINT = ['/nodejs/bin/node', '--max-semi-space-size=1', '--max-old-space-size=64', '--no-opt', '--no-maglev', '--snapshot-blob', '/app/istiod-vault-agent.blob', '--'];

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions: comments dropped, continuation lines joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw) && !pending) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' ';
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (!full) continue;
    const m = /^(\S+)\s*(.*)$/.exec(full)!;
    out.push({ op: m[1]!.toUpperCase(), args: m[2]! });
  }
  return out;
}

/** Stages, with FROM images resolved against the ARG defaults declared before the first FROM. */
function stages(ins: Instruction[]): { from: string; name: string | undefined; body: Instruction[] }[] {
  const args: Record<string, string> = {};
  const result: { from: string; name: string | undefined; body: Instruction[] }[] = [];
  for (const i of ins) {
    if (i.op === 'ARG' && result.length === 0) {
      const m = /^(\w+)=(.*)$/.exec(i.args);
      if (m) args[m[1]!] = m[2]!.replace(/^"|"$/g, '');
    } else if (i.op === 'FROM') {
      const parts = i.args.split(/\s+/).filter((p) => !p.startsWith('--platform'));
      const from = parts[0]!.replace(/\$\{?(\w+)\}?/g, (_, n: string) => args[n] ?? `<unset ${n}>`);
      const as = parts.findIndex((p) => p.toUpperCase() === 'AS');
      result.push({ from, name: as >= 0 ? parts[as + 1] : undefined, body: [] });
    } else if (result.length) {
      result.at(-1)!.body.push(i);
    }
  }
  return result;
}

/** Tag (or digest) of an image reference; undefined when neither is given. */
function tagOf(ref: string): string | undefined {
  if (ref.includes('@')) return ref.slice(ref.indexOf('@') + 1);
  const last = ref.slice(ref.lastIndexOf('/') + 1);
  return last.includes(':') ? last.slice(last.indexOf(':') + 1) : undefined;
}

/** Evaluates .dockerignore the way Docker does for plain patterns: last match wins, `!` re-includes. */
function dockerignoreAllows(rules: string[], file: string): boolean {
  let included = true;
  for (const r of rules) {
    const negate = r.startsWith('!');
    const pat = (negate ? r.slice(1) : r).replace(/\/$/, '');
    const re = new RegExp(`^${pat.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
    if (re.test(file)) included = negate;
  }
  return included;
}

describe('image/Dockerfile', () => {
  const ins = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
  const st = stages(ins);
  const runtime = st.at(-1)!;
  const build = st[0]!;

  it('is multi-stage with pinned bases: Node build stages of one exact LTS version and a distroless runtime', () => {
    expect(st.length).toBeGreaterThanOrEqual(2);
    for (const s of st) {
      const tag = tagOf(s.from);
      expect(tag, `${s.from} must name a tag or digest`).toBeDefined();
      expect(tag).not.toBe('latest');
    }
    expect(runtime.from, runtime.from).toMatch(/^gcr\.io\/distroless\/(cc|nodejs(22|24))-debian1[23]:/);
    // Every Node stage names the same exact version (the runtime's node comes from one of them:
    // test/integration/image-startup.test.ts), an LTS (even) major.
    const versions = new Set(st.slice(0, -1).map((s) => /^node:(\d+\.\d+\.\d+)-/.exec(s.from)?.[1]));
    expect([...versions], build.from).toHaveLength(1);
    const [version] = [...versions];
    expect(version, build.from).toBeDefined();
    expect(Number(version!.split('.')[0]) % 2, 'an LTS (even) Node major').toBe(0);
  });

  it('bundles with npm ci + npm run build and copies only node and the snapshot into the runtime', () => {
    const runs = build.body.filter((i) => i.op === 'RUN').map((i) => i.args);
    expect(runs.some((r) => /\bnpm ci\b/.test(r))).toBe(true);
    expect(runs.some((r) => /\bnpm run build\b/.test(r))).toBe(true);
    const copies = runtime.body.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies).toHaveLength(2);
    for (const c of copies) expect(c).toMatch(/--from=snapshot\b/);
    expect(copies[0]).toMatch(/ \/usr\/local\/bin\/node \/nodejs\/bin\/node$/);
    expect(copies[1]).toMatch(/ \/app\/istiod-vault-agent\.blob \/app\/istiod-vault-agent\.blob$/);
    expect(runtime.body.filter((i) => i.op === 'RUN'), 'distroless has no shell').toEqual([]);
  });

  it('runs as 1337:1337 with an exec-form ENTRYPOINT of node on the snapshot', () => {
    const users = runtime.body.filter((i) => i.op === 'USER');
    expect(users.at(-1)?.args).toBe('1337:1337');
    const entry = runtime.body.filter((i) => i.op === 'ENTRYPOINT').at(-1)!;
    expect(JSON.parse(entry.args)).toEqual(ENTRYPOINT);
    const cmd = runtime.body.filter((i) => i.op === 'CMD').at(-1);
    if (cmd) expect(Array.isArray(JSON.parse(cmd.args))).toBe(true);
  });

  it('has a .dockerignore that sends exactly what the build stage copies', () => {
    const rules = readFileSync(path.resolve('.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const copied = build.body.filter((i) => i.op === 'COPY').flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1));
    for (const f of copied) expect(dockerignoreAllows(rules, f.replace(/\/$/, '')), `${f} reaches the build`).toBe(true);
    for (const f of ['node_modules', 'dist/istiod-vault-agent.mjs', '.git', '.tools/venv', 'test/unit', 'cacerts/ca-key.pem']) {
      expect(dockerignoreAllows(rules, f), `${f} stays out of the build context`).toBe(false);
    }
  });
});

const bao = useOpenBao();

/** What the bundle still imports at run time, from esbuild's metafile (minified code hides the names). */
function externalSpecifiers(): string[] {
  const meta = JSON.parse(readFileSync(path.resolve('dist/meta.json'), 'utf8')) as { outputs: Record<string, { imports: { path: string; external?: boolean }[] }> };
  const specs = new Set<string>();
  for (const out of Object.values(meta.outputs)) for (const i of out.imports) if (i.external) specs.add(i.path);
  const builtins = new Set(builtinModules);
  return [...specs].filter((s) => !s.startsWith('node:') && !builtins.has(s));
}

describe.skipIf(!bao.available)('the bundle run as the ENTRYPOINT runs it', () => {
  it('imports nothing but Node built-ins (and one optional module, absent by design)', () => {
    // `debug` (under axios/node-vault) tries `supports-color` inside try/catch and does without it.
    expect(externalSpecifiers()).toEqual(['supports-color']);
  });

  it('issues with the ConfigMap settings from a folder with no node_modules', async () => {
    const appDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-image-'));
    try {
      // The image holds one file in /app; so does this folder, and nothing up the tree has node_modules.
      const bundle = path.join(appDir, 'istiod-vault-agent.mjs');
      await fs.copyFile(BUNDLE, bundle);
      for (let d = appDir; ; d = path.dirname(d)) {
        expect(existsSync(path.join(d, 'node_modules')), `${d}/node_modules`).toBe(false);
        if (path.dirname(d) === d) break;
      }

      // Settings as in the pod: the example ConfigMap (envFrom) pointed at the test OpenBao with jwt
      // auth, plus the container's own env (CERT_DIR, SA_TOKEN_PATH) at local paths.
      const cm = YAML.parse(readFileSync(path.resolve('manifests/kustomize/examples/configmap.yaml'), 'utf8')) as { data: Record<string, string> };
      const init = (YAML.parse(readFileSync(path.resolve('manifests/kustomize/classic/init-container.yaml'), 'utf8')) as { spec: { template: { spec: { initContainers: { args: string[]; env: { name: string }[] }[] } } } }).spec.template.spec.initContainers[0]!;
      expect(init.env.map((e) => e.name).sort()).toEqual(['CERT_DIR', 'SA_TOKEN_PATH']);
      const certDir = path.join(appDir, 'etc-cacerts');
      // The pod's emptyDir: mounted before the agent starts (the agent never creates CERT_DIR).
      await fs.mkdir(certDir);
      const env = cleanEnv({
        ...cm.data,
        ...bao.get().env, // VAULT_ADDR, AUTH_METHOD=jwt, AUTH_MOUNT=jwt, AUTH_ROLE=istiod, SA_TOKEN_PATH
        PKI_SIGN_PATH: 'pki/root/sign-intermediate',
        KEY_TYPE: 'ec',
        CERT_DIR: certDir,
      });
      const run = (args: string[]) => spawnSync(process.execPath, [bundle, ...args], { cwd: appDir, env, encoding: 'utf8', timeout: 60_000 });

      const version = run(['version']);
      expect(version.status, version.stderr).toBe(0);
      expect(version.stdout.trim()).toBe(pkg.version);
      expect(run(['--help']).status, 'the image CMD (--help) exits 0').toBe(0);

      const res = run(init.args);
      expect(res.status, res.stdout + res.stderr).toBe(0);
      const lines = res.stdout.trim().split('\n').map((l) => JSON.parse(l) as LogLine);
      expect(lines.every((l) => typeof l.level === 'string'), 'JSON log lines only on stdout').toBe(true);
      const files = (await fs.readdir(certDir)).sort();
      expect(files).toEqual(expect.arrayContaining(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']));
      const check = run(['check', certDir]);
      expect(check.status, check.stderr).toBe(0);
      expect(check.stdout).toMatch(/L=cluster1/);
    } finally {
      await fs.rm(appDir, { recursive: true, force: true });
    }
  });
});
