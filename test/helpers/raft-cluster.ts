/**
 * A real highly available OpenBao for the HA tests and the storm bench: three `bao server` processes on
 * loopback with integrated Raft storage and `retry_join`, one config file per node in a temp dir,
 * initialised with one key share, every node unsealed, all three voters (so one may die and the other
 * two still elect a leader), then configured like the dev environment (PKI at pki/, the signing policy,
 * jwt auth; src/dev/dev-environment.ts) through the active node, and waited for until every standby
 * serves that configuration (standbys read locally and lag the active a little).
 *
 * `performanceMultiplier` 1 (the default here; production's recommendation too) makes an election take
 * ~2-3 s instead of ~10-15 s with OpenBao's default of 5. Every wait polls an observable state
 * (sys/health, the autopilot state, a read on each node), never a fixed sleep. The unseal key and root
 * token live only in this process's memory and travel only in HTTP bodies and headers, never in argv.
 *
 * Each node's advertised address (api_addr: what sys/leader names and a standby redirects to) is a
 * "door": a pass-through TCP proxy to the node's own listener that lives and dies with the node (a killed
 * node's door closes its port and drops its connections, so clients see exactly what a dead node gives:
 * ECONNREFUSED, or a reset mid-request). Doors let a test see every request a node gets, and act at the
 * exact moment one arrives (`onRequest`), whatever address the agent was given. Raft, joins and request
 * forwarding between nodes use the nodes' own ports.
 */
import { afterAll, beforeAll } from 'vitest';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { adminApi, type AdminApi } from '../../src/dev/admin-api.js';
import { freePort } from '../../src/dev/dev-server.js';
import { DEV_ROLE, prepareAgentAccess, type AgentAccess } from '../../src/dev/dev-environment.js';
import { startServerProcess, stopWhenTestFinishes, type ServerProcess } from './server-process.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
import { notYet, waitFor } from './wait.js';

export interface RaftNode {
  /** n1, n2, n3 (also its Raft node_id). */
  readonly name: string;
  /** Its api_addr (its door): what sys/leader names and what a standby redirects to. */
  readonly addr: string;
  /** The node's own listener behind the door. */
  readonly innerAddr: string;
  /** The running process, undefined while killed. */
  proc: ServerProcess | undefined;
  door: TcpProxy | undefined;
}

export interface RaftClusterOptions {
  bin: string;
  /** storage "raft" performance_multiplier; 0 leaves OpenBao's default (5). */
  performanceMultiplier?: number;
  /** Extra lines for every node's config file (e.g. `disable_standby_reads = true`). */
  extraConfig?: string;
  startTimeoutMs?: number;
  /** Progress lines (the bench prints them); default silent. */
  log?: (msg: string) => void;
}

export interface RaftCluster {
  readonly nodes: readonly RaftNode[];
  /** Every node's address, in order (a VAULT_ADDR node list). */
  readonly addrs: readonly string[];
  /**
   * Called synchronously with every HTTP request line a node's door sees, before it reaches the node
   * (the test's hook: kill the active node the moment a sign request arrives...).
   */
  onRequest: ((node: RaftNode, method: string, path: string) => void) | undefined;
  /** PKI, policy, jwt role, SA-like token file: what the agent logs in and signs with. */
  readonly access: AgentAccess;
  /** Settings for the agent without VAULT_ADDR (jwt auth). */
  readonly env: Record<string, string>;
  /** An admin client (root token) talking to `node` (default: the active node, waited for). */
  api(node?: RaftNode): Promise<AdminApi>;
  /** sys/health status of one node ('down' when nothing answers). */
  health(node: RaftNode): Promise<number | 'down'>;
  /** The node answering sys/health 200, waiting (polling every node) until there is one. */
  activeNode(timeoutMs?: number): Promise<RaftNode>;
  /**
   * Waits for a node other than `not` to answer sys/health 200 and says when it was first seen
   * (performance.now()). This is "the cluster has a leader again" as a client can observe it.
   */
  waitForNewLeader(not: RaftNode, timeoutMs?: number): Promise<{ node: RaftNode; seenAt: number }>;
  /** SIGKILLs `node` and closes its door at once (synchronous, for use inside a request hook). */
  kill(node: RaftNode): void;
  /** Finds the active node, SIGKILLs it and returns it. */
  killActive(): Promise<RaftNode>;
  /** Starts a killed node again, unseals it, and waits until it is a healthy voter again. */
  restart(node: RaftNode): Promise<void>;
  /** Every line any node process wrote (killed ones included), for counting events such as elections. */
  logLines(): string[];
  /** Waits until autopilot reports every node a healthy voter (failure tolerance 1). */
  waitForVoters(timeoutMs?: number): Promise<void>;
  /** Stops every node and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

/** GET with no token and a short timeout: the status code, or 'down'. */
function status(addr: string, urlPath: string): Promise<number | 'down'> {
  return new Promise((resolve) => {
    const req = http.get(`${addr}/v1/${urlPath}`, { timeout: 2000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve('down'));
    req.on('timeout', () => req.destroy());
  });
}

function nodeConfig(o: { dir: string; name: string; addr: string; port: number; clusterPort: number; peers: readonly string[]; multiplier: number; extra: string }): string {
  return [
    'storage "raft" {',
    `  path    = "${path.join(o.dir, o.name, 'data')}"`,
    `  node_id = "${o.name}"`,
    ...(o.multiplier > 0 ? [`  performance_multiplier = ${o.multiplier}`] : []),
    ...o.peers.map((p) => `  retry_join { leader_api_addr = "${p}" }`),
    '}',
    'listener "tcp" {',
    `  address         = "127.0.0.1:${o.port}"`,
    `  cluster_address = "127.0.0.1:${o.clusterPort}"`,
    '  tls_disable     = true',
    '}',
    `api_addr      = "${o.addr}"`,
    `cluster_addr  = "http://127.0.0.1:${o.clusterPort}"`,
    'disable_mlock = true',
    o.extra,
    '',
  ].join('\n');
}

/**
 * Starts and configures the cluster. Started inside a test it is stopped when the test finishes; in
 * beforeAll, stop it in afterAll. On any failure everything started is stopped before the error. The
 * nine ports are picked free and released before the nodes bind them; on a busy machine another process
 * can take one in between, so a start that fails on a taken port is tried again on new ones.
 */
export async function startRaftCluster(o: RaftClusterOptions): Promise<RaftCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(o);
    } catch (err) {
      if (attempt >= 3 || !/address already in use|EADDRINUSE/.test(String((err as Error).message))) throw err;
      o.log?.(`a port was taken before a node could bind it; starting again on new ports (${(err as Error).message.split('\n')[0]})`);
    }
  }
}

async function startOnce(o: RaftClusterOptions): Promise<RaftCluster> {
  const timeoutMs = o.startTimeoutMs ?? 120_000;
  const say = o.log ?? (() => undefined);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-raft-'));
  // Per node: door (advertised), the node's own API listener, its cluster port.
  const ports: number[] = [];
  while (ports.length < 9) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const doorPort = (i: number) => ports[3 * i]!;
  const addrs = [0, 1, 2].map((i) => `http://127.0.0.1:${doorPort(i)}`);
  const nodes: RaftNode[] = addrs.map((addr, i) => ({ name: `n${i + 1}`, addr, innerAddr: `http://127.0.0.1:${ports[3 * i + 1]}`, proc: undefined, door: undefined }));
  let secrets: { unsealKey: string; rootToken: string } | undefined;

  const configFile = (n: RaftNode) => path.join(dir, `${n.name}.hcl`);
  const launched: ServerProcess[] = [];
  const launch = async (n: RaftNode) => {
    const i = nodes.indexOf(n);
    n.door = await startTcpProxy(n.innerAddr, { port: doorPort(i), onRequest: (method, p) => cluster.onRequest?.(n, method, p) });
    n.proc = startServerProcess(`bao ${n.name}`, o.bin, ['server', `-config=${configFile(n)}`], { cwd: dir, env: { HOME: dir, PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    launched.push(n.proc);
  };
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await Promise.all(nodes.map(async (n) => Promise.all([n.proc?.stop(), n.door?.close()])));
      await fs.rm(dir, { recursive: true, force: true });
    })());
  stopWhenTestFinishes(stop);

  const running = () => nodes.filter((n) => n.proc !== undefined);
  const api = (n: RaftNode) => adminApi(n.addr, secrets?.rootToken ?? '');
  const health = (n: RaftNode) => status(n.addr, 'sys/health');
  const unseal = async (n: RaftNode) => {
    // A node that has not fetched the cluster's keyring through retry_join yet says "not initialized" (501).
    const is = (codes: (number | 'down')[]) => async () => {
      const h = await health(n);
      return codes.includes(h) ? (true as const) : `sys/health ${h}`;
    };
    await n.proc!.waitUntil(is([503]), timeoutMs);
    const res = await api(n).request('POST', 'sys/unseal', { key: secrets!.unsealKey }, null);
    if (res.status !== 200) throw new Error(`unsealing ${n.name}: HTTP ${res.status}`);
    await n.proc!.waitUntil(is([200, 429]), timeoutMs);
  };
  const activeNode = (ms = timeoutMs) =>
    waitFor(async () => {
      for (const n of running()) if ((await health(n)) === 200) return n;
      notYet('no node answers sys/health 200');
    }, { what: 'an active node', timeoutMs: ms, intervalMs: 250 });
  const waitForVoters = async (ms = timeoutMs) => {
    await waitFor(async () => {
      const res = await (await cluster.api()).request('GET', 'sys/storage/raft/autopilot/state');
      const d = (res.body as { data?: { healthy: boolean; failure_tolerance: number; servers: Record<string, { status: string; healthy: boolean }> } }).data;
      if (!d) notYet(`autopilot state: HTTP ${res.status}`);
      const servers = Object.values(d.servers);
      const voters = servers.filter((s) => s.healthy && (s.status === 'voter' || s.status === 'leader')).length;
      return (d.healthy && d.failure_tolerance >= 1 && voters === nodes.length) || notYet(`healthy ${d.healthy}, failure tolerance ${d.failure_tolerance}, ${voters} healthy voters`);
    }, { what: 'all nodes voters', timeoutMs: ms, intervalMs: 250 });
  };

  const cluster: RaftCluster = {
    nodes,
    addrs,
    access: undefined as unknown as AgentAccess,
    env: {},
    onRequest: undefined,
    api: async (n) => api(n ?? (await activeNode())),
    health,
    activeNode,
    async waitForNewLeader(not, ms = timeoutMs) {
      const node = await waitFor(async () => {
        for (const n of running()) if (n !== not && (await health(n)) === 200) return n;
        notYet('no other node answers sys/health 200');
        // Polled often: the moment it answers is a measurement.
      }, { what: 'a new leader', timeoutMs: ms, intervalMs: 50 });
      return { node, seenAt: performance.now() };
    },
    kill(n) {
      n.proc?.child.kill('SIGKILL');
      n.proc = undefined;
      void n.door?.close();
      n.door = undefined;
    },
    async killActive() {
      const n = await activeNode();
      const proc = n.proc!;
      cluster.kill(n);
      await proc.exited;
      return n;
    },
    async restart(n) {
      if (n.proc) throw new Error(`${n.name} is running`);
      await launch(n);
      await unseal(n);
      await waitForVoters();
    },
    waitForVoters,
    logLines: () => launched.flatMap((p) => p.lines),
    stop,
  };

  try {
    for (const [i, n] of nodes.entries()) {
      const config = nodeConfig({ dir, name: n.name, addr: n.addr, port: ports[3 * i + 1]!, clusterPort: ports[3 * i + 2]!, peers: nodes.map((p) => p.innerAddr), multiplier: o.performanceMultiplier ?? 1, extra: o.extraConfig ?? '' });
      await fs.mkdir(path.join(dir, n.name, 'data'), { recursive: true });
      await fs.writeFile(configFile(n), config);
      await launch(n);
    }
    for (const n of nodes) await n.proc!.waitUntil(async () => ((await health(n)) === 'down' ? 'not listening' : true), timeoutMs);
    say('3 nodes listening; initialising n1');
    const init = await api(nodes[0]!).request('POST', 'sys/init', { secret_shares: 1, secret_threshold: 1 }, null).catch((e: unknown) => ({ status: 0, body: String(e) }));
    const keys = init.body as { keys?: string[]; root_token?: string };
    if (init.status !== 200 || !keys.keys?.[0] || !keys.root_token) throw new Error(`sys/init on n1: HTTP ${init.status}`);
    secrets = { unsealKey: keys.keys[0], rootToken: keys.root_token };
    await unseal(nodes[0]!);
    await activeNode();
    say('n1 active; unsealing n2 and n3 once they joined');
    // Autopilot promotes a joined node to voter after server_stabilization_time (10 s by default).
    await api(nodes[0]!).call('POST', 'sys/storage/raft/autopilot/configuration', { server_stabilization_time: '1s' });
    await Promise.all(nodes.slice(1).map(unseal));
    say('all nodes unsealed; waiting for three voters');
    await waitForVoters();
    const active = await cluster.api();
    const access = await prepareAgentAccess(active, dir);
    Object.assign(cluster, { access, env: access.env });
    // Standbys apply the Raft log a little after the active: the role was written last.
    for (const n of nodes) {
      await waitFor(async () => {
        const res = await api(n).request('GET', `auth/jwt/role/${DEV_ROLE}`);
        return res.status === 200 || notYet(`HTTP ${res.status}`);
      }, { what: `${n.name} serving the jwt role`, timeoutMs, intervalMs: 250 });
    }
    say('cluster ready');
    return cluster;
  } catch (err) {
    const logs = nodes.map((n) => `--- ${n.name}:\n${n.proc?.tail(15) ?? '(not running)'}`).join('\n');
    await stop();
    throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
  }
}

/** One cluster for the enclosing describe block (or file); `get()` returns it inside tests. */
export function useRaftCluster(o: Omit<RaftClusterOptions, 'bin'> & { bin: string }): { get(): RaftCluster } {
  let cluster: RaftCluster | undefined;
  beforeAll(async () => {
    cluster = await startRaftCluster(o);
  }, o.startTimeoutMs ?? 180_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  return {
    get() {
      if (!cluster) throw new Error('the Raft cluster is not running');
      return cluster;
    },
  };
}
