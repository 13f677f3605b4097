/**
 * The image, without a Docker engine: image/Dockerfile is parsed and held to its contract (multi-stage,
 * a distroless runtime pinned by digest, every Node stage on NODE_VERSION, OCI labels, UID 1337,
 * exec-form ENTRYPOINT, no RUN in the runtime stage), and the ENTRYPOINT is run on what the runtime stage
 * holds (test/helpers/image-launch.ts reproduces the snapshot stage with the image's Node.js) with the
 * args the manifests give and the environment the kustomize ConfigMap and container env would give it
 * (pointed at the test OpenBao with jwt auth). scripts/pin-base-images.sh is checked against a stand-in
 * for `crane` (no registry is reachable here).
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { builtinModules } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import pkg from '../../package.json' with { type: 'json' };
import { BUNDLE, cleanEnv, type LogLine } from '../helpers/agent-process.js';
import { containerEnv } from '../helpers/container-env.js';
import { DOCKERFILE, buildLocalImage, dockerfileStages, imageNode, parseDockerfile, readImageStartup, type Instruction, type Stage } from '../helpers/image-launch.js';
import { useOpenBao } from '../helpers/openbao.js';

/** Where the distroless runtime keeps node (the distroless Node.js images' own ENTRYPOINT is this binary). */
const CONTAINER_NODE = '/nodejs/bin/node';
const DIGEST = /@sha256:[0-9a-f]{64}$/;

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

/** The runtime stage's exec-form ENTRYPOINT and CMD (the last of each, as Docker takes them). */
function execForm(runtime: Stage): { entrypoint: string[]; cmd: string[] } {
  const last = (op: string) => runtime.body.filter((i) => i.op === op).at(-1);
  const entry = last('ENTRYPOINT');
  expect(entry, 'the runtime stage has an ENTRYPOINT').toBeDefined();
  const parse = (i: Instruction | undefined) => {
    if (!i) return [];
    const v = JSON.parse(i.args) as unknown;
    expect(Array.isArray(v) && v.every((x) => typeof x === 'string'), `${i.op} must be exec form (a JSON list): ${i.args}`).toBe(true);
    return v as string[];
  };
  return { entrypoint: parse(entry), cmd: parse(last('CMD')) };
}

describe('image/Dockerfile', () => {
  const ins = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
  const st = dockerfileStages(ins);
  const runtime = st.at(-1)!;
  const build = st[0]!;

  it('is multi-stage with pinned bases: a distroless runtime by tag AND digest, every Node stage the one NODE_VERSION', () => {
    expect(st.length).toBeGreaterThanOrEqual(2);
    for (const s of st) {
      const tag = tagOf(s.from.replace(DIGEST, ''));
      expect(tag, `${s.from} must name a tag (it says what the image is)`).toBeDefined();
      expect(tag).not.toBe('latest');
      if (s.from.includes('@')) expect(s.from, `${s.from}: a well-formed digest`).toMatch(DIGEST);
    }
    expect(runtime.from, `${runtime.from} must be pinned by digest`).toMatch(DIGEST);
    expect(runtime.from, runtime.from).toMatch(/^gcr\.io\/distroless\/(cc|nodejs(22|24))-debian1[23]:/);
    // Every Node stage names NODE_VERSION exactly (the runtime's node and the snapshot come from that
    // image: test/integration/image-startup.test.ts), an LTS (even) major; the build stage refuses an
    // image that runs another version.
    const nodeVersion = readImageStartup().nodeVersion;
    const versions = new Set(st.slice(0, -1).map((s) => /^node:(\d+\.\d+\.\d+)-/.exec(s.from)?.[1]));
    expect([...versions], build.from).toEqual([nodeVersion]);
    expect(Number(nodeVersion.split('.')[0]) % 2, 'an LTS (even) Node major').toBe(0);
    expect(build.body.find((i) => i.op === 'RUN')?.args, 'the first RUN checks the Node.js version').toMatch(/node --version.*"v\$NODE_VERSION".*exit 1/);
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
    const { entrypoint, cmd } = execForm(runtime);
    expect(entrypoint[0]).toBe(CONTAINER_NODE);
    expect(Array.isArray(cmd)).toBe(true);
  });

  it('labels the image with OCI source, version and revision from build args', () => {
    const labels = Object.fromEntries(runtime.body.filter((i) => i.op === 'LABEL').flatMap((i) => [...i.args.matchAll(/([\w.-]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!])));
    expect(labels).toMatchObject({
      'org.opencontainers.image.title': 'istiod-vault-agent',
      'org.opencontainers.image.licenses': pkg.license,
      'org.opencontainers.image.version': '${VERSION}',
      'org.opencontainers.image.revision': '${REVISION}',
      'org.opencontainers.image.source': '${SOURCE_URL}',
      'org.opencontainers.image.base.name': '${RUNTIME_IMAGE}',
    });
    // Every label's build arg is declared in the runtime stage (a global ARG is not visible in a stage
    // unless re-declared), and VERSION defaults to the package's version, which the build stage checks.
    const stageArgs = runtime.body.filter((i) => i.op === 'ARG').map((i) => i.args.split('=')[0]);
    for (const v of ['VERSION', 'REVISION', 'SOURCE_URL', 'RUNTIME_IMAGE']) expect(stageArgs, v).toContain(v);
    const globalVersion = ins.slice(0, ins.findIndex((i) => i.op === 'FROM')).find((i) => i.op === 'ARG' && i.args.startsWith('VERSION='));
    expect(globalVersion?.args).toBe(`VERSION=${pkg.version}`);
    expect(build.body.find((i) => i.op === 'RUN' && /npm run build/.test(i.args))?.args).toMatch(/\$v" != "\$VERSION".*exit 1/);
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

describe('scripts/pin-base-images.sh', () => {
  const SCRIPT = path.resolve('scripts/pin-base-images.sh');

  /** A stand-in for `crane digest` (no registry is reachable from the test machine). */
  async function withCrane(digests: Record<string, string>, fn: (env: Record<string, string>, dockerfile: string) => Promise<void>): Promise<void> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-pin-'));
    try {
      const cases = Object.entries(digests).map(([ref, d]) => `  "${ref}") echo "${d}" ;;`).join('\n');
      await fs.writeFile(path.join(dir, 'crane'), `#!/bin/sh\n[ "$1" = digest ] || exit 2\necho "$2" >> "${dir}/asked"\ncase "$2" in\n${cases}\n  *) echo "no such tag $2" >&2; exit 1 ;;\nesac\n`, { mode: 0o755 });
      const dockerfile = path.join(dir, 'Dockerfile');
      await fs.copyFile(DOCKERFILE, dockerfile);
      await fn({ PATH: `${dir}:${process.env.PATH ?? ''}`, DOCKERFILE: dockerfile, HOME: dir }, dockerfile);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  const pinned = () => dockerfileStages(parseDockerfile(readFileSync(DOCKERFILE, 'utf8'))).map((x) => x.from);

  it('pins every base to its tag\'s digest, --check then passes, and fails naming the one that moved', async () => {
    const refs = pinned().filter((r, i, all) => all.indexOf(r) === i);
    const tagged = refs.map((r) => r.replace(DIGEST, ''));
    const digests = Object.fromEntries(tagged.map((t, i) => [t, `sha256:${String.fromCharCode(97 + i).repeat(64)}`]));
    await withCrane(digests, async (env, dockerfile) => {
      const unpinned = tagged.filter((t) => !refs.includes(`${t}@${digests[t]}`));
      const first = spawnSync(SCRIPT, ['--check'], { env, encoding: 'utf8' });
      expect(first.status, '--check fails while a pin is missing or stale').toBe(unpinned.length ? 1 : 0);
      expect(await fs.readFile(dockerfile, 'utf8'), '--check changes nothing').toBe(readFileSync(DOCKERFILE, 'utf8'));
      const pin = spawnSync(SCRIPT, [], { env, encoding: 'utf8' });
      expect(pin.status, pin.stderr).toBe(0);
      const after = await fs.readFile(dockerfile, 'utf8');
      // Exactly the two ARG lines change, each keeping its tag.
      expect(after).toContain(`ARG NODE_BUILD_IMAGE=${tagged[0]}@${digests[tagged[0]!]}`);
      expect(after).toContain(`ARG RUNTIME_IMAGE=${tagged.at(-1)}@${digests[tagged.at(-1)!]}`);
      expect(after.split('\n').length).toBe(readFileSync(DOCKERFILE, 'utf8').split('\n').length);
      const ok = spawnSync(SCRIPT, ['--check'], { env, encoding: 'utf8' });
      expect(ok.status, ok.stderr).toBe(0);
    });
    const runtimeTag = tagged.at(-1)!;
    await withCrane({ ...digests, [runtimeTag]: `sha256:${'f'.repeat(64)}` }, async (env, dockerfile) => {
      expect(spawnSync(SCRIPT, [], { env, encoding: 'utf8' }).status).toBe(0);
      await fs.writeFile(dockerfile, (await fs.readFile(dockerfile, 'utf8')).replace(`sha256:${'f'.repeat(64)}`, digests[runtimeTag]!));
      const stale = spawnSync(SCRIPT, ['--check'], { env, encoding: 'utf8' });
      expect(stale.status).toBe(1);
      expect(stale.stderr).toContain(`${runtimeTag}: ${digests[runtimeTag]} -> sha256:${'f'.repeat(64)}`);
    });
  });

  it('fails loudly when the registry does not know a tag', async () => {
    await withCrane({}, async (env) => {
      const res = spawnSync(SCRIPT, ['--check'], { env, encoding: 'utf8' });
      expect(res.status).not.toBe(0);
      expect(res.stderr).toMatch(/crane digest .* failed/);
    });
  });
});

const bao = useOpenBao();
const imageNodeBin = imageNode();

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

  // The image's start-up (snapshot stage, Node.js version) is image-startup.test.ts's; here the ENTRYPOINT
  // meets the manifests: their args and the environment Kubernetes computes for the containers.
  it.skipIf(!imageNodeBin)('runs the ENTRYPOINT + CMD, then ENTRYPOINT + the manifests\' args, from the image\'s files alone', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-image-'));
    try {
      const image = buildLocalImage(imageNodeBin!, path.dirname(BUNDLE), path.join(root, 'app'));
      const { entrypoint, cmd } = image;
      const exec = (args: string[], env: Record<string, string>) => spawnSync(entrypoint[0]!, [...entrypoint.slice(1), ...args], { cwd: image.appDir, env, encoding: 'utf8', timeout: 60_000 });

      const bare = exec(cmd, cleanEnv({}));
      expect(bare.status, `ENTRYPOINT + CMD (${cmd.join(' ')}) exits 0`).toBe(0);
      expect(bare.stdout).toMatch(/^istiod-vault-agent /);

      // Settings as in the pod: the environment Kubernetes computes for the init container (the example
      // ConfigMap through envFrom, the container's env with the downward API and $(VAR) expansion) for an
      // istiod-canary in mesh-cp; then pointed at the test OpenBao with jwt auth, with local paths.
      const cm = YAML.parse(readFileSync(path.resolve('manifests/kustomize/examples/configmap.yaml'), 'utf8')) as { data: Record<string, string> };
      const init = (YAML.parse(readFileSync(path.resolve('manifests/kustomize/classic/init-container.yaml'), 'utf8')) as { spec: { template: { spec: { initContainers: { args: string[]; env: { name: string }[] }[] } } } }).spec.template.spec.initContainers[0]!;
      const podEnv = containerEnv(init, { 'istiod-vault-agent': cm.data }, { namespace: 'mesh-cp', serviceAccountName: 'istiod-canary' });
      expect(podEnv.CERT_DNS_SANS).toBe('istiod-canary.mesh-cp.svc');
      const certDir = path.join(root, 'etc-cacerts');
      await fs.mkdir(certDir);
      const env = cleanEnv({
        ...podEnv,
        ...bao.get().env, // VAULT_ADDR, AUTH_METHOD=jwt, AUTH_MOUNT=jwt, AUTH_ROLE=istiod, SA_TOKEN_PATH
        PKI_SIGN_PATH: 'pki/root/sign-intermediate',
        KEY_TYPE: 'ec',
        CERT_DIR: certDir,
      });
      const run = (args: string[]) => exec(args, env);

      const version = run(['version']);
      expect(version.status, version.stderr).toBe(0);
      expect(version.stdout.trim()).toBe(pkg.version);

      // The long-running commands of the other containers: accepted as commands (they stop at the
      // missing VAULT_ADDR, exit 2, instead of "unknown command").
      for (const file of ['classic/sidecar-container.yaml', 'native/native-sidecar.yaml']) {
        const text = readFileSync(path.resolve('manifests/kustomize', file), 'utf8');
        const args = JSON.parse(/^\s*args: (\[.*\])$/m.exec(text)![1]!) as string[];
        const r = exec(args, cleanEnv({}));
        expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toMatch(/^VAULT_ADDR: /m);
      }

      const res = run(init.args);
      expect(res.status, res.stdout + res.stderr).toBe(0);
      const lines = res.stdout.trim().split('\n').map((l) => JSON.parse(l) as LogLine);
      expect(lines.every((l) => typeof l.level === 'string'), 'JSON log lines only on stdout').toBe(true);
      const files = (await fs.readdir(certDir)).sort();
      expect(files).toEqual(expect.arrayContaining(['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']));
      const check = run(['check', certDir]);
      expect(check.status, check.stderr).toBe(0);
      expect(check.stdout).toMatch(/L=cluster1/);
      // The SAN derived in the pod reached the intermediate.
      expect(new X509Certificate(await fs.readFile(path.join(certDir, 'ca-cert.pem'))).subjectAltName).toBe('DNS:istiod-canary.mesh-cp.svc');
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});
