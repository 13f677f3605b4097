/**
 * The active node of a real 3-node OpenBao Raft cluster dies (SIGKILL) at the worst moments for the
 * agent: while its sign request is on the wire during a renewal, and while its very first login is on
 * the wire (`run` with nothing published yet). The agent reaches Vault through a round-robin front over
 * the three nodes (an L4 load balancer), through the node list in VAULT_ADDR, or through one standby.
 * The kill is placed by the cluster's doors (test/helpers/raft-cluster.ts) the moment the request
 * reaches a node; a reader judges the cert dir throughout.
 *
 * What must hold: the renewal (or first issuance) completes, the bundle on disk is never invalid or
 * expired, no extra login, failures name the address that failed, and the agent publishes within a few
 * seconds of the cluster having a leader again (seen as a node answering sys/health 200). The figures
 * (retries, kill -> leader -> publish) are printed at the end.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { cleanEnv, startAgent, type AgentRun, type LogLine } from '../helpers/agent-process.js';
import { watchBundle } from '../helpers/bundle-watch.js';
import { useRaftCluster, type RaftCluster, type RaftNode } from '../helpers/raft-cluster.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { vaultBin } from '../helpers/tools.js';

/**
 * Raft timing: 1 (fast elections, ~2-3 s) keeps the suite short; HA_PERFORMANCE_MULTIPLIER=0 measures
 * OpenBao's default (5: elections of 10-25 s here), with lifetimes long enough to outlast them.
 */
const MULTIPLIER = Number(process.env.HA_PERFORMANCE_MULTIPLIER ?? 1);
const LIFETIME = MULTIPLIER === 1 ? { CERT_TTL: '30s', RENEW_BEFORE: '20s' } : { CERT_TTL: '90s', RENEW_BEFORE: '60s' };
/** HA_FIGURES=<file> appends each case's figures there as a JSON line (for docs/operations.md). */
const FIGURES_FILE = process.env.HA_FIGURES;

const bin = vaultBin();
const ha = bin ? useRaftCluster({ bin, performanceMultiplier: MULTIPLIER }) : undefined;

/** From the moment a node answers sys/health 200 again to the agent's publish (issuance included). */
const RECOVERY_BOUND_MS = 10_000;
const PUBLISHED = 'published a new intermediate';

type Topology = 'front' | 'list' | 'standby';
type Phase = 'renewal' | 'login';

interface Figures {
  topology: Topology;
  phase: Phase;
  killToLeaderMs: number;
  leaderToPublishMs: number;
  failedAttempts: number;
  /** The error code of each failed attempt, in order. */
  causes: string[];
  loginsAfterKill: number;
}
const figures: Figures[] = [];

afterAll(async () => {
  if (!figures.length) return;
  if (FIGURES_FILE) await fs.appendFile(FIGURES_FILE, figures.map((f) => `${JSON.stringify({ ...f, multiplier: MULTIPLIER })}\n`).join(''));
  const rows = figures.map((f) => `| ${f.topology} | ${f.phase} | ${(f.killToLeaderMs / 1000).toFixed(2)} s | ${(f.leaderToPublishMs / 1000).toFixed(2)} s | ${f.failedAttempts} (${f.causes.join(', ')}) | ${f.loginsAfterKill} |`);
  console.log(['| VAULT_ADDR | killed during | kill -> leader | leader -> publish | failed attempts | logins after kill |', '|---|---|---:|---:|---|---:|', ...rows].join('\n'));
});

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_r, reject) => (t = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

async function addressFor(c: RaftCluster, topology: Topology, standby: RaftNode): Promise<string> {
  if (topology === 'list') return c.addrs.join(',');
  if (topology === 'standby') return standby.addr;
  const front = await startTcpProxy(c.addrs);
  onTestFinished(() => front.close());
  return front.url;
}

async function failover(topology: Topology, phase: Phase): Promise<void> {
  const c = ha!.get();
  const active = await c.activeNode();
  const standby = c.nodes.find((n) => n !== active)!;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-ha-'));
  const requests: { node: RaftNode; method: string; path: string; at: number }[] = [];
  let armed = phase === 'login';
  let killed: { at: number; line: number } | undefined;
  let onKill = () => undefined as void;
  const killedNow = new Promise<void>((r) => (onKill = r));
  /** Set once the agent runs (the hook reads its line count). */
  const agentRef: { run?: AgentRun } = {};
  const trigger = phase === 'login' ? /^\/v1\/auth\/jwt\/login$/ : /\/sign-intermediate$/;
  c.onRequest = (node, method, p) => {
    requests.push({ node, method, path: p, at: Date.now() });
    if (armed && !killed && method === 'POST' && trigger.test(p)) {
      c.kill(active);
      killed = { at: Date.now(), line: agentRef.run?.lines.length ?? 0 };
      onKill();
    }
  };
  const watch = watchBundle(dir);
  onTestFinished(async () => {
    c.onRequest = undefined;
    agentRef.run?.kill('SIGKILL');
    await agentRef.run?.exit;
    await watch.stop();
    await fs.rm(dir, { recursive: true, force: true });
    if (!active.proc) await c.restart(active);
  });

  const addr = await addressFor(c, topology, standby);
  // Renewal ~10 s after issuance (OpenBao backdates notBefore by 30 s: a 60 s lifetime, due 20 s before its end).
  const a = (agentRef.run = startAgent(['run'], cleanEnv({ ...c.env, VAULT_ADDR: addr, CERT_DIR: dir, KEY_TYPE: 'ec', ...LIFETIME })));
  let before: LogLine | undefined;
  if (phase === 'renewal') {
    before = await a.waitFor((l) => l.msg === PUBLISHED, 60_000);
    armed = true;
  }
  await withTimeout(killedNow, 60_000, `no ${phase} request reached a node`);
  const leader = await c.waitForNewLeader(active, 60_000);
  const leaderAt = Date.now() - (performance.now() - leader.seenAt);
  const exited = a.exit.then(({ code }) => Promise.reject(new Error(`the agent exited (code ${code}) before publishing:\n${a.lines.slice(killed!.line).map((l) => l.msg).join('\n')}`)));
  const published = await Promise.race([a.waitFor((l) => l.msg === PUBLISHED, 90_000, killed!.line), exited]);
  await watch.stop();

  const publishedAt = Date.parse(String(published.time));
  const after = a.lines.slice(killed!.line);
  const failures = after.filter((l) => l.msg.startsWith('issuance failed'));
  const loginsAfterKill = requests.filter((r) => r.at >= killed!.at && r.path === '/v1/auth/jwt/login').length - (phase === 'login' ? 1 : 0);
  figures.push({ topology, phase, killToLeaderMs: leaderAt - killed!.at, leaderToPublishMs: publishedAt - leaderAt, failedAttempts: failures.length, causes: failures.map((f) => String((f.err as { code?: unknown } | undefined)?.code ?? f.reason)), loginsAfterKill });

  // The bundle on disk was valid at every check, and the renewal was not lost.
  expect(watch.problems).toEqual([]);
  expect(watch.checks).toBeGreaterThan(10);
  if (before) expect(published.serial).not.toBe(before.serial);
  expect(a.child.exitCode).toBeNull();
  // No log line blames a live address: a refused connection names the dead node (or a redirect to it).
  for (const f of failures) {
    const m = /nothing listens at (?:VAULT_ADDR \()?(http:\/\/[\d.:]+)/.exec(f.msg);
    if (m) expect(m[1], f.msg).toBe(active.addr);
  }
  // The token outlives its node (Raft replicated it): a renewal needs no new login.
  if (phase === 'renewal') expect(loginsAfterKill).toBe(0);
  expect(publishedAt - leaderAt, `recovered ${publishedAt - leaderAt} ms after the new leader; failures:\n${failures.map((f) => f.msg).join('\n')}`).toBeLessThan(RECOVERY_BOUND_MS);
}

describe.skipIf(!bin)('failover of the active OpenBao node', () => {
  it.each([
    { via: 'a round-robin front over the nodes', topology: 'front', phase: 'renewal' },
    { via: 'the node list in VAULT_ADDR', topology: 'list', phase: 'renewal' },
    { via: 'one standby node', topology: 'standby', phase: 'renewal' },
    { via: 'a round-robin front over the nodes', topology: 'front', phase: 'login' },
    { via: 'the node list in VAULT_ADDR', topology: 'list', phase: 'login' },
  ] as const)('through $via, killed during a $phase: completes, bundle always valid, recovers within seconds of the new leader', async ({ topology, phase }) => {
    await failover(topology, phase);
  }, 180_000);
});
