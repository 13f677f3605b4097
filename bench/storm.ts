/**
 * `npm run bench:storm`: a fleet rollout (`kubectl rollout restart` of istiod across replicas, revisions
 * and clusters) against a real 3-node OpenBao Raft cluster on this machine. N `init` processes (the
 * built bundle: the image snapshots the same sources, and Vault sees the same requests) start at once and
 * each reaches Vault through its own port of an L7 round-robin front over the three nodes (standbys forward writes), so every request is
 * attributed to its agent without looking at credentials. Measured:
 *
 *   1. the storm, Vault unlimited: time from spawn to a published bundle (p50/p90/p99), Vault requests
 *      per agent by operation and Vault's latency for each, requests per second over time, Vault's CPU,
 *      intermediates stored (LIST pki/certs), and how far the renewal jitter spreads the next renewals;
 *   2. the same storm under an OpenBao rate-limit quota (`--quota` requests/s): what the agents' backoff
 *      with jitter does to the request rate and the time to publish;
 *   3. with `--kill`: the same storm with the active node SIGKILLed once a third of the agents published;
 *   4. one pod's lifetime request by request (`run`): start, a renewal with the token still valid, a
 *      renewal after the token expired (the production case: a 1h token, a renewal every 20 days), stop.
 *
 * Flags: --agents N (default 100), --quota R (default 5; 0 skips 2), --kill, --key-type rsa|ec (default
 * rsa, the agent's default), --multiplier M (Raft performance_multiplier, default 0: OpenBao's own),
 * --write (add this run on top of the storm section of bench/RESULTS.md).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentEnv, startAgent, type AgentProcess, type LogLine } from './lib/agent.js';
import { certBase, parseArgs } from './lib/args.js';
import { buildBundles, bundleLaunch } from './lib/bundles.js';
import { nodeBinary, type Launch } from './lib/launch.js';
import { describeMachine, machineMarkdown } from './lib/machine.js';
import { cpuMs } from './lib/proc.js';
import { readSection, writeSection } from './lib/results.js';
import { fmt, median, percentile } from './lib/stats.js';
import { findVaultBinary } from '../src/dev/bao-binary.js';
import { DEV_ROLE } from '../src/dev/dev-environment.js';
import { JITTER_SHARE, MAX_JITTER_MS } from '../src/agent/renewal-policy.js';
import { judgeDir } from '../test/evidence/support/cert-dir.js';
import { startHttpFront, type FrontRecord } from '../test/helpers/http-front.js';
import { startRaftCluster, type RaftCluster } from '../test/helpers/raft-cluster.js';
import { PROJECT_ROOT } from './lib/bundles.js';

const args = parseArgs(process.argv.slice(2), { agents: 'number', quota: 'number', kill: 'flag', 'key-type': 'string', multiplier: 'number', write: 'flag' });
const N = (args.agents as number | undefined) ?? 100;
const QUOTA = (args.quota as number | undefined) ?? 5;
const KEY_TYPE = (args['key-type'] as string | undefined) ?? 'rsa';
/**
 * OpenBao's default Raft timing (0 = unset = 5). With 1 (fast elections, what the failover tests use) on this
 * shared 2-core machine, N starting Node.js processes starve the nodes of CPU and heartbeats are missed: a
 * 50-agent storm saw 5 elections and 28 failed attempts (all retried, all published) against 0 and 0 here.
 */
const MULTIPLIER = (args.multiplier as number | undefined) ?? 0;
const multiplierText = MULTIPLIER > 0 ? `performance_multiplier ${MULTIPLIER}` : 'performance_multiplier unset (OpenBao default, 5)';
const log = (m: string) => console.error(`[storm] ${m}`);

/** The storm section of bench/RESULTS.md: this, then one subsection per run, newest first. */
const SECTION_HEADER = [
  [
    '## Rollout storm (`npm run bench:storm`), newest first',
    '',
    'All agents and the three OpenBao nodes share one 2-core machine, shared with other work too (the load average at the',
    'start of each storm is recorded): the spawn -> published times are dominated by that many Node.js processes starting',
    'on 2 cores, and the Vault latencies by the nodes waiting for CPU; in a fleet each pod has its own CPU. When nothing',
    'fails, the requests per agent by operation are what one agent asks of Vault whatever the machine; when the nodes starve',
    '(the 200-agent run), the failed attempts, their causes and the extra intermediates stored show what a saturated Vault',
    'does to the agents. See docs/sizing.md for what this means for a fleet.',
  ].join('\n'),
];
const command = `npm run bench:storm -- ${process.argv.slice(2).join(' ')}`.trim();

/** The operation a Vault path is, as the agent's metrics name them. */
function operation(method: string, p: string): string {
  if (/^\/v1\/auth\/.+\/login$/.test(p)) return 'login';
  if (p.endsWith('/sign-intermediate')) return 'sign';
  if (/\/issuer\/[^/]+\/json$/.test(p)) return 'read_issuer';
  // Root rotation's look at the mount (LIST, which the agent sends as GET ?list=1).
  if (/\/issuers(\?list=(1|true))?$/.test(p)) return 'list_issuers';
  const named: Record<string, string> = {
    '/v1/auth/token/renew-self': 'token_renew',
    '/v1/auth/token/revoke-self': 'token_revoke',
    '/v1/auth/token/lookup-self': 'token_lookup',
    '/v1/sys/health': 'health',
    '/v1/sys/leader': 'leader',
  };
  return named[p] ?? `other (${method} ${p})`;
}
const OPS = ['login', 'list_issuers', 'read_issuer', 'sign', 'token_renew', 'token_revoke', 'token_lookup', 'health', 'leader'];

/** An admin call that a rate-limit quota (which applies to the root token too) may refuse for a moment. */
async function adminCall(c: RaftCluster, method: string, p: string, body?: unknown): Promise<unknown> {
  for (let i = 0; ; i++) {
    const res = await (await c.api()).request(method, p, body);
    if (res.status < 300) return res.body;
    if (res.status !== 429 || i >= 100) throw new Error(`${method} ${p}: HTTP ${res.status}: ${JSON.stringify(res.body)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function countCerts(c: RaftCluster): Promise<number> {
  const res = (await adminCall(c, 'LIST', 'pki/certs')) as { data: { keys: string[] } };
  return res.data.keys.length;
}

function vaultCpuMs(c: RaftCluster): number {
  let sum = 0;
  for (const n of c.nodes) {
    const pid = n.proc?.child.pid;
    if (pid) sum += cpuMs(pid);
  }
  return sum;
}

interface StormResult {
  label: string;
  n: number;
  exit0: number;
  valid: number;
  /** Spawn to publish line, per agent (ms). */
  toPublish: number[];
  /** Storm start to each publish (ms). */
  publishAt: number[];
  /** Each agent's first request reaching the front to its publish (ms): the part Vault and retries take. */
  vaultSide: number[];
  failures: number[];
  records: FrontRecord[];
  t0: number;
  vaultCpuMs: number;
  certsStored: number;
  renewAt: number[];
  issuedAt: number[];
  killedAt?: number;
  wallMs: number;
  /** The machine's 1-minute load average when the storm started (other work on the machine shows here). */
  load: number;
  /** Times a node became the active node during the storm (Raft elections won). */
  elections: number;
  /** The agents' failure messages, addresses and numbers blanked, with counts. */
  failureKinds: [string, number][];
}

const ELECTED = /entering leader state/;

/** A failure line without what varies between agents, so equal causes count together. */
function failureKind(msg: string): string {
  return msg.replace(/https?:\/\/[\d.]+:\d+/g, '<addr>').replace(/\d+(\.\d+)?\s?(ms|s)\b/g, '<n>$2').replace(/retrying in .*$/, 'retrying');
}

async function storm(c: RaftCluster, bundle: Launch, label: string, o: { killAfter?: number } = {}): Promise<StormResult> {
  const base = fs.mkdtempSync(path.join(certBase(), 'ivagent-storm-'));
  const front = await startHttpFront({ targets: c.addrs, listeners: N });
  const certsBefore = await countCerts(c);
  const cpuBefore = vaultCpuMs(c);
  let killedAt: number | undefined;
  let published = 0;
  const agents: AgentProcess[] = [];
  log(`${label}: starting ${N} agents`);
  const load = os.loadavg()[0]!;
  const electionsBefore = c.logLines().filter((l) => ELECTED.test(l)).length;
  const t0 = performance.now();
  try {
    for (let i = 0; i < N; i++) {
      const dir = path.join(base, `a${i}`);
      fs.mkdirSync(dir);
      const a = startAgent(bundle, ['init'], agentEnv({ ...c.env, VAULT_ADDR: front.urls[i]!, CERT_DIR: dir, KEY_TYPE: KEY_TYPE, INIT_TIMEOUT: '5m' }), { keepLines: true });
      agents.push(a);
      if (o.killAfter !== undefined) {
        void a.waitPublished(1, 600_000).then(async () => {
          if (++published === o.killAfter && killedAt === undefined) {
            killedAt = performance.now();
            const node = await c.killActive();
            log(`${label}: killed the active node ${node.name} after ${o.killAfter} publishes`);
          }
        }, () => undefined);
      }
    }
    const exits = await Promise.all(agents.map((a) => a.exit));
    const wallMs = performance.now() - t0;
    const cpu = vaultCpuMs(c) - cpuBefore;
    const verdicts = await Promise.all(agents.map((_a, i) => judgeDir(path.join(base, `a${i}`))));
    const publishLines = agents.map((a) => a.lines.find((l) => l.msg === 'published a new intermediate'));
    const result: StormResult = {
      label,
      n: N,
      exit0: exits.filter((e) => e.code === 0).length,
      valid: verdicts.filter((v) => v.ok && v.state === 'valid').length,
      toPublish: agents.filter((a) => a.published > 0).map((a) => a.lastPublishAt - a.spawnedAt),
      publishAt: agents.filter((a) => a.published > 0).map((a) => a.lastPublishAt - t0),
      vaultSide: agents.flatMap((a, i) => {
        const first = front.records.find((rec) => rec.listener === i);
        return a.published > 0 && first ? [a.lastPublishAt - first.at] : [];
      }),
      failures: agents.map((a) => a.lines.filter((l) => l.msg.startsWith('issuance failed')).length),
      records: front.records.slice(),
      t0,
      vaultCpuMs: cpu,
      certsStored: (await countCerts(c)) - certsBefore,
      renewAt: publishLines.filter((l): l is LogLine => l !== undefined).map((l) => Date.parse(String(l.renewAt))),
      issuedAt: publishLines.filter((l): l is LogLine => l !== undefined).map((l) => Date.parse(String(l.notBefore))),
      killedAt: killedAt === undefined ? undefined : killedAt - t0,
      wallMs,
      load,
      elections: c.logLines().filter((l) => ELECTED.test(l)).length - electionsBefore,
      failureKinds: [...agents.flatMap((a) => a.lines.filter((l) => l.msg.startsWith('issuance failed')).map((l) => failureKind(l.msg))).reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map<string, number>())].sort((x, y) => y[1] - x[1]),
    };
    log(`${label}: ${result.exit0}/${N} exited 0, ${result.valid} valid, p50 ${fmt(median(result.toPublish) / 1000, 2)} s, wall ${fmt(wallMs / 1000, 1)} s`);
    const bad = agents.find((_a, i) => exits[i]!.code !== 0);
    if (bad) log(`${label}: a failed agent: ${bad.tail()}`);
    return result;
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await front.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
}

const s = (ms: number) => `${fmt(ms / 1000, 2)} s`;

function stormMarkdown(r: StormResult): string[] {
  const out: string[] = [];
  const tp = r.toPublish;
  out.push(
    '| agents | load average at start | exit 0 | valid bundle on disk | spawn -> published p50 | p90 | p99 | max | first request -> published p50 | p99 | last publish after start | Vault CPU (3 nodes) | intermediates stored | failed attempts (total, agents with any) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    `| ${r.n} | ${fmt(r.load, 1)} | ${r.exit0} | ${r.valid} | ${s(percentile(tp, 50))} | ${s(percentile(tp, 90))} | ${s(percentile(tp, 99))} | ${s(Math.max(...tp))} | ${s(percentile(r.vaultSide, 50))} | ${s(percentile(r.vaultSide, 99))} | ${s(Math.max(...r.publishAt))} | ${r.killedAt === undefined ? `${fmt(r.vaultCpuMs / 1000, 1)} s (${fmt(r.vaultCpuMs / r.n, 0)} ms per agent)` : 'n/a (a node was killed)'} | ${r.certsStored} | ${r.failures.reduce((a, b) => a + b, 0)}, ${r.failures.filter((f) => f > 0).length} |`,
    '',
  );
  if (r.killedAt !== undefined) out.push(`The active node was SIGKILLed ${s(r.killedAt)} after the start, once a third of the agents had published.`, '');
  out.push(`Leader elections during the storm: ${r.elections}.`, '');
  if (r.failureKinds.length) {
    out.push('| failed attempts, by cause (addresses blanked) | count |', '|---|---:|', ...r.failureKinds.slice(0, 8).map(([k, n]) => `| ${k.replace(/\|/g, '\\|')} | ${n} |`), '');
  }
  // Requests per agent by operation, and Vault's latency for each.
  const per = new Map<string, number[]>();
  for (const op of OPS) per.set(op, new Array<number>(r.n).fill(0));
  const lat = new Map<string, number[]>();
  const statuses = new Map<string, Map<string, number>>();
  for (const rec of r.records) {
    const op = operation(rec.method, rec.path);
    if (!per.has(op)) per.set(op, new Array<number>(r.n).fill(0));
    per.get(op)![rec.listener]!++;
    if (rec.status >= 200 && rec.status < 300) (lat.get(op) ?? lat.set(op, []).get(op)!).push(rec.ms);
    const st = statuses.get(op) ?? statuses.set(op, new Map()).get(op)!;
    st.set(String(rec.status), (st.get(String(rec.status)) ?? 0) + 1);
  }
  out.push('| operation | requests | per agent: median | max | answers (HTTP status: count) | Vault latency of the 2xx, p50 | p99 |', '|---|---:|---:|---:|---|---:|---:|');
  for (const [op, counts] of per) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (total === 0) continue;
    const l = lat.get(op) ?? [];
    const st = [...(statuses.get(op) ?? new Map<string, number>())].sort().map(([k, v]) => `${k === '0' ? 'no answer' : k}: ${v}`).join(', ');
    out.push(`| ${op} | ${total} | ${median(counts)} | ${Math.max(...counts)} | ${st} | ${l.length ? `${fmt(percentile(l, 50), 0)} ms` : '-'} | ${l.length ? `${fmt(percentile(l, 99), 0)} ms` : '-'} |`);
  }
  const perAgent = new Array<number>(r.n).fill(0);
  for (const rec of r.records) perAgent[rec.listener]!++;
  out.push('', `Requests per agent, all operations: median ${median(perAgent)}, max ${Math.max(...perAgent)}; ${r.records.length} in all.`, '');
  // Requests per second over time, in 5 s windows.
  const W = 5000;
  const windows = Math.ceil(Math.max(r.wallMs, ...r.records.map((x) => x.at - r.t0)) / W);
  const rows: string[] = [];
  for (let w = 0; w < windows; w++) {
    const inW = r.records.filter((x) => x.at - r.t0 >= w * W && x.at - r.t0 < (w + 1) * W);
    const ok = inW.filter((x) => x.status >= 200 && x.status < 300).length;
    const limited = inW.filter((x) => x.status === 429).length;
    const pub = r.publishAt.filter((p) => p < (w + 1) * W).length;
    if (inW.length === 0 && pub === 0) continue;
    const rate = (n: number) => fmt(n / (W / 1000), 1);
    rows.push(`| ${(w * W) / 1000}-${((w + 1) * W) / 1000} s | ${rate(inW.length)} | ${rate(ok)} | ${rate(limited)} | ${rate(inW.length - ok - limited)} | ${pub} |`);
  }
  out.push('Requests per second at the front, over 5 s windows from the spawn of the first agent (windows before the first request left out):', '', '| window | requests/s | 2xx/s | 429/s | other/s | published so far |', '|---|---:|---:|---:|---:|---:|', ...rows, '');
  return out;
}

/** How far apart the storm's agents will renew: the jitter of renewal-policy.ts on the granted lifetime. */
function spreadMarkdown(r: StormResult): string[] {
  if (r.renewAt.length < 2) return [];
  const spread = Math.max(...r.renewAt) - Math.min(...r.renewAt);
  const issuedSpread = Math.max(...r.issuedAt) - Math.min(...r.issuedAt);
  return [
    `The ${r.renewAt.length} intermediates (CERT_TTL 720h, RENEW_BEFORE a third) were issued within ${s(issuedSpread)} of each other; their`,
    `scheduled renewals (renewAt in each agent's publish line) spread over ${fmt(spread / 60_000, 1)} min: the jitter moves each renewal`,
    `earlier by a random share of min(${JITTER_SHARE * 100}% of the renewal window, ${MAX_JITTER_MS / 60_000} min). For a 1,000-pod fleet that restarted at once this`,
    `is ${fmt(1000 / (MAX_JITTER_MS / 1000), 1)} renewals per second at most, 20 days later, instead of 1,000 in the same second.`,
    '',
  ];
}

interface LifetimeStep {
  step: string;
  ops: Map<string, number>;
}

/** One `run` agent's lifetime, request by request, through its own front port. */
async function podLifetime(c: RaftCluster, bundle: Launch): Promise<LifetimeStep[]> {
  const dir = fs.mkdtempSync(path.join(certBase(), 'ivagent-pod-'));
  const front = await startHttpFront({ targets: c.addrs });
  const api = await c.api();
  const steps: LifetimeStep[] = [];
  let mark = 0;
  const take = (step: string) => {
    const ops = new Map<string, number>();
    for (const r of front.records.slice(mark)) ops.set(operation(r.method, r.path), (ops.get(operation(r.method, r.path)) ?? 0) + 1);
    mark = front.records.length;
    steps.push({ step, ops });
  };
  const role = `auth/jwt/role/${DEV_ROLE}`;
  // Production: a 1h token and a renewal every 20 days, so the token has long expired at each renewal.
  // A 10 s token lets that happen within the run.
  const TOKEN_TTL_S = 10;
  let a: AgentProcess | undefined;
  try {
    await api.call('POST', role, { role_type: 'jwt', token_ttl: `${TOKEN_TTL_S}s` });
    a = startAgent(bundle, ['run'], agentEnv({ ...c.env, VAULT_ADDR: front.urls[0]!, CERT_DIR: dir, KEY_TYPE: KEY_TYPE }), { keepLines: true });
    await a.waitPublished(1, 120_000);
    const loggedInBy = performance.now();
    take('pod start (`run`: login, first issuance)');
    a.child.kill('SIGHUP');
    await a.waitPublished(2, 120_000);
    take('a renewal while the token is valid (a rotation soon after start)');
    const expired = loggedInBy + TOKEN_TTL_S * 1000 + 500 - performance.now();
    if (expired > 0) await new Promise((r) => setTimeout(r, expired));
    a.child.kill('SIGHUP');
    await a.waitPublished(3, 120_000);
    take('a renewal after the token expired (every scheduled renewal in production)');
    await a.stop();
    take('pod stop (SIGTERM)');
  } finally {
    await a?.stop();
    await front.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await api.call('POST', role, { role_type: 'jwt', token_ttl: '1h' }).catch((err: unknown) => log(`could not restore the role's token_ttl: ${String(err)}`));
  }
  return steps;
}

function lifetimeMarkdown(steps: LifetimeStep[]): string[] {
  const ops = [...new Set(steps.flatMap((s) => [...s.ops.keys()]))];
  return [
    `| step | ${ops.join(' | ')} | total |`,
    `|---|${ops.map(() => '---:').join('|')}|---:|`,
    ...steps.map((st) => `| ${st.step} | ${ops.map((o) => st.ops.get(o) ?? 0).join(' | ')} | ${[...st.ops.values()].reduce((a, b) => a + b, 0)} |`),
    '',
  ];
}

async function main(): Promise<void> {
  const bin = findVaultBinary({ vaultBin: process.env.VAULT_BIN, pathEnv: process.env.PATH, projectRoot: PROJECT_ROOT, install: true, log });
  const machine = describeMachine(bin);
  log('building the bundle');
  const bundles = buildBundles();
  // Vault's side is what this measures: how the agent starts (bundle or snapshot) does not change its requests.
  const launch = bundleLaunch(nodeBinary(undefined), bundles.plain);
  log(`starting a 3-node OpenBao Raft cluster (${multiplierText})`);
  const c = await startRaftCluster({ bin, performanceMultiplier: MULTIPLIER, log: (m) => log(`cluster: ${m}`) });
  const md: string[] = [];
  try {
    const quiet = await storm(c, launch, 'storm');
    let limited: StormResult | undefined;
    if (QUOTA > 0) {
      // A quota on the whole API (sys/health is exempt); each node enforces it on what it receives.
      await (await c.api()).call('POST', 'sys/quotas/rate-limit/storm', { rate: QUOTA, interval: '1s' });
      try {
        limited = await storm(c, launch, `storm under a ${QUOTA}/s quota`);
      } finally {
        await adminCall(c, 'DELETE', 'sys/quotas/rate-limit/storm');
      }
    }
    let killed: StormResult | undefined;
    if (args.kill === true) {
      killed = await storm(c, launch, 'storm with a failover', { killAfter: Math.ceil(N / 3) });
      const dead = c.nodes.find((n) => !n.proc);
      if (dead) await c.restart(dead);
    }
    log('one pod lifetime');
    const lifetime = await podLifetime(c, launch);

    md.push(
      `### ${machine.date}: ${N} agents (\`${command}\`)`,
      '',
      `A 3-node OpenBao Raft cluster on loopback (test/helpers/raft-cluster.ts, ${multiplierText}), ${N} \`init\``,
      `processes of the built bundle started at once (KEY_TYPE ${KEY_TYPE}, CERT_TTL 720h), each through its own port of an L7`,
      'round-robin front over the three nodes (standbys forward writes to the active node), which records every request.',
      '',
      ...machineMarkdown(machine),
      '',
      `#### ${N} agents at once`,
      '',
      ...stormMarkdown(quiet),
      ...spreadMarkdown(quiet),
    );
    if (limited) {
      md.push(
        `#### ${N} agents at once, Vault rate-limited to ${QUOTA} requests/s per node (OpenBao rate-limit quota)`,
        '',
        'A rejected request (429) fails that attempt; `init` retries with capped exponential backoff and equal jitter (0.5-1 s,',
        '1-2 s, 2-4 s, then 2.5-5 s while nothing is published), so the retries spread out instead of coming back in waves.',
        '',
        ...stormMarkdown(limited),
      );
    }
    if (killed) md.push(`#### ${N} agents at once, the active node killed mid-storm`, '', ...stormMarkdown(killed));
    md.push('#### One pod, request by request (`run`)', '', ...lifetimeMarkdown(lifetime));
    const run = md.join('\n');
    console.log(run);
    if (args.write === true) {
      const previous = readSection('storm').replace(/^## Rollout storm[\s\S]*?(?=^### |$(?![\s\S]))/m, '').trim();
      writeSection('storm', [...SECTION_HEADER, run, previous].filter(Boolean).join('\n\n'));
      log('added this run on top of the storm section of bench/RESULTS.md');
    }
  } finally {
    await c.stop();
    bundles.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
