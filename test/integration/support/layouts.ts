/**
 * What the layout tests need to set Vault up the way its users do: the `bao` CLI run as an operator runs
 * it (admin token, files given with `@file`), the least-privilege policy taken from the migration guide
 * itself (so the guide states exactly what was tested), a jwt role per cluster mount, a login as the
 * agent, and a byte-level snapshot of CERT_DIR's visible files.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import type { DevEnvironment } from '../../../src/dev/dev-environment.js';
import { DEV_SA } from '../../../src/dev/dev-environment.js';
import { certsFromPem } from '../../../src/pki/cert-info.js';
import type { AgentRun, LogLine } from '../../helpers/agent-process.js';
import { sample } from '../../helpers/metrics-text.js';
import { vaultBin } from '../../helpers/tools.js';

/** Runs the bao CLI with the admin token in `cwd`; resolves with stdout, rejects with stderr. */
export function bao(env: DevEnvironment, args: string[], cwd = env.workDir): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(vaultBin(), args, { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: env.workDir, VAULT_ADDR: env.server.addr, VAULT_TOKEN: env.server.rootToken }, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`bao ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** `bao write -format=json ...`, parsed. */
export async function baoJson<T>(env: DevEnvironment, args: string[], cwd?: string): Promise<T> {
  const [cmd, ...rest] = args;
  return JSON.parse(await bao(env, [cmd!, '-format=json', ...rest], cwd)) as T;
}

/** The first ```hcl block of a document: the policy a migration guide gives. */
export async function policyFromDoc(doc: string): Promise<string> {
  const text = await fs.readFile(path.resolve(doc), 'utf8');
  const m = /```hcl\n([\s\S]*?)```/.exec(text);
  if (!m) throw new Error(`${doc} has no hcl block`);
  return m[1]!;
}

/**
 * A jwt auth mount for one cluster (the per-cluster mount people name `kubernetes-<cluster>`), trusting
 * the dev environment's signing key, with a role bound to istiod's service account and ONLY `policy`
 * (no default policy, so the test shows that the policy alone is enough).
 */
export async function clusterAuth(env: DevEnvironment, mount: string, role: string, policy: string): Promise<void> {
  await bao(env, ['auth', 'enable', `-path=${mount}`, 'jwt']);
  await env.api.call('POST', `auth/${mount}/config`, { jwt_validation_pubkeys: [env.jwtKey.publicKeyPem] });
  await env.api.call('POST', `auth/${mount}/role/${role}`, {
    role_type: 'jwt',
    user_claim: 'sub',
    bound_audiences: ['vault'],
    bound_subject: `system:serviceaccount:${DEV_SA.namespace}:${DEV_SA.name}`,
    token_policies: [policy],
    token_no_default_policy: true,
    token_ttl: '1h',
  });
}

/** Logs in at `mount` as istiod would and returns the token (to show what that token may not do). */
export async function loginAs(env: DevEnvironment, mount: string, role: string): Promise<string> {
  const jwt = (await fs.readFile(env.saTokenPath, 'utf8')).trim();
  const res = await env.api.request('POST', `auth/${mount}/login`, { role, jwt }, null);
  if (res.status !== 200) throw new Error(`login at ${mount}: HTTP ${res.status}: ${JSON.stringify(res.body)}`);
  return (res.body as { auth: { client_token: string } }).auth.client_token;
}

/** HTTP status of `method path` with `token`. */
export async function statusWith(env: DevEnvironment, token: string, method: string, p: string, body?: unknown): Promise<number> {
  return (await env.api.request(method, p, body, token)).status;
}

export const VISIBLE = ['ca-key.pem', 'ca-cert.pem', 'cert-chain.pem', 'root-cert.pem'] as const;

/** The generation `..data` points at and the bytes of the four visible files. */
export async function snapshot(dir: string): Promise<{ generation: string; files: Record<string, string> }> {
  const generation = await fs.readlink(path.join(dir, '..data'));
  const files: Record<string, string> = {};
  for (const f of VISIBLE) files[f] = await fs.readFile(path.join(dir, f), 'utf8');
  return { generation, files };
}

/** An intermediate as the PKI `intermediate/generate/exported` + `sign-intermediate` flow makes it. */
export interface MadeIntermediate {
  /** Folder holding ca-key.pem, ca-cert.pem, cert-chain.pem, root-cert.pem as the operator saved them. */
  dir: string;
  key: string;
  cert: string;
  serial: string;
  issuerId: string | undefined;
}

/**
 * `<mount>/intermediate/generate/exported` (the key leaves Vault: that is what these layouts do), the CSR
 * signed by `<signer>/root/sign-intermediate`, the certificate imported with `<mount>/intermediate/set-signed`,
 * and the four files saved in a folder the way an operator saves them before `kv put ... =@file`.
 */
export async function exportedIntermediate(env: DevEnvironment, o: { mount: string; signer: string; ttl: string; cn: string; dir: string; importChain?: boolean }): Promise<MadeIntermediate> {
  await fs.mkdir(o.dir, { recursive: true });
  const gen = await baoJson<{ data: { csr: string; private_key: string } }>(env, ['write', `${o.mount}/intermediate/generate/exported`, `common_name=${o.cn}`, 'key_type=ec', 'key_bits=256']);
  await fs.writeFile(path.join(o.dir, 'int.csr'), gen.data.csr);
  const signed = await baoJson<{ data: { certificate: string; issuing_ca: string } }>(
    env,
    ['write', `${o.signer}/root/sign-intermediate`, 'csr=@int.csr', 'format=pem', `ttl=${o.ttl}`, 'use_csr_values=true'],
    o.dir,
  );
  await fs.writeFile(path.join(o.dir, 'int.pem'), o.importChain ? `${signed.data.certificate}\n${signed.data.issuing_ca}\n` : signed.data.certificate);
  await bao(env, ['write', `${o.mount}/intermediate/set-signed`, 'certificate=@int.pem'], o.dir);
  const serial = certsFromPem(signed.data.certificate, 'the signed intermediate')[0]!.serial;
  const issuers = (await env.api.call('LIST', `${o.mount}/issuers`)) as { data: { key_info: Record<string, { serial_number: string }> } };
  const issuerId = Object.entries(issuers.data.key_info).find(([, i]) => i.serial_number.replace(/:/g, '').toUpperCase().replace(/^0+/, '') === serial.replace(/^0+/, ''))?.[0];
  const files = {
    'ca-key.pem': `${gen.data.private_key}\n`,
    'ca-cert.pem': `${signed.data.certificate}\n`,
    'cert-chain.pem': `${signed.data.certificate}\n${signed.data.issuing_ca}\n`,
    'root-cert.pem': `${signed.data.issuing_ca}\n`,
  };
  for (const [name, text] of Object.entries(files)) await fs.writeFile(path.join(o.dir, name), text, { mode: 0o600 });
  return { dir: o.dir, key: gen.data.private_key, cert: signed.data.certificate, serial, issuerId };
}

/**
 * After a write the agent must refuse: waits (from log line `from` on) for the refusal matching
 * `isRefusal`, then for two more polls that find nothing new, and checks that nothing was read or
 * published since, that the failure counter for `reason` went up (by exactly one with `once`: a single
 * write, refused once, not at every poll), and that CERT_DIR's files are byte-identical to `kept`.
 */
export async function expectRefused(o: {
  agent: AgentRun;
  dir: string;
  kept: Awaited<ReturnType<typeof snapshot>>;
  from: number;
  isRefusal: (l: LogLine) => boolean;
  metrics: () => Promise<string>;
  reason: string;
  before: number;
  once: boolean;
}): Promise<LogLine> {
  const { agent } = o;
  await agent.waitFor(o.isRefusal, 30_000, o.from);
  // Settled: two polls that found nothing new since the latest refusal (a change made in several writes
  // can be refused at each step it is read in).
  const failed = (l: LogLine) => String(l.msg).startsWith('update from the bundle source failed');
  const lastFailure = () => agent.lines.findLastIndex(failed);
  const quiet = () => agent.lines.slice(lastFailure()).filter((l) => l.msg === 'polled the bundle source' && l.changed === false).length;
  await agent.waitFor(() => quiet() >= 2, 30_000, o.from);
  const at = lastFailure();
  const line = agent.lines[at]!;
  expect(o.isRefusal(line)).toBe(true);
  expect(line.msg).toMatch(/^update from the bundle source failed: .*; keeping the current bundle; checking the source again in /);
  expect(line.keeping).toBeTruthy();
  // Each fetch logs its read step (the refused one too); none after the refusal.
  expect(agent.lines.slice(0, at).some((l) => l.step === 'read')).toBe(true);
  expect(agent.lines.slice(at + 1).filter((l) => l.step === 'read' || String(l.msg).startsWith('published'))).toHaveLength(0);
  const failures = sample(await o.metrics(), 'istiod_vault_agent_issuances_total', { result: 'failure', reason: o.reason });
  if (o.once) {
    expect(agent.lines.slice(o.from).filter(failed)).toHaveLength(1);
    expect(failures).toBe(o.before + 1);
  } else {
    expect(failures).toBeGreaterThan(o.before);
  }
  expect(await snapshot(o.dir)).toEqual(o.kept);
  return line;
}
