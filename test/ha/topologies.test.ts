/**
 * The ways an agent can be pointed at a healthy 3-node OpenBao Raft cluster, each with a real `init`:
 * a round-robin front over the nodes (an L4 load balancer), the node list in VAULT_ADDR (a dead address
 * first), one standby node (its writes forwarded to the active node), and standbys that redirect
 * instead of forwarding: an L7 front adding `X-Vault-No-Request-Forwarding: true` makes every write a
 * 307 to the active node, which the agent follows only where VAULT_REDIRECT_ORIGINS allows. The
 * cluster's doors record which node got which request.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort } from '../../src/dev/dev-server.js';
import { cleanEnv, runAgent } from '../helpers/agent-process.js';
import { judgeDir } from '../evidence/support/cert-dir.js';
import { startHttpFront } from '../helpers/http-front.js';
import { useRaftCluster, type RaftCluster, type RaftNode } from '../helpers/raft-cluster.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { vaultBin } from '../helpers/tools.js';

const bin = vaultBin();
// No node dies here: OpenBao's default Raft timing, so a CPU-starved node (a loaded CI box) does not
// trigger an election that would move the active node mid-test.
const ha = bin ? useRaftCluster({ bin, performanceMultiplier: 0 }) : undefined;

interface Seen {
  node: RaftNode;
  method: string;
  path: string;
}

/** Records the requests every node gets for the rest of the test. */
function recordRequests(c: RaftCluster): Seen[] {
  const seen: Seen[] = [];
  c.onRequest = (node, method, p) => seen.push({ node, method, path: p });
  onTestFinished(() => {
    c.onRequest = undefined;
  });
  return seen;
}

async function init(c: RaftCluster, extra: Record<string, string>) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-ha-'));
  onTestFinished(() => fs.rm(dir, { recursive: true, force: true }));
  const run = await runAgent(['init'], cleanEnv({ ...c.env, CERT_DIR: dir, KEY_TYPE: 'ec', CERT_TTL: '1h', ...extra }), 90_000);
  const verdict = await judgeDir(dir);
  const errors = run.lines.filter((l) => l.level === 'error').map((l) => l.msg);
  return { run, verdict, errors };
}

const roles = async (c: RaftCluster) => {
  const active = await c.activeNode();
  return { active, standbys: c.nodes.filter((n) => n !== active) };
};
const paths = (seen: Seen[], nodes: RaftNode[]) => seen.filter((s) => nodes.includes(s.node)).map((s) => `${s.method} ${s.path}`);

describe.skipIf(!bin)('an agent pointed at a 3-node OpenBao Raft cluster', () => {
  it('through a round-robin front: each init publishes, and the standbys behind it serve (forwarding writes)', async () => {
    const c = ha!.get();
    const { standbys } = await roles(c);
    const front = await startTcpProxy(c.addrs);
    onTestFinished(() => front.close());
    const seen = recordRequests(c);
    // One connection per agent (kept alive): three agents land on three different nodes.
    for (let i = 0; i < 3; i++) {
      const { run, verdict, errors } = await init(c, { VAULT_ADDR: front.url });
      expect(run.code, errors.join('\n')).toBe(0);
      expect(verdict).toMatchObject({ ok: true, state: 'valid' });
    }
    // Writes that reached a standby were forwarded (they succeeded).
    expect(paths(seen, standbys).filter((p) => p.startsWith('POST '))).not.toEqual([]);
  });

  it('through the node list in VAULT_ADDR, a dead address first: the next node takes the request', async () => {
    const c = ha!.get();
    const dead = `http://127.0.0.1:${await freePort()}`;
    const { run, verdict, errors } = await init(c, { VAULT_ADDR: [dead, ...c.addrs].join(',') });
    expect(run.code, errors.join('\n')).toBe(0);
    expect(verdict).toMatchObject({ ok: true, state: 'valid' });
  });

  it('through one standby: reads served there, login and sign forwarded to the active node, nothing sent to it directly', async () => {
    const c = ha!.get();
    const { active, standbys } = await roles(c);
    const seen = recordRequests(c);
    const { run, verdict, errors } = await init(c, { VAULT_ADDR: standbys[0]!.addr });
    expect(run.code, errors.join('\n')).toBe(0);
    expect(verdict).toMatchObject({ ok: true, state: 'valid' });
    expect(paths(seen, [standbys[0]!])).toEqual(expect.arrayContaining(['POST /v1/auth/jwt/login', 'GET /v1/pki/issuers?list=1', 'POST /v1/pki/root/sign-intermediate']));
    expect(paths(seen, [active])).toEqual([]);
  });

  describe('standbys that redirect instead of forwarding (X-Vault-No-Request-Forwarding)', () => {
    /** An L7 front over the standbys only, asking them not to forward: every write becomes a 307 to the active node. */
    async function redirectingFront(c: RaftCluster) {
      const { active, standbys } = await roles(c);
      const front = await startHttpFront({ targets: standbys.map((n) => n.addr), addHeaders: { 'X-Vault-No-Request-Forwarding': 'true' } });
      onTestFinished(() => front.close());
      return { active, standbys, front, url: front.urls[0]! };
    }

    it('a 307 to a node listed in VAULT_REDIRECT_ORIGINS is followed: the active node gets the writes, init publishes', async () => {
      const c = ha!.get();
      const { active, front, url } = await redirectingFront(c);
      const seen = recordRequests(c);
      const { run, verdict, errors } = await init(c, { VAULT_ADDR: url, VAULT_REDIRECT_ORIGINS: c.addrs.join(',') });
      expect(run.code, errors.join('\n')).toBe(0);
      expect(verdict).toMatchObject({ ok: true, state: 'valid' });
      // The standbys redirected, and the agent followed to the active node with the same method.
      expect(front.records.filter((r) => r.status === 307).map((r) => `${r.method} ${r.path}`)).toContain('POST /v1/pki/root/sign-intermediate');
      expect(paths(seen, [active])).toContain('POST /v1/pki/root/sign-intermediate');
    });

    it.each([
      ['VAULT_REDIRECT_ORIGINS unset', (_c: RaftCluster, _standbys: RaftNode[]) => ({})],
      ['VAULT_REDIRECT_ORIGINS listing only the standbys', (_c: RaftCluster, standbys: RaftNode[]) => ({ VAULT_REDIRECT_ORIGINS: standbys.map((n) => n.addr).join(',') })],
    ])('with %s, a 307 to the active node is refused: nothing reaches it, the error names the Location', async (_what, settings) => {
      const c = ha!.get();
      const { active, standbys, url } = await redirectingFront(c);
      const seen = recordRequests(c);
      const { run, verdict, errors } = await init(c, { VAULT_ADDR: url, INIT_TIMEOUT: '3s', ...settings(c, standbys) });
      expect(run.code).toBe(1);
      expect(verdict).toEqual({ ok: true, state: 'empty' });
      expect(paths(seen, [active])).toEqual([]);
      expect(errors.join('\n')).toMatch(new RegExp(`redirected \\(HTTP 307\\) to ${active.addr}/v1/\\S+; not followed: ${active.addr} is not VAULT_ADDR's origin`));
    });
  });
});
