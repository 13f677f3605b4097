/**
 * Runs manifests/vault/setup.sh against a test OpenBao the way an operator would (its CLI, the admin
 * token in VAULT_TOKEN), and reads the ConfigMap it prints. Also what a cluster needs for kubernetes
 * auth in tests: a TokenReview stand-in, its CA file, a reviewer token, and istiod's SA token on disk.
 */
import { spawn } from 'node:child_process';
import { randomUUID, type KeyObject } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import type { DevEnvironment } from '../../../src/dev/dev-environment.js';
import { serviceAccountJwt, type ServiceAccountRef } from '../../../src/dev/jwt.js';
import { vaultBin } from '../../helpers/tools.js';
import { startTokenReviewServer, type TokenReviewServer } from '../../helpers/tokenreview-server.js';

export const SETUP_SCRIPT = path.resolve('manifests/vault/setup.sh');

export interface SetupResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** `data` of the printed settings ConfigMap ({} when none was printed). */
  settings: Record<string, string>;
  configMap: Record<string, unknown> | undefined;
  /** The printed ConfigMap holding Vault's CA for the agent, when there is one. */
  vaultCa: { metadata: { name: string; namespace: string }; data: Record<string, string> } | undefined;
  /** Every printed document. */
  documents: Record<string, unknown>[];
}

/** Runs setup.sh with `args`; asynchronous so that in-process test servers keep answering. */
export function runSetup(env: DevEnvironment, args: string[], extraEnv: Record<string, string> = {}): Promise<SetupResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [SETUP_SCRIPT, ...args], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: env.workDir,
        VAULT_ADDR: env.server.addr,
        VAULT_TOKEN: env.server.rootToken,
        VAULT_BIN: vaultBin(),
        ...extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      let documents: Record<string, unknown>[] = [];
      try {
        documents = YAML.parseAllDocuments(stdout).map((d) => d.toJS() as Record<string, unknown>).filter(Boolean);
      } catch {
        documents = [];
      }
      const named = (n: string) => documents.find((d) => (d.metadata as { name?: string } | undefined)?.name === n);
      const configMap = documents[0];
      const settings = (configMap?.data ?? {}) as Record<string, string>;
      resolve({ code, stdout, stderr, settings, configMap, vaultCa: named('istiod-vault-agent-vault-ca') as SetupResult['vaultCa'], documents });
    });
  });
}

/** One simulated cluster: its API server (TokenReview), CA file, reviewer token, SA-token signing key. */
export interface FakeCluster {
  name: string;
  review: TokenReviewServer;
  caFile: string;
  reviewerJwtFile: string;
  key: KeyObject;
  /** Writes a projected-token-like JWT for `sa` (default istio-system/istiod) and returns its path. */
  writeToken(file: string, sa?: ServiceAccountRef, audience?: string): Promise<string>;
  close(): Promise<void>;
}

export async function startFakeCluster(o: { name: string; dir: string; caPem: string; key: { privateKey: KeyObject; publicKeyPem: string } }): Promise<FakeCluster> {
  const reviewerToken = `reviewer-${o.name}-${randomUUID()}`;
  const review = await startTokenReviewServer({ publicKey: o.key.publicKeyPem, reviewerToken });
  const caFile = path.join(o.dir, `${o.name}-ca.pem`);
  const reviewerJwtFile = path.join(o.dir, `${o.name}-reviewer.jwt`);
  await fs.writeFile(caFile, o.caPem);
  await fs.writeFile(reviewerJwtFile, reviewerToken, { mode: 0o600 });
  const uid = randomUUID();
  return {
    name: o.name,
    review,
    caFile,
    reviewerJwtFile,
    key: o.key.privateKey,
    async writeToken(file, sa = { namespace: 'istio-system', name: 'istiod', uid }, audience = 'vault') {
      await fs.writeFile(file, serviceAccountJwt(o.key.privateKey, sa, { audience, ttlSeconds: 600 }), { mode: 0o600 });
      return file;
    },
    close: () => review.close(),
  };
}

/** setup.sh arguments for `cluster` on the shared mount `mount` (EC root: fast to generate in tests). */
export function setupArgs(cluster: FakeCluster, mount = 'mesh-pki', extra: string[] = []): string[] {
  return [
    '--cluster', cluster.name,
    '--kube-host', cluster.review.url,
    '--kube-ca-file', cluster.caFile,
    '--token-reviewer-jwt-file', cluster.reviewerJwtFile,
    '--pki-mount', mount,
    '--root-key-type', 'ec',
    '--root-common-name', 'Test Mesh Root CA',
    ...extra,
  ];
}
