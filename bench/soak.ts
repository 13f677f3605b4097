/**
 * `npm run soak`: >= 1000 renewals in compressed time through the real agent process against a real
 * OpenBao, watching for leaks. The agent runs as in production (`node <bundle> run`) with
 * MIN_PUBLISH_INTERVAL=0 and ROTATE_ENDPOINT=true; renewals are driven back to back with POST /rotate,
 * each one waited for by its 'published a new intermediate' log line. Every --sample-every renewals it
 * records VmRSS (/proc/<pid>/status), process_resident_memory_bytes and V8 heap figures (/metrics),
 * open fds (/proc/<pid>/fd) and the number of generations under .gen.
 *
 * Warm-up ends at the first sample after --warmup renewals (100) that follows two major GCs during the
 * renewals: before V8's first full collections its heap only grows, which says nothing about leaks. The run goes on past
 * --renewals (1000) until --after-warmup renewals (1000) were measured after the warm-up, at most
 * --max-renewals (5000). Both figures are printed: RSS after 100 renewals -> end, and warm-up -> end.
 *
 * Targets (exit 1 when one is missed): RSS growth after warm-up < 5 MB, fds flat, every renewal
 * succeeded, the cert dir verifies as istiod would (checkCertDir), .gen bounded by what the grace
 * period keeps, clean shutdown. Prints the figures and adds them on top of bench/RESULTS.md's soak
 * section (--no-write: print only). --quick: 200 renewals, 50 warm-up, 200 after it (with default
 * heap settings V8's second major GC comes after ~900 renewals, so a quick run still does ~1100).
 * The agent starts as the image starts it (image/Dockerfile's snapshot stage and ENTRYPOINT, including its
 * Node.js flags) on --node <path> (default: the Node.js running this script); --bundle runs
 * `node <bundle.mjs>` instead; --node-args "<flags>" replaces the ENTRYPOINT's Node.js flags (or gives
 * the bundle some), to try heap settings.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkCertDir } from '../src/agent/check-dir.js';
import { GENERATION_GRACE_MS } from '../src/store/cert-dir-writer.js';
import { GEN_DIR, GENERATION_PATTERN } from '../src/store/layout.js';
import { agentEnv, metricsUrl, postRotate, sample, scrape, startAgent } from './lib/agent.js';
import { certBase, parseArgs } from './lib/args.js';
import { buildBundles, bundleLaunch, imageLaunch } from './lib/bundles.js';
import { nodeBinary } from './lib/launch.js';
import { describeMachine } from './lib/machine.js';
import { startBao } from './lib/openbao.js';
import { memory, openFds } from './lib/proc.js';
import { readSection, writeSection } from './lib/results.js';
import { fmt, mib, percentile } from './lib/stats.js';

const args = parseArgs(process.argv.slice(2), {
  quick: 'flag',
  renewals: 'number',
  warmup: 'number',
  'after-warmup': 'number',
  'max-renewals': 'number',
  'sample-every': 'number',
  'node-args': 'string',
  bundle: 'flag',
  'no-write': 'flag',
  node: 'string',
});
const quick = args.quick === true;
const RENEWALS = (args.renewals as number | undefined) ?? (quick ? 200 : 1000);
const WARMUP = Math.min((args.warmup as number | undefined) ?? (quick ? 50 : 100), RENEWALS);
/** Renewals measured after the steady-state warm-up; the run goes on past RENEWALS until they are done. */
const AFTER_WARMUP = (args['after-warmup'] as number | undefined) ?? (quick ? 200 : 1000);
const MAX_RENEWALS = Math.max(RENEWALS, (args['max-renewals'] as number | undefined) ?? (quick ? 2000 : 5000));
const EVERY = Math.max(1, (args['sample-every'] as number | undefined) ?? (quick ? 25 : 50));
const MAX_GROWTH_BYTES = 5_000_000;
/** Major GCs (nodejs_gc_duration_seconds_count{kind="major"}) that end the warm-up. */
const STEADY_MAJOR_GCS = 2;
/** fds may differ by a connection or two (keep-alive sockets come and go); a leak grows with N. */
const FD_TOLERANCE = 2;
/** Node.js flags for the agent instead of the image's (e.g. --node-args="--max-semi-space-size=2"). */
const NODE_ARGS = typeof args['node-args'] === 'string' ? args['node-args'].split(/\s+/).filter(Boolean) : undefined;

const log = (m: string) => console.error(`[soak] ${m}`);

interface Sample {
  renewals: number;
  atS: number;
  vmRss: number;
  rssAnon: number;
  promRss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  majorGcs: number;
  fds: number;
  generations: number;
}

function generations(certDir: string): number {
  try {
    return fs.readdirSync(path.join(certDir, GEN_DIR)).filter((e) => GENERATION_PATTERN.test(e)).length;
  } catch {
    return 0;
  }
}

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

async function main(): Promise<number> {
  log('building the bundle with scripts/build.mjs into a scratch folder');
  const b = buildBundles();
  const node = nodeBinary(args.node as string | undefined);
  const launch = args.bundle ? bundleLaunch(node, b.minified, NODE_ARGS) : imageLaunch(node, b.minified, b.scratch('image'), NODE_ARGS);
  const flags = launch.argv.slice(1, args.bundle ? -1 : launch.argv.indexOf('--snapshot-blob'));
  const how = `${args.bundle ? '`node bundle.mjs`' : 'as the image starts it (snapshot)'}${flags.length ? `, Node.js flags ${flags.join(' ')}` : ', no Node.js flags'}`;
  const certDir = fs.mkdtempSync(path.join(certBase(), 'ivagent-soak-'));
  let bao: Awaited<ReturnType<typeof startBao>> | undefined;
  let agent: ReturnType<typeof startAgent> | undefined;
  try {
    bao = await startBao();
    const { bin, env: dev } = bao;
    const machine = describeMachine(bin, node.version);
    log(`OpenBao ${machine.bao} at ${dev.server.addr}; cert dir ${certDir}; ${RENEWALS} renewals, warm-up ${WARMUP}, sample every ${EVERY}`);
    log(`agent on Node.js ${node.version}, ${how}`);
    agent = startAgent(
      launch,
      ['run'],
      agentEnv({ ...dev.env, CERT_DIR: certDir, KEY_TYPE: 'ec', CERT_TTL: '8760h', METRICS_ADDR: '127.0.0.1:0', ISTIOD_METRICS_URL: '', MIN_PUBLISH_INTERVAL: '0', ROTATE_ENDPOINT: 'true' }),
    );
    const a = agent;
    const base = await metricsUrl(a);
    await a.waitPublished(1);
    const t0 = performance.now();
    const samples: Sample[] = [];
    const take = async (renewals: number) => {
      const text = await scrape(base);
      const m = memory(a.pid);
      samples.push({
        renewals,
        atS: (performance.now() - t0) / 1000,
        vmRss: m.rss,
        rssAnon: m.rssAnon,
        promRss: sample(text, 'process_resident_memory_bytes') ?? NaN,
        heapUsed: sample(text, 'nodejs_heap_size_used_bytes') ?? NaN,
        heapTotal: sample(text, 'nodejs_heap_size_total_bytes') ?? NaN,
        external: sample(text, 'nodejs_external_memory_bytes') ?? NaN,
        majorGcs: sample(text, 'nodejs_gc_duration_seconds_count', { kind: 'major' }) ?? 0,
        fds: openFds(a.pid),
        generations: generations(certDir),
      });
    };
    await take(0);
    const walls: number[] = [];
    const publishedAt: number[] = [];
    // Steady state: V8 lets the old generation grow until its first full (major) GC, which at this
    // allocation rate comes after several hundred renewals, and sizes the heap from the live data at
    // each one; RSS measured before that mostly shows heap growth, not a leak. Warm-up ends at the
    // first sample past WARMUP renewals taken after STEADY_MAJOR_GCS major GCs during the renewals;
    // AFTER_WARMUP renewals are measured from there, so a leak still shows as growth.
    let steady: Sample | undefined;
    const done = (i: number) => i >= MAX_RENEWALS || (i >= RENEWALS && steady !== undefined && i - steady.renewals >= AFTER_WARMUP);
    let i = 0;
    while (!done(i)) {
      i++;
      const before = a.published;
      const s = performance.now();
      await postRotate(base);
      await a.waitPublished(before + 1, 60_000);
      walls.push(performance.now() - s);
      publishedAt.push(a.lastPublishAt);
      if (i % EVERY === 0 || i === WARMUP || done(i)) {
        await take(i);
        const last = samples.at(-1)!;
        if (!steady && i >= WARMUP && last.majorGcs >= samples[0]!.majorGcs + STEADY_MAJOR_GCS) steady = last;
      }
      if (i % 100 === 0) log(`${i} renewals, VmRSS ${mib(samples.at(-1)!.vmRss)} MiB, fds ${samples.at(-1)!.fds}${steady ? `, steady state since ${steady.renewals}` : ''}`);
    }
    if (samples.at(-1)!.renewals !== i) await take(i);
    const durationS = (performance.now() - t0) / 1000;

    // Counters must agree with the log: every renewal a success, no failure of any kind.
    const text = await scrape(base);
    const successes = sample(text, 'istiod_vault_agent_issuances_total', { result: 'success' }) ?? NaN;
    let failures = 0;
    for (const line of text.split('\n')) {
      const m = /^istiod_vault_agent_issuances_total\{[^}]*result="failure"[^}]*\}\s+(\S+)/.exec(line);
      if (m) failures += Number(m[1]);
    }
    await a.stop();
    const exit = await a.exit;

    const check = await checkCertDir(certDir, Date.now(), undefined);
    const gensEnd = generations(certDir);
    // What the writer may keep: every generation replaced less than the grace period before the last
    // publish, plus the current and the previous one.
    const last = publishedAt.at(-1)!;
    const recent = publishedAt.filter((t) => last - t <= GENERATION_GRACE_MS + 1000).length;
    const genBound = recent + 2;

    const early = samples.find((s) => s.renewals === WARMUP)!;
    // Without a major GC in the whole run (a cap too low), fall back to the fixed warm-up.
    const warm = steady ?? early;
    const end = samples.at(-1)!;
    const growth = end.vmRss - warm.vmRss;
    const promGrowth = end.promRss - warm.promRss;
    const earlyGrowth = end.vmRss - early.vmRss;
    const afterWarm = samples.filter((s) => s.renewals >= warm.renewals);
    const perThousand = slope(afterWarm.map((s) => [s.renewals, s.vmRss])) * 1000;
    const fdsMax = Math.max(...afterWarm.map((s) => s.fds));
    const pct = (p: number) => fmt(percentile(walls, p), 1);

    const targets = [
      {
        name: `renewals done >= ${RENEWALS}, all successful`,
        met: walls.length >= RENEWALS && successes === walls.length + 1 && failures === 0,
        detail: `${walls.length} driven; issuances_total success ${successes} (incl. the first issuance), failure ${failures}`,
      },
      {
        name: `RSS growth over >= ${AFTER_WARMUP} renewals after warm-up < 5 MB`,
        met: steady !== undefined && end.renewals - warm.renewals >= AFTER_WARMUP && growth < MAX_GROWTH_BYTES && promGrowth < MAX_GROWTH_BYTES,
        detail: steady && end.renewals - warm.renewals < AFTER_WARMUP
          ? `only ${end.renewals - warm.renewals} renewals after the warm-up (renewal ${warm.renewals}), ${AFTER_WARMUP} needed: raise --max-renewals (${MAX_RENEWALS})`
          : steady
          ? `VmRSS ${fmt(growth / 1e6, 2)} MB, process_resident_memory_bytes ${fmt(promGrowth / 1e6, 2)} MB over ${end.renewals - warm.renewals} renewals (warm-up ended at renewal ${warm.renewals}, after ${STEADY_MAJOR_GCS} major GCs)`
          : `fewer than ${STEADY_MAJOR_GCS} major GCs within ${MAX_RENEWALS} renewals: steady state not reached; growth from renewal ${WARMUP}: ${fmt(growth / 1e6, 2)} MB`,
      },
      { name: 'open fds flat', met: end.fds <= warm.fds + FD_TOLERANCE && fdsMax <= warm.fds + FD_TOLERANCE, detail: `${warm.fds} at warm-up, ${end.fds} at the end, max ${fdsMax} (tolerance ${FD_TOLERANCE})` },
      { name: 'cert dir valid (checkCertDir)', met: check.ok, detail: check.lines[0] ?? '' },
      { name: '.gen bounded', met: gensEnd <= genBound, detail: `${gensEnd} generations at the end (bound ${genBound}: ${recent} published within the ${GENERATION_GRACE_MS / 1000} s grace period + 2)` },
      { name: 'clean shutdown', met: exit.code === 0, detail: `exit ${exit.code ?? exit.signal}` },
    ];

    const row = (c: (string | number)[]) => `| ${c.join(' | ')} |`;
    const md: string[] = [
      `### ${machine.date}: Node.js ${machine.node}, ${how}, ${walls.length} renewals${quick ? ' (--quick)' : ''}, ${targets.every((t) => t.met) ? 'all targets met' : 'TARGETS MISSED'}`,
      '',
      `${machine.cpu}, ${machine.cores} cores, ${machine.ramGiB} GiB, Linux ${machine.kernel}, Node.js ${machine.node}, ${machine.bao.replace(/ \(.*/, '')}; EC P-256, MIN_PUBLISH_INTERVAL=0, cert dir on ${certBase()}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')} at the end.`,
      '',
      row(['figure', 'value']),
      row(['---', '---']),
      row(['renewals, duration', `${walls.length} in ${fmt(durationS, 1)} s (${fmt(walls.length / durationS, 1)}/s)`]),
      row(['per-renewal wall time (POST /rotate to the publish log line), ms', `p50 ${pct(50)}, p90 ${pct(90)}, p99 ${pct(99)}, max ${fmt(Math.max(...walls), 1)}`]),
      row([`VmRSS after ${WARMUP} renewals -> end`, `${mib(early.vmRss)} -> ${mib(end.vmRss)} MiB (growth ${fmt(earlyGrowth / 1e6, 2)} MB${warm.renewals > WARMUP ? ', mostly V8 growing its heap before its first major GCs' : ''})`]),
      row([`VmRSS at warm-up (renewal ${warm.renewals}${steady ? `, first sample after ${STEADY_MAJOR_GCS} major GCs` : ''}) -> end`, `${mib(warm.vmRss)} -> ${mib(end.vmRss)} MiB (growth ${fmt(growth / 1e6, 2)} MB; trend ${fmt(perThousand / 1e6, 2)} MB per 1000 renewals)`]),
      row(['process_resident_memory_bytes warm-up -> end', `${mib(warm.promRss)} -> ${mib(end.promRss)} MiB (growth ${fmt(promGrowth / 1e6, 2)} MB)`]),
      row(['peak VmRSS during the run', `${mib(Math.max(...samples.map((x) => x.vmRss)))} MiB`]),
      row(['RssAnon; V8 heap used; V8 heap total, warm-up -> end', `${mib(warm.rssAnon)} -> ${mib(end.rssAnon)} MiB; ${mib(warm.heapUsed)} -> ${mib(end.heapUsed)} MiB; ${mib(warm.heapTotal)} -> ${mib(end.heapTotal)} MiB`]),
      row(['open fds warm-up -> end (max after warm-up)', `${warm.fds} -> ${end.fds} (${fdsMax})`]),
      row(['generations under .gen at the end', `${gensEnd} (bound ${genBound})`]),
      row(['cert dir check', check.ok ? 'valid' : `INVALID: ${check.lines.join(' ')}`]),
      '',
      ...targets.map((t) => `- ${t.met ? 'MET' : 'MISSED'}: ${t.name}: ${t.detail}`),
      '',
      '<details><summary>samples</summary>',
      '',
      row(['renewals', 't (s)', 'VmRSS (MiB)', 'prom RSS (MiB)', 'RssAnon (MiB)', 'heap used (MiB)', 'heap total (MiB)', 'external (MiB)', 'major GCs', 'fds', '.gen']),
      row(['---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']),
      ...samples.map((s) => row([s.renewals, fmt(s.atS, 1), mib(s.vmRss), mib(s.promRss), mib(s.rssAnon), mib(s.heapUsed), mib(s.heapTotal), mib(s.external), s.majorGcs, s.fds, s.generations])),
      '',
      '</details>',
    ];
    const entry = md.join('\n');
    console.log(entry);
    if (args['no-write']) {
      log('--no-write: bench/RESULTS.md left alone');
    } else {
      const previous = readSection('soak').replace(/^## Soak[^\n]*\n+/, '');
      writeSection('soak', `## Soak (\`npm run soak\`), newest first\n\n${entry}\n\n${previous}`);
      log('added the run to bench/RESULTS.md (soak section)');
    }
    const missed = targets.filter((t) => !t.met);
    for (const t of missed) log(`target missed: ${t.name}: ${t.detail}`);
    return missed.length ? 1 : 0;
  } finally {
    await agent?.stop();
    await bao?.env.stop();
    fs.rmSync(certDir, { recursive: true, force: true });
    b.cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`[soak] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(2);
  },
);
