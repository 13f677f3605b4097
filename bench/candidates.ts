/**
 * `npm run bench:candidates`: what each start-up change of issue 12 was worth, one at a time, on one
 * Node.js binary (--node <path>; default the one running this script), next to `bao agent` in the same
 * run. Each candidate is a row: a commit built with its own scripts/build.mjs (the ones before the change
 * and after it), or the current build started another way (compile cache, CommonJS bundle, startup
 * snapshot with and without the image's Node.js flags, other V8 flags tried). For every row:
 *
 *   - what the process loads (bundle or snapshot size);
 *   - `version` (start, no work) and cold `init` (EC P-256, the four files published): median wall and
 *     CPU over --runs rounds, round robin with bao agent's init (one discarded warm-up round);
 *   - idle `run` sidecar RSS after V8 has settled, all rows and bao agent's template sidecar side by side.
 *
 * Writes bench/RESULTS.md (section candidates-node<major>); --quick: 3 rounds, 10 s idle window, prints
 * only unless --write.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentEnv, startAgent, type AgentProcess } from './lib/agent.js';
import { certBase, parseArgs } from './lib/args.js';
import { BUNDLE_FILE_NAMES, startBaoAgent, writeBaoAgentConfig } from './lib/bao-agent.js';
import { buildAtRef, buildBundles, bundleLaunch, commitOf, imageLaunch, imageNodeFlags, type Build } from './lib/bundles.js';
import { command, nodeBinary, scriptLaunch, type Launch, type NodeBinary } from './lib/launch.js';
import { describeMachine, machineMarkdown } from './lib/machine.js';
import { idleWindow, timeCommand, type IdleResult, type Timing } from './lib/measure.js';
import { setupKvBundle, startBao } from './lib/openbao.js';
import { ChildCpu } from './lib/proc.js';
import { writeSection } from './lib/results.js';
import { fmt, median, mib } from './lib/stats.js';

const args = parseArgs(process.argv.slice(2), { quick: 'flag', runs: 'number', 'idle-seconds': 'number', write: 'flag', node: 'string' });
const quick = args.quick === true;
const RUNS = (args.runs as number | undefined) ?? (quick ? 3 : 10);
const IDLE_S = (args['idle-seconds'] as number | undefined) ?? (quick ? 10 : 60);
const WRITE = args.write === true || !quick;
const LONG_TTL = '8760h';

/** The commits the ladder is built from: main before issue 12, then each change (the last is HEAD's src). */
const REFS = {
  baseline: '9206b59',
  axiosStub: 'daf45d8',
  lazyImports: 'da8da93',
  snapshot: 'acff69f',
  initWithoutPromClient: '8605e97',
} as const;

const HEAP_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=64'];
/** V8 settings tried on the snapshot, each with what it changes. */
const FLAG_CANDIDATES: [string[], string][] = [
  [HEAP_FLAGS, 'young generation 1 MiB, old space capped at 64 MiB'],
  [[...HEAP_FLAGS, '--no-opt', '--no-maglev'], 'and no optimising compilers (Maglev, TurboFan; Sparkplug stays)'],
  [[...HEAP_FLAGS, '--no-opt', '--no-maglev', '--no-sparkplug', '--optimize-for-size'], 'and JavaScript interpreted only, tuned for size'],
  [[...HEAP_FLAGS, '--lite-mode'], 'V8 lite mode: also no WebAssembly, so no fetch (istiod sync, check)'],
];

const log = (m: string) => console.error(`[candidates] ${m}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const row = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;

interface Candidate {
  name: string;
  /** What it changes, for the table. */
  change: string;
  launch: Launch;
  /** Bytes the process loads: the bundle, or the snapshot blob. */
  loads: string;
  version: Timing[];
  init: Timing[];
  idle?: IdleResult;
}

function hasCompileCache(node: NodeBinary): boolean {
  return execFileSync(node.path, ['-p', "typeof require('node:module').enableCompileCache"], { encoding: 'utf8' }).trim() === 'function';
}

function size(file: string): string {
  return `${(fs.statSync(file).size / 1024).toFixed(0)} KiB ${file.endsWith('.blob') ? 'snapshot' : path.extname(file).slice(1)}`;
}

function blobOf(l: Launch): string {
  return l.argv[l.argv.indexOf('--snapshot-blob') + 1]!;
}

async function main(): Promise<number> {
  const node = nodeBinary(args.node as string | undefined);
  log(`Node.js ${node.version} (${node.path}); building the candidates`);
  const b = buildBundles();
  const scratchBase = fs.mkdtempSync(path.join(certBase(), 'ivagent-cand-'));
  let n = 0;
  const dir = (p: string) => {
    const d = path.join(scratchBase, `${p}-${++n}`);
    fs.mkdirSync(d);
    return d;
  };
  const childCpu = new ChildCpu(dir('cpu'));
  const atRef = (ref: string): Build => buildAtRef(ref, b.scratch(`ref-${ref}`));
  const head = b.minified;
  const imageFlags = imageNodeFlags();

  const candidates: Candidate[] = [];
  const add = (name: string, change: string, launch: Launch, loads: string) => candidates.push({ name, change, launch, loads, version: [], init: [] });
  const baseline = atRef(REFS.baseline);
  add(`baseline: main ${commitOf(REFS.baseline)}, \`node bundle.mjs\``, 'before issue 12', bundleLaunch(node, baseline), size(baseline.mjs));
  const stub = atRef(REFS.axiosStub);
  add(`+ axios stub (${commitOf(REFS.axiosStub)})`, 'axios and what it pulls in left out of the bundle', bundleLaunch(node, stub), size(stub.mjs));
  const lazy = atRef(REFS.lazyImports);
  add(`+ lazy imports (${commitOf(REFS.lazyImports)})`, 'Vault client, pino, prom-client, metrics server, check, dev imported when needed', bundleLaunch(node, lazy), size(lazy.mjs));
  add(`+ init without prom-client (${commitOf(REFS.initWithoutPromClient)}, current build)`, 'init records no metrics; the Vault transport alone loads at run time', bundleLaunch(node, head), size(head.mjs));
  if (hasCompileCache(node)) {
    // As an image build would: one run with the cache folder, at the path the runs will use.
    const cache = dir('compile-cache');
    const warm = bundleLaunch(node, head, [], { NODE_COMPILE_CACHE: cache });
    execFileSync(...command(warm, ['version']), { env: { ...agentEnv({}), ...warm.env }, stdio: 'ignore' });
    add('+ compile cache (current build)', 'NODE_COMPILE_CACHE warmed by one `version` run', warm, size(head.mjs));
  }
  add('CommonJS bundle, no snapshot (current build)', '`node bundle.cjs`: no ESM loader', scriptLaunch(node, head.cjs!), size(head.cjs!));
  const firstSnapshot = imageLaunch(node, atRef(REFS.snapshot), b.scratch('snap-first'), []);
  add(`V8 startup snapshot, before init dropped prom-client (${commitOf(REFS.snapshot)})`, '`node --snapshot-blob <blob> --`', firstSnapshot, size(blobOf(firstSnapshot)));
  const snapshot = imageLaunch(node, head, b.scratch('snap'), []);
  add('V8 startup snapshot, no Node.js flags (current build)', 'the same with init without prom-client', snapshot, size(blobOf(snapshot)));
  // V8 settings, one group at a time on the same snapshot (whichever the image's ENTRYPOINT passes is marked).
  const same = (f: string[]) => f.length === imageFlags.length && f.every((x, i) => x === imageFlags[i]);
  for (const [flags, change] of FLAG_CANDIDATES) {
    const l = imageLaunch(node, head, b.scratch('flags'), flags);
    const name = `snapshot + ${flags.join(' ')}${same(flags) ? ": the image's ENTRYPOINT" : flags.length > HEAP_FLAGS.length ? ' (tried, not shipped)' : ''}`;
    add(name, change, l, size(blobOf(l)));
  }
  if (imageFlags.length && !FLAG_CANDIDATES.some(([f]) => same(f))) {
    const image = imageLaunch(node, head, b.scratch('image'));
    add(`snapshot + ${imageFlags.join(' ')}: the image's ENTRYPOINT`, 'the image as built', image, size(blobOf(image)));
  }

  let bao: Awaited<ReturnType<typeof startBao>> | undefined;
  try {
    bao = await startBao();
    const { bin, env: dev } = bao;
    const machine = describeMachine(bin, node.version);
    const loadStart = os.loadavg().map((l) => l.toFixed(2)).join(' / ');
    const seed = dir('seed');
    const seedRun = startAgent(candidates.at(-1)!.launch, ['init'], agentEnv({ ...dev.env, CERT_DIR: seed, KEY_TYPE: 'ec', CERT_TTL: LONG_TTL }));
    if ((await seedRun.exit).code !== 0) throw new Error(`seed init failed: ${seedRun.tail()}`);
    const read = (f: string) => fs.readFileSync(path.join(seed, f), 'utf8');
    await setupKvBundle(dev, { caCert: read('ca-cert.pem'), caKey: read('ca-key.pem'), certChain: read('cert-chain.pem'), rootCert: read('root-cert.pem') });

    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const initEnv = (d: string) => agentEnv({ ...dev.env, CERT_DIR: d, KEY_TYPE: 'ec', CERT_TTL: LONG_TTL });
    const theirs: Timing[] = [];
    const baoInit = async (): Promise<Timing> => {
      const work = dir('bao-work');
      const certDir = dir('bao-certs');
      const w = childCpu.wrap();
      const t0 = performance.now();
      const p = startBaoAgent(bin, writeBaoAgentConfig({ vaultAddr: dev.server.addr, saTokenPath: dev.saTokenPath, workDir: work, certDir, exitAfterAuth: true }), work, w.argv);
      const e = await p.exit;
      if (e.code !== 0) throw new Error(`bao agent exited ${e.code}: ${p.output()}`);
      return { wallMs: e.at - t0, cpuMs: w.read() };
    };
    // Round robin over every measurement (each candidate's version and init, and bao agent's init); each
    // round starts one further along, so no candidate always follows the same one.
    const jobs: { run: () => Promise<Timing>; into: Timing[] }[] = [
      ...candidates.flatMap((c) => [
        { run: () => timeCommand(childCpu, ...command(c.launch, ['version']), { ...env, ...c.launch.env }), into: c.version },
        { run: () => timeCommand(childCpu, ...command(c.launch, ['init']), { ...initEnv(dir('ours')), ...c.launch.env }), into: c.init },
      ]),
      { run: baoInit, into: theirs },
    ];
    log(`${candidates.length} candidates + bao agent: ${RUNS} rounds of ${jobs.length} runs (+1 warm-up round)`);
    for (const j of jobs) await j.run();
    for (let r = 0; r < RUNS; r++) {
      for (let k = 0; k < jobs.length; k++) {
        const j = jobs[(r + k) % jobs.length]!;
        j.into.push(await j.run());
      }
      log(`  round ${r + 1}/${RUNS} (load ${os.loadavg()[0]!.toFixed(2)})`);
    }

    log(`idle sidecars side by side, ${IDLE_S}s window after V8 settles`);
    const runEnv = (d: string) => agentEnv({ ...dev.env, CERT_DIR: d, KEY_TYPE: 'ec', CERT_TTL: LONG_TTL, METRICS_ADDR: '127.0.0.1:0', ISTIOD_METRICS_URL: '' });
    const sidecars: AgentProcess[] = candidates.map((c) => startAgent(c.launch, ['run'], runEnv(dir('idle'))));
    const work = dir('idle-bao-work');
    const baoCerts = dir('idle-bao-certs');
    const baoSidecar = startBaoAgent(bin, writeBaoAgentConfig({ vaultAddr: dev.server.addr, saTokenPath: dev.saTokenPath, workDir: work, certDir: baoCerts, exitAfterAuth: false }), work);
    let baoIdle: IdleResult;
    try {
      await Promise.all(sidecars.map((a) => a.waitPublished(1, 120_000)));
      while (!BUNDLE_FILE_NAMES.every((f) => fs.existsSync(path.join(baoCerts, f)))) await sleep(50);
      // V8's memory reducer runs once, 10-30 s after a process goes idle (see run.ts).
      await sleep(quick ? 2000 : 40_000);
      const results = await Promise.all([...sidecars.map((a, i) => idleWindow(candidates[i]!.name, a.pid, IDLE_S)), idleWindow('bao agent', baoSidecar.pid, IDLE_S)]);
      results.slice(0, -1).forEach((r, i) => (candidates[i]!.idle = r));
      baoIdle = results.at(-1)!;
    } finally {
      await Promise.all([...sidecars.map((a) => a.stop()), baoSidecar.stop()]);
    }

    const med = (t: Timing[], k: 'wallMs' | 'cpuMs') => median(t.map((x) => x[k]).filter((x): x is number => x !== undefined));
    const baoWall = med(theirs, 'wallMs');
    const baoCpu = med(theirs, 'cpuMs');
    const md: string[] = [
      `## Start-up candidates on Node.js ${node.version} (\`npm run bench:candidates\`${quick ? ' --quick' : ''})`,
      '',
      ...machineMarkdown(machine),
      `| load average | ${loadStart} at the start, ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')} at the end |`,
      '',
      `Each row is measured one at a time, ${RUNS} rounds round robin with bao agent's init in the same run (medians; CPU = user+sys from GNU time, 10 ms resolution). Rows naming a commit are that commit built with its own scripts/build.mjs (commit before a change, then the change); rows of the current build start it another way. Idle: every row's \`run\` sidecar and bao agent's template sidecar side by side, RSS at the end of a ${IDLE_S} s window opened ${quick ? 2 : 40} s after the first publish.`,
      '',
      row(['candidate', 'change', 'loads', '`version` wall / CPU (ms)', 'cold `init` EC wall / CPU (ms)', 'init vs bao agent, wall / CPU', 'idle RSS (MiB)', 'idle RSS vs bao agent']),
      row(['---', '---', '---:', '---:', '---:', '---:', '---:', '---:']),
      ...candidates.map((c) =>
        row([
          c.name,
          c.change,
          c.loads,
          `${fmt(med(c.version, 'wallMs'), 0)} / ${fmt(med(c.version, 'cpuMs'), 0)}`,
          `${fmt(med(c.init, 'wallMs'), 0)} / ${fmt(med(c.init, 'cpuMs'), 0)}`,
          `${fmt(med(c.init, 'wallMs') / baoWall, 2)}x / ${fmt(med(c.init, 'cpuMs') / baoCpu, 2)}x`,
          mib(c.idle!.rssEnd),
          `${(c.idle!.rssEnd - baoIdle.rssEnd >= 0 ? '+' : '') + mib(c.idle!.rssEnd - baoIdle.rssEnd)}`,
        ]),
      ),
      row(['bao agent (baseline)', 'auth + render 4 templates, exit_after_auth; template sidecar', '', '', `${fmt(baoWall, 0)} / ${fmt(baoCpu, 0)}`, '1.00x / 1.00x', mib(baoIdle.rssEnd), '']),
    ];
    const text = md.join('\n');
    console.log(text);
    if (WRITE) {
      const section = `candidates-node${Number(node.version.replace(/^v(\d+).*/, '$1'))}` as const;
      writeSection(section, text);
      log(`wrote bench/RESULTS.md (${section} section)`);
    }
    return 0;
  } finally {
    await bao?.env.stop();
    fs.rmSync(scratchBase, { recursive: true, force: true });
    b.cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`[candidates] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(2);
  },
);
