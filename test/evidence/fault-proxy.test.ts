/**
 * Evidence (issue 6, item 1): one agent process, a real OpenBao, and a fault proxy between them that
 * breaks one request path at a time: refused/reset connections, stalls and trickles past
 * VAULT_CLIENT_TIMEOUT, Vault error statuses, truncated/cut/malformed/empty/huge bodies, and sign
 * answers rewritten to carry certificates that are wrong in every way verification knows (another
 * key, not a CA, expired, not yet valid, no keyCertSign, clientAuth-only, SHA-1, non-critical
 * basicConstraints, a chain that does not reach the root, another root, PEM garbage).
 *
 * The signing root is one the test holds the key of (imported into the `pki-ev` mount), so broken
 * certificates can be minted under the REAL root the agent trusts: each must be caught by the agent's
 * own checks, not by a chain mismatch.
 *
 * For every case: the published generation stays byte-identical (same `..data` target, same four
 * files), the failure is logged and counted with the expected `reason` (and error code), nothing
 * secret reaches the output, and the agent recovers by itself once the proxy behaves (its own retry
 * of the failed rotation for retryable failures; SIGHUP for the ones whose retry is minutes away)
 * with a valid generation whose root-cert.pem is still byte-identical to the first one.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signerPolicy, writePolicy } from '../../src/dev/configure.js';
import { FAILURE_REASONS } from '../../src/common/errors.js';
import { DEV_POLICY } from '../../src/dev/dev-environment.js';
import { freePort } from '../../src/dev/dev-server.js';
import { x509 } from '../../src/pki/x509.js';
import { MAX_RESPONSE_BYTES } from '../../src/vault/transport.js';
import { cleanEnv, isFailure, isKeeping, isPublished, nextLine, startAgent, type AgentRun } from '../helpers/agent-process.js';
import { httpGet, sample } from '../helpers/metrics-text.js';
import { useOpenBao } from '../helpers/openbao.js';
import { findSecrets } from '../helpers/secret-fragments.js';
import { judgeDir, keysOnDisk, sameSnapshot, snapshot, type Snapshot } from './support/cert-dir.js';
import { startFaultProxy, type FaultProxy, type RewriteContext, type Rule } from './support/fault-proxy.js';
import { csrPublicKey, freshCsr, importRoot, makeLabRoot, mint, type LabCa } from './support/pki-lab.js';
import { publishEvidence, table } from './support/report.js';

const MOUNT = 'pki-ev';
const SIGN = `/v1/${MOUNT}/root/sign-intermediate`;
// The issuer reads the agent makes before each issuance: root rotation's LIST of the mount (each issuer's
// own read follows only when the list changed, so the LIST is what every attempt asks).
const ISSUER = new RegExp(`^/v1/${MOUNT}/issuers$`);
const LOGIN = '/v1/auth/jwt/login';
const HUGE = 32 * 1024 * 1024;
/** Raw bytes of one PEM-garbage ca_chain entry: 20 of them, base64 and JSON-escaped, stay well under the answer cap. */
const UNDER_CAP_ENTRY = Math.floor(MAX_RESPONSE_BYTES / 40);

const bao = useOpenBao();
let dir: string;
let proxy: FaultProxy;
let agent: AgentRun;
let port: number;
let root: LabCa;
let impostor: LabCa;
let firstRootBytes: string;
const privateKeys = new Set<string>();

type SignData = { certificate: string; issuing_ca: string; ca_chain: string[] };
const data = (ctx: RewriteContext) => ctx.response.data as unknown as SignData;
const agentKey = (ctx: RewriteContext) => csrPublicKey(String(ctx.request?.csr));
const hoursFromNow = (h: number) => new Date(Date.now() + h * 3_600_000);

/** Replaces the signed certificate with `pem`, keeping Vault's issuing_ca and fixing ca_chain[0]. */
function swapCert(ctx: RewriteContext, pem: string): unknown {
  const d = data(ctx);
  d.certificate = pem;
  d.ca_chain = [pem, ...d.ca_chain.slice(1)];
  return ctx.response;
}

interface Case {
  name: string;
  rules: () => Rule[];
  /** Connection-level refusal instead of (or with) rules. */
  refuse?: boolean;
  /** Runs before the attempt (e.g. revoke the agent's token so it must log in through the fault). */
  before?: () => Promise<void>;
  reason: string;
  code: string | RegExp;
  retryable: boolean;
  /** Extra assertion on what crossed the proxy during the attempt. */
  check?: (requests: { method: string; path: string }[]) => void;
}

const revokeToken = async () => {
  await bao.get().api.call('POST', 'sys/leases/revoke-prefix/auth/jwt', {});
};
const vaultError = (status: number): Rule[] => [{ match: SIGN, fault: { kind: 'status', status } }];
const hugeJson = () => Buffer.from(`{"data":{"certificate":"${'A'.repeat(HUGE)}","issuing_ca":"x"}}`);
const hugeGarbage = () => {
  const b = Buffer.alloc(HUGE);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
};
const pemGarbage = (n: number) => `-----BEGIN CERTIFICATE-----\n${Buffer.alloc(n, 0x5a).toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;

const CASES: Case[] = [
  // Transport: the path to Vault breaks.
  { name: 'all connections refused (reset at accept)', rules: () => [], refuse: true, reason: 'vault_unreachable', code: 'VAULT_UNREACHABLE', retryable: true },
  { name: 'sign: connection reset on request', rules: () => [{ match: SIGN, fault: { kind: 'reset' } }], reason: 'vault_unreachable', code: 'VAULT_UNREACHABLE', retryable: true },
  { name: 'sign: stalls past VAULT_CLIENT_TIMEOUT', rules: () => [{ match: SIGN, fault: { kind: 'stall' } }], reason: 'vault_unreachable', code: 'VAULT_TIMEOUT', retryable: true },
  { name: 'sign: trickles one byte / 200 ms', rules: () => [{ match: SIGN, fault: { kind: 'trickle', everyMs: 200 } }], reason: 'vault_unreachable', code: 'VAULT_TIMEOUT', retryable: true },
  { name: 'issuer read: connection reset', rules: () => [{ match: ISSUER, fault: { kind: 'reset' } }], reason: 'vault_unreachable', code: 'VAULT_UNREACHABLE', retryable: true },
  { name: 'login: stalls (token revoked first)', before: revokeToken, rules: () => [{ match: LOGIN, fault: { kind: 'stall' } }], reason: 'vault_unreachable', code: 'VAULT_TIMEOUT', retryable: true },
  // Vault answers with an error status.
  { name: 'sign: HTTP 429', rules: () => vaultError(429), reason: 'vault_error', code: 'VAULT_RATE_LIMITED', retryable: true },
  { name: 'sign: HTTP 500', rules: () => vaultError(500), reason: 'vault_error', code: 'VAULT_SERVER_ERROR', retryable: true },
  { name: 'sign: HTTP 502', rules: () => vaultError(502), reason: 'vault_error', code: 'VAULT_SERVER_ERROR', retryable: true },
  { name: 'sign: HTTP 503', rules: () => vaultError(503), reason: 'vault_unreachable', code: 'VAULT_UNAVAILABLE', retryable: true },
  { name: 'sign: HTTP 400', rules: () => vaultError(400), reason: 'vault_error', code: 'VAULT_BAD_REQUEST', retryable: false },
  { name: 'sign: HTTP 404', rules: () => vaultError(404), reason: 'vault_error', code: 'VAULT_NOT_FOUND', retryable: false },
  { name: 'sign: HTTP 403 (after one fresh login)', rules: () => vaultError(403), reason: 'vault_denied', code: 'VAULT_DENIED', retryable: false },
  { name: 'issuer read: HTTP 503', rules: () => [{ match: ISSUER, fault: { kind: 'status', status: 503, errors: ['Vault is sealed'] } }], reason: 'vault_unreachable', code: 'VAULT_UNAVAILABLE', retryable: true },
  { name: 'login: HTTP 500 (token revoked first)', before: revokeToken, rules: () => [{ match: LOGIN, fault: { kind: 'status', status: 500 } }], reason: 'vault_error', code: 'VAULT_SERVER_ERROR', retryable: true },
  // The body is not what Vault sends.
  { name: 'sign: body truncated (valid HTTP, half the JSON)', rules: () => [{ match: SIGN, fault: { kind: 'truncate' } }], reason: 'invalid_response', code: 'VAULT_INVALID_RESPONSE', retryable: true },
  { name: 'sign: connection dropped mid-body', rules: () => [{ match: SIGN, fault: { kind: 'cut' } }], reason: 'vault_unreachable', code: /VAULT_UNREACHABLE|VAULT_TIMEOUT/, retryable: true },
  { name: 'sign: malformed JSON', rules: () => [{ match: SIGN, fault: { kind: 'replace', body: '{"data":{certificate:-----BEGIN}' } }], reason: 'invalid_response', code: 'VAULT_INVALID_RESPONSE', retryable: true },
  { name: 'sign: HTML page with 200', rules: () => [{ match: SIGN, fault: { kind: 'replace', body: '<html><body>502 Bad Gateway</body></html>', contentType: 'text/html' } }], reason: 'invalid_response', code: 'VAULT_INVALID_RESPONSE', retryable: true },
  { name: 'sign: empty 200', rules: () => [{ match: SIGN, fault: { kind: 'replace', body: '' } }], reason: 'invalid_response', code: 'VAULT_INVALID_RESPONSE', retryable: true },
  { name: 'sign: JSON of the wrong shape', rules: () => [{ match: SIGN, fault: { kind: 'replace', body: '{"data":{"certificate":42,"issuing_ca":null}}' } }], reason: 'invalid_response', code: 'VAULT_INVALID_RESPONSE', retryable: true },
  // Over the transport's answer cap (MAX_RESPONSE_BYTES): refused while it streams in, never parsed.
  { name: 'sign: huge JSON body (32 MiB certificate)', rules: () => [{ match: SIGN, fault: { kind: 'replace', body: hugeJson } }], reason: 'invalid_response', code: 'VAULT_RESPONSE_TOO_LARGE', retryable: true },
  { name: 'sign: huge binary garbage (32 MiB)', rules: () => [{ match: SIGN, fault: { kind: 'replace', body: hugeGarbage, contentType: 'application/octet-stream' } }], reason: 'invalid_response', code: 'VAULT_RESPONSE_TOO_LARGE', retryable: true },
  { name: 'issuer read: malformed JSON', rules: () => [{ match: ISSUER, fault: { kind: 'replace', body: '{"data":' } }], reason: 'invalid_response', code: 'VAULT_INVALID_RESPONSE', retryable: true },
  { name: 'login: HTML page with 200 (token revoked first)', before: revokeToken, rules: () => [{ match: LOGIN, fault: { kind: 'replace', body: '<html>login</html>', contentType: 'text/html' } }], reason: 'invalid_response', code: 'VAULT_INVALID_RESPONSE', retryable: true },
  // Vault's answer is well-formed, the certificates in it are wrong.
  {
    name: 'sign: certificate for a different key (signed by OpenBao)',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: async (ctx) => {
      const other = (await bao.get().api.call('POST', `${MOUNT}/root/sign-intermediate`, { csr: await freshCsr(), common_name: 'Intermediate CA', ttl: '1h', format: 'pem' })) as { data: { certificate: string } };
      return swapCert(ctx, `${other.data.certificate}\n`);
    } } }],
    reason: 'verification_failed', code: 'KEY_MISMATCH', retryable: true,
  },
  {
    name: 'sign: non-CA leaf for the agent key (OpenBao sign/leaf)',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: async (ctx) => {
      const leaf = (await bao.get().api.call('POST', `${MOUNT}/sign/leaf`, { csr: ctx.request?.csr, common_name: 'istiod.istio-system.svc', ttl: '1h' })) as { data: { certificate: string } };
      return swapCert(ctx, `${leaf.data.certificate}\n`);
    } } }],
    reason: 'verification_failed', code: 'NOT_CA', retryable: true,
  },
  { name: 'sign: expired (real root, agent key)', rules: () => [rewriteMint({ ca: true, pathLen: 0, notBefore: hoursFromNow(-48), notAfter: hoursFromNow(-24) })], reason: 'verification_failed', code: 'EXPIRED', retryable: true },
  { name: 'sign: not yet valid', rules: () => [rewriteMint({ ca: true, pathLen: 0, notBefore: hoursFromNow(2), notAfter: hoursFromNow(3) })], reason: 'verification_failed', code: 'NOT_YET_VALID', retryable: true },
  { name: 'sign: CA without keyCertSign', rules: () => [rewriteMint({ ca: true, pathLen: 0, keyUsage: x509.KeyUsageFlags.digitalSignature })], reason: 'verification_failed', code: 'MISSING_KEY_CERT_SIGN', retryable: true },
  { name: 'sign: CA with clientAuth-only EKU', rules: () => [rewriteMint({ ca: true, pathLen: 0, eku: ['1.3.6.1.5.5.7.3.2'] })], reason: 'verification_failed', code: 'EKU_EXCLUDES_SERVER_AUTH', retryable: true },
  { name: 'sign: SHA-1 signature', rules: () => [rewriteMint({ ca: true, pathLen: 0, hash: 'SHA-1' })], reason: 'verification_failed', code: /WEAK_SIGNATURE|CHAIN_INCOMPLETE/, retryable: true },
  { name: 'sign: basicConstraints not critical', rules: () => [rewriteMint({ ca: true, pathLen: 0, basicConstraintsCritical: false })], reason: 'verification_failed', code: 'NOT_CA', retryable: true },
  {
    name: 'sign: signed by a CA that is not in the chain',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: async (ctx) => {
      const stray = await mint({ subject: 'CN=Stray Intermediate', ca: true, pathLen: 1 }, impostor);
      return swapCert(ctx, (await mint({ ca: true, pathLen: 0, publicKey: await agentKey(ctx) }, stray)).pem);
    } } }],
    reason: 'verification_failed', code: 'CHAIN_INCOMPLETE', retryable: true,
  },
  {
    name: 'sign: issuing_ca and ca_chain replaced by another root',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: (ctx) => {
      const d = data(ctx);
      d.issuing_ca = impostor.pem;
      d.ca_chain = [d.certificate, impostor.pem];
      return ctx.response;
    } } }],
    reason: 'verification_failed', code: 'CHAIN_INCOMPLETE', retryable: true,
  },
  {
    name: 'sign: whole answer under another root',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: async (ctx) => {
      const cert = await mint({ ca: true, pathLen: 0, publicKey: await agentKey(ctx) }, impostor);
      const d = data(ctx);
      d.certificate = cert.pem;
      d.issuing_ca = impostor.pem;
      d.ca_chain = [cert.pem, impostor.pem];
      return ctx.response;
    } } }],
    reason: 'root_changed', code: 'ROOT_CHANGED', retryable: false,
  },
  { name: 'sign: PEM armour around garbage', rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: (ctx) => swapCert(ctx, pemGarbage(600)) } }], reason: 'verification_failed', code: 'PEM_INVALID', retryable: true },
  { name: 'sign: certificate field is not PEM at all', rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: (ctx) => swapCert(ctx, 'hello, I am a certificate') } }], reason: 'verification_failed', code: 'PEM_INVALID', retryable: true },
  {
    name: 'sign: certificate field holds two certificates',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: (ctx) => swapCert(ctx, data(ctx).certificate + root.pem) } }],
    reason: 'verification_failed', code: 'PEM_INVALID', retryable: true,
  },
  {
    name: 'sign: ca_chain of 20 x 900 KB PEM garbage (~18 MB, schema-valid, over the answer cap)',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: (ctx) => {
      const junk = pemGarbage(650_000);
      data(ctx).ca_chain = Array.from({ length: 20 }, () => junk);
      return ctx.response;
    } } }],
    reason: 'invalid_response', code: 'VAULT_RESPONSE_TOO_LARGE', retryable: true,
  },
  {
    // The same garbage small enough to pass the cap: the agent's own PEM parsing must refuse it.
    name: 'sign: ca_chain of 20 PEM garbage entries (~0.7 MB, schema-valid, under the answer cap)',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: (ctx) => {
      const junk = pemGarbage(UNDER_CAP_ENTRY);
      data(ctx).ca_chain = Array.from({ length: 20 }, () => junk);
      return ctx.response;
    } } }],
    reason: 'verification_failed', code: 'PEM_INVALID', retryable: true,
  },
];

/** A sign answer whose certificate is re-minted for the agent's key under the real root with `o`. */
function rewriteMint(o: Parameters<typeof mint>[0]): Rule {
  return { match: SIGN, fault: { kind: 'rewrite', fn: async (ctx) => swapCert(ctx, (await mint({ ...o, publicKey: await agentKey(ctx) }, root)).pem) } };
}

/** Answers that look odd but are correct: the agent must publish them, in issuer order. */
const ACCEPTED: { name: string; rules: () => Rule[] }[] = [
  {
    name: 'sign: ca_chain reversed and duplicated',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: (ctx) => {
      const d = data(ctx);
      d.ca_chain = [...d.ca_chain].reverse().concat(d.ca_chain);
      return ctx.response;
    } } }],
  },
  {
    name: 'sign: bogus issuing_ca, intact ca_chain',
    rules: () => [{ match: SIGN, fault: { kind: 'rewrite', fn: (ctx) => {
      data(ctx).issuing_ca = impostor.pem;
      return ctx.response;
    } } }],
  },
];

interface Row {
  name: string;
  expected: string;
  observed: string;
  untouched: boolean;
  counted: number;
  recovery: string;
  leaks: string;
  ok: boolean;
}
const rows: Row[] = [];
const accepted: { name: string; result: string; ok: boolean }[] = [];
let wrongOrLost = 0;

async function metrics(): Promise<string> {
  return (await httpGet(`http://127.0.0.1:${port}/metrics`)).text;
}
const failures = (m: string, reason: string) => sample(m, 'istiod_vault_agent_issuances_total', { result: 'failure', reason }) ?? 0;

async function rotate(): Promise<void> {
  const res = await httpGet(`http://127.0.0.1:${port}/rotate`, { method: 'POST' });
  expect(res.status).toBe(202);
}

async function collectKeys(): Promise<void> {
  for (const k of await keysOnDisk(dir)) privateKeys.add(k);
}

function leaksIn(from: number): string[] {
  const text = agent.lines.slice(from).map((l) => JSON.stringify(l)).join('\n');
  return findSecrets(text, { tokens: proxy.secrets.tokens, jwts: proxy.secrets.jwts, privateKeys });
}

/** Waits for a publish after `from` and checks it: valid, new generation, root bytes unchanged. */
async function expectRecovered(from: number, before: Snapshot, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  const pub = await nextLine(agent, isPublished, from, timeoutMs);
  if (!pub) throw new Error(`no recovery publish within ${timeoutMs} ms; last lines:\n${agent.lines.slice(-5).map((l) => JSON.stringify(l)).join('\n')}`);
  const verdict = await judgeDir(dir);
  const after = await snapshot(dir);
  await collectKeys();
  if (!verdict.ok || verdict.state !== 'valid') throw new Error(`after recovery the dir is not valid: ${JSON.stringify(verdict)}`);
  expect(after.target).not.toBe(before.target);
  expect(after.files['root-cert.pem']).toBe(firstRootBytes);
  return Date.now() - t0;
}

describe.skipIf(!bao.available)('fault proxy between the agent and OpenBao', () => {
  beforeAll(async () => {
    const api = bao.get().api;
    root = await makeLabRoot('CN=Evidence Mesh Root CA, O=Evidence');
    impostor = await makeLabRoot('CN=Impostor Root CA, O=Evidence');
    await importRoot(api, MOUNT, root);
    await writePolicy(api, DEV_POLICY, signerPolicy('pki') + signerPolicy(MOUNT));
    proxy = await startFaultProxy(bao.get().server.addr);
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-evidence-faults-'));
    port = await freePort();
    agent = startAgent(['run'], cleanEnv({
      ...bao.get().env,
      VAULT_ADDR: proxy.url,
      PKI_SIGN_PATH: `${MOUNT}/root/sign-intermediate`,
      CERT_DIR: dir,
      KEY_TYPE: 'ec',
      CERT_TTL: '2h',
      MIN_PUBLISH_INTERVAL: '0',
      VAULT_CLIENT_TIMEOUT: '2s',
      METRICS_ADDR: `127.0.0.1:${port}`,
      ROTATE_ENDPOINT: 'true',
      LOG_LEVEL: 'trace',
    }));
    const first = await nextLine(agent, isPublished, 0, 30_000);
    if (!first) throw new Error(`the agent did not publish: ${agent.stderr}\n${agent.stdout.slice(-2000)}`);
    firstRootBytes = (await snapshot(dir)).files['root-cert.pem']!;
    expect(firstRootBytes).toBe(root.pem);
    await collectKeys();
  }, 60_000);

  afterAll(async () => {
    agent?.kill('SIGTERM');
    await agent?.exit;
    await proxy?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
    if (rows.length) {
      const failed = rows.filter((r) => !r.ok).length;
      const md = [
        `Fault proxy: ${rows.length} fault cases and ${accepted.length} odd-but-correct answers against ONE agent process (\`run\`, EC keys, VAULT_CLIENT_TIMEOUT=2s), each attempt triggered by POST /rotate.`,
        `Cases where the published generation changed during a fault, or the dir was ever invalid or not recovered: **${wrongOrLost}**. Cases not as expected: **${failed}**.`,
        '',
        table(
          ['case', 'expected reason / code', 'observed', 'files untouched', 'counted', 'recovery', 'secrets in output'],
          rows.map((r) => [r.name, r.expected, r.observed, r.untouched ? 'yes' : '**NO**', r.counted, r.recovery, r.leaks || 'none']),
        ),
        '',
        table(['accepted answer', 'result'], accepted.map((a) => [a.name, a.result])),
      ].join('\n');
      await publishEvidence('fault-proxy', md);
    }
  });

  it.each(CASES)('$name', async (c) => {
    proxy.setRules(c.rules());
    await c.before?.();
    if (c.refuse) proxy.refuseConnections(true);
    const before = await snapshot(dir);
    const m0 = await metrics();
    const from = agent.lines.length;
    const firstRequest = proxy.log.length;
    await rotate();

    const row: Row = { name: c.name, expected: `${c.reason} / ${String(c.code)}`, observed: '-', untouched: false, counted: 0, recovery: '-', leaks: '', ok: false };
    rows.push(row);
    try {
      const failed = await nextLine(agent, (l) => isFailure(l) || isPublished(l), from, 20_000);
      if (!failed) throw new Error('neither a failure nor a publish within 20 s');
      const err = failed.line.err as { code?: string; retryable?: boolean } | undefined;
      row.observed = isPublished(failed.line) ? 'PUBLISHED' : `${String(failed.line.reason)} / ${err?.code}`;
      if (isPublished(failed.line)) wrongOrLost++;
      const keeping = await nextLine(agent, isKeeping, failed.index, 5000);
      const after = await snapshot(dir);
      row.untouched = sameSnapshot(before, after);
      if (!row.untouched) wrongOrLost++;
      const verdict = await judgeDir(dir);
      if (!verdict.ok) wrongOrLost++;
      row.counted = failures(await metrics(), c.reason) - failures(m0, c.reason);
      c.check?.(proxy.log.slice(firstRequest));

      expect(isPublished(failed.line), 'published during the fault').toBe(false);
      // One line per failed attempt: a warning while istiod keeps a valid bundle and a retry can help,
      // an error when a person must act.
      expect(failed.line.level).toBe(c.retryable ? 'warn' : 'error');
      expect(failed.line.reason).toBe(c.reason);
      if (typeof c.code === 'string') expect(err?.code).toBe(c.code);
      else expect(err?.code).toMatch(c.code);
      expect(err?.retryable).toBe(c.retryable);
      expect(failed.line.retryable).toBe(c.retryable);
      expect(keeping?.index, 'the failure line itself says what is kept and when the retry comes').toBe(failed.index);
      expect(String(failed.line.msg)).toMatch(/^issuance failed: .+; keeping the current bundle; retrying in \S+$/);
      expect(keeping!.line.keeping).toBe(verdict.ok && verdict.state === 'valid' ? verdict.serial : undefined);
      expect(row.untouched, 'published files untouched').toBe(true);
      expect(verdict).toMatchObject({ ok: true, state: 'valid' });
      expect(row.counted).toBeGreaterThanOrEqual(1);

      // Heal, then recover: by the agent's own retry when retrying can help (the failed rotation is
      // retried with backoff), else (a retry is minutes away) by SIGHUP.
      proxy.clear();
      proxy.refuseConnections(false);
      const healFrom = agent.lines.length;
      if (c.retryable) {
        // Backoff after 1-2 failed attempts is at most 2 s (a retry still in flight at healing time may
        // fail once more: then at most 4 s).
        const ms = await expectRecovered(from, before, 15_000);
        row.recovery = `own retry, ${ms} ms`;
      } else {
        agent.kill('SIGHUP');
        const ms = await expectRecovered(healFrom, before, 15_000);
        row.recovery = `SIGHUP, ${ms} ms`;
      }
      const leaks = leaksIn(from);
      row.leaks = leaks.join(', ');
      expect(leaks).toEqual([]);
      row.ok = true;
    } finally {
      proxy.clear();
      proxy.refuseConnections(false);
      if (!row.ok && row.recovery === '-') {
        // Leave the agent healthy for the next case whatever happened here.
        const f = agent.lines.length;
        agent.kill('SIGHUP');
        if (!(await nextLine(agent, isPublished, f, 15_000))) wrongOrLost++;
      }
    }
  }, 45_000);

  it.each(ACCEPTED)('accepted: $name', async (c) => {
    proxy.setRules(c.rules());
    const before = await snapshot(dir);
    const from = agent.lines.length;
    await rotate();
    const entry = { name: c.name, result: '-', ok: false };
    accepted.push(entry);
    try {
      const out = await nextLine(agent, (l) => isFailure(l) || isPublished(l), from, 20_000);
      entry.result = out ? (isPublished(out.line) ? 'published' : `refused: ${String(out.line.msg)}`) : 'nothing within 20 s';
      expect(out && isPublished(out.line)).toBe(true);
      await expectRecovered(from, before, 1000);
      const v = await judgeDir(dir);
      expect(v.ok).toBe(true);
      entry.result = 'published, chain in issuer order, root bytes unchanged';
      entry.ok = true;
    } finally {
      proxy.clear();
    }
  }, 30_000);

  it('nothing secret in the whole output, and every attempt is accounted for in the metrics', async () => {
    await collectKeys();
    const all = `${agent.stdout}\n${agent.stderr}\n${await metrics()}`;
    expect(proxy.secrets.tokens.size).toBeGreaterThanOrEqual(2);
    expect(proxy.secrets.jwts.size).toBeGreaterThanOrEqual(1);
    expect(privateKeys.size).toBeGreaterThanOrEqual(CASES.length);
    expect(findSecrets(all, { tokens: proxy.secrets.tokens, jwts: proxy.secrets.jwts, privateKeys })).toEqual([]);
    const m = await metrics();
    const failuresLogged = agent.lines.filter(isFailure).length;
    const failuresCounted = FAILURE_REASONS.reduce((n, r) => n + failures(m, r), 0);
    expect(failuresCounted).toBe(failuresLogged);
    // No second line per failure any more (the old "keeping the current bundle; will retry").
    expect(agent.lines.filter((l) => String(l.msg).startsWith('keeping the current bundle'))).toEqual([]);
    expect(sample(m, 'istiod_vault_agent_issuances_total', { result: 'success' })).toBe(agent.lines.filter(isPublished).length);
    expect(wrongOrLost).toBe(0);
    console.log(`fault proxy: ${rows.length} fault cases, ${accepted.length} accepted answers, ${failuresLogged} failed attempts logged and counted, ${agent.lines.filter(isPublished).length} publishes, ${privateKeys.size} private keys searched for, ${proxy.log.length} requests through the proxy; lost or wrongly published: ${wrongOrLost}`);
  });
});

/**
 * Self-recovery: a second agent whose intermediate is due 2-3 s after each publish (CERT_TTL=15s,
 * RENEW_BEFORE=12s; OpenBao backdates notBefore by 30 s and cuts notAfter to the second), so every
 * attempt is a DUE renewal. (CERT_TTL=10s with RENEW_BEFORE=9s left under a second: on a loaded machine
 * a new intermediate could be due on arrival, which the agent refuses as lifetime_too_short and does
 * not retry for 30 s.) While the fault lasts, retries keep failing and nothing is published; once the
 * proxy behaves, the agent's own retry publishes, with no signal or request from outside. Everything
 * is judged by events (log lines, the agent's own timestamps), not by the test's wall clock.
 */
describe.skipIf(!bao.available)('self-recovery of due renewals once the proxy behaves', () => {
  let p2: FaultProxy;
  let a2: AgentRun;
  let dir2: string;
  const selfRows: (string | number)[][] = [];

  beforeAll(async () => {
    p2 = await startFaultProxy(bao.get().server.addr);
    dir2 = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-evidence-self-'));
    a2 = startAgent(['run'], cleanEnv({
      ...bao.get().env, VAULT_ADDR: p2.url, PKI_SIGN_PATH: `${MOUNT}/root/sign-intermediate`, CERT_DIR: dir2, KEY_TYPE: 'ec',
      CERT_TTL: '15s', RENEW_BEFORE: '12s', MIN_PUBLISH_INTERVAL: '0', VAULT_CLIENT_TIMEOUT: '3s',
    }));
    expect(await nextLine(a2, isPublished, 0, 30_000)).toBeDefined();
  }, 60_000);

  afterAll(async () => {
    a2?.kill('SIGTERM');
    await a2?.exit;
    await p2?.close();
    if (dir2) await fs.rm(dir2, { recursive: true, force: true });
    if (selfRows.length) {
      await publishEvidence('fault-proxy-self-recovery', [
        'Self-recovery: a second agent renewing every 2-3 s (CERT_TTL=15s, RENEW_BEFORE=12s: every attempt a due renewal). Each fault held for two failed attempts, then removed; nothing signalled the agent. "retry started after" is from the agent\'s own log timestamps (never before the announced delay).',
        '',
        table(['fault', 'failed attempts while faulty', 'files untouched while faulty', 'last retry announced in', 'retry started after', 'failed after healing (already in flight)', 'healed -> published'], selfRows),
      ].join('\n'));
    }
  });

  const SELF: { name: string; rules: () => Rule[]; reason: string }[] = [
    { name: 'sign: HTTP 500', rules: () => vaultError(500), reason: 'vault_error' },
    { name: 'sign: connection reset', rules: () => [{ match: SIGN, fault: { kind: 'reset' } }], reason: 'vault_unreachable' },
    { name: 'sign: body truncated', rules: () => [{ match: SIGN, fault: { kind: 'truncate' } }], reason: 'invalid_response' },
    { name: 'sign: expired certificate', rules: () => [rewriteMint({ ca: true, pathLen: 0, notBefore: hoursFromNow(-48), notAfter: hoursFromNow(-24) })], reason: 'verification_failed' },
  ];

  it.each(SELF)('$name: retries fail while faulty, then the retry publishes by itself', async (c) => {
    p2.setRules(c.rules());
    const from = a2.lines.length;
    const first = await nextLine(a2, isFailure, from, 15_000);
    expect(first?.line.reason).toBe(c.reason);
    expect(first?.line.trigger).toBe('due');
    // A valid bundle is kept and a retry can help: a warning naming the serial istiod keeps.
    expect(first?.line.level).toBe('warn');
    expect(first?.line.keeping).toBeDefined();
    const during = await snapshot(dir2);
    const second = await nextLine(a2, isFailure, first!.index + 1, 15_000);
    expect(second?.line.reason).toBe(c.reason);
    const stillDuring = await snapshot(dir2);
    expect(sameSnapshot(during, stillDuring)).toBe(true);
    // (A renewal whose sign request passed the proxy before the rule was set may still publish
    // before the first failure; from the first failure on, nothing may.)
    expect(a2.lines.slice(first!.index).some(isPublished)).toBe(false);
    const lastRetry = second!.line;
    expect(isKeeping(lastRetry), 'the failure line announces the retry').toBe(true);
    const healedAt = Date.now();
    const healFrom = a2.lines.length;
    p2.clear();
    // The retry the agent announced publishes. An attempt already past the proxy when it healed may
    // still fail once; a second failure after healing would mean the agent is not recovering.
    const outcome = (i: number) => nextLine(a2, (l) => isPublished(l) || isFailure(l), i, Number(lastRetry.retryInMs) + 30_000);
    let pub = await outcome(healFrom);
    const failedAfterHeal: typeof a2.lines = [];
    if (pub && isFailure(pub.line)) {
      failedAfterHeal.push(pub.line);
      pub = await outcome(pub.index + 1);
    }
    const ms = Date.now() - healedAt;
    expect(pub, 'an outcome after healing').toBeDefined();
    expect(isPublished(pub!.line), `published by the agent's own retry (after healing: ${[...failedAfterHeal, pub!.line].map((l) => String(l.msg)).join(' | ')})`).toBe(true);
    for (const l of failedAfterHeal) expect(l.reason).toBe(c.reason);
    expect(pub!.line.trigger).toBe('due');
    // Pacing, on the agent's own clock: the attempt after the announced failure did not start early.
    const retryStart = a2.lines.findIndex((l, i) => i > second!.index && l.msg === 'issuing a new intermediate');
    expect(retryStart).toBeGreaterThan(second!.index);
    const startedAfter = Date.parse(String(a2.lines[retryStart]!.time)) - Date.parse(String(lastRetry.time));
    expect(startedAfter).toBeGreaterThanOrEqual(Number(lastRetry.retryInMs) - 50);
    const v = await judgeDir(dir2);
    expect(v).toMatchObject({ ok: true, state: 'valid' });
    selfRows.push([c.name, a2.lines.slice(from, healFrom).filter(isFailure).length, 'yes', `${lastRetry.retryInMs} ms`, `${startedAfter} ms`, failedAfterHeal.length, `${ms} ms`]);
  }, 60_000);
});
