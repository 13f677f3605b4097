/**
 * A real istiod for integration tests: tools/istio's pilot-discovery (Istio's bootstrap with an in-memory
 * Kubernetes client) on free loopback ports, ROOT_CA_DIR on a plugged-in CA dir, its logs buffered so a
 * test can wait for a line, its citadel_* metrics parsed, and stopped (SIGTERM, then SIGKILL) afterwards.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/dev/dev-server.js';
import { goTool } from './go-tools.js';
import { httpGet } from './metrics-text.js';
import { startServerProcess, stopWhenTestFinishes } from './server-process.js';

/** Lines istiod (Istio master of the pinned pseudo-version) logs at the moments tests care about. */
export const ISTIOD_LOG = {
  /** The plugged-in CA files were found complete and are used (pilot/pkg/bootstrap/istio_ca.go). */
  pluggedCa: /Use local CA certificate/,
  /** No complete bundle at start: istiod signs with its own self-signed root instead. */
  selfSigned: /Use self-signed certificate as the CA certificate/,
  watching: /Added cacerts files watcher at/,
  /** A reload after a change in ROOT_CA_DIR took the new intermediate. */
  reloaded: /Istiod has detected the newly added intermediate CA and updated its key and certs accordingly/,
  /** A reload whose root-cert.pem differs from the running one, without ISTIO_MULTIROOT_MESH. */
  multiRootDisabled: /Multi root is disabled, updating new ROOT-CA not supported/,
  /** With ISTIO_MULTIROOT_MESH: the new root-cert.pem is a superset or subset of the running one, taken. */
  rootUpdated: /Updating new ROOT-CA$/,
  /** With ISTIO_MULTIROOT_MESH: neither bundle contains the other, reload skipped. */
  rootUpdateRefused: /Updating new ROOT-CA not supported/,
  /** Any reload attempt (istiod read ROOT_CA_DIR after an fsnotify event and its 100 ms debounce). */
  reloadStarted: /Update Istiod cacerts/,
  reloadFailed: /Failed to update new Plug-in CA certs/,
} as const;

export interface IstiodOptions {
  /** The plugged-in CA dir (istiod's ROOT_CA_DIR); must hold a complete bundle for the plugged-in path. */
  certDir: string;
  /** Sets ISTIO_MULTIROOT_MESH=true: root-cert.pem may gain or lose roots across reloads. */
  multiRoot?: boolean;
  /** Extra environment for istiod (added to the minimal one the harness builds). */
  env?: Record<string, string>;
  /** How long to wait for readiness; default 60 s (a loaded 2-core machine). */
  startTimeoutMs?: number;
}

export interface IstiodCaMetrics {
  /** citadel_server_cert_chain_expiry_timestamp: notAfter (s) of the signing chain istiod runs. */
  certChainExpiry: number | undefined;
  /** citadel_server_root_cert_expiry_timestamp: notAfter (s) of the FIRST cert in root-cert.pem. */
  rootCertExpiry: number | undefined;
  /** Every citadel_* sample, keyed by the sample's name with its labels as printed. */
  citadel: Record<string, number>;
  text: string;
}

export interface Istiod {
  /** host:port of each listener (all on 127.0.0.1). */
  addrs: { http: string; grpc: string; secureGrpc: string; monitoring: string };
  metricsUrl: string;
  certDir: string;
  /** istiod's working folder (its relative paths land here); removed by stop(). */
  workDir: string;
  /** stdout and stderr lines, in arrival order. */
  lines: string[];
  /** Resolves with the first line from index `from` on (default: all so far) matching `re`. */
  waitForLog(re: RegExp, opts?: { from?: number; timeoutMs?: number }): Promise<string>;
  metrics(): Promise<IstiodCaMetrics>;
  /** Stops istiod and removes workDir; safe to call twice. */
  stop(): Promise<void>;
  child: ChildProcess;
}

/**
 * Starts istiod; rejects (with its last log lines) if it exits or is not ready in time. Started inside a
 * test, it is stopped when the test finishes (pass or fail); started in beforeAll, stop it in afterAll.
 */
export async function startIstiod(o: IstiodOptions): Promise<Istiod> {
  const bin = goTool('pilot-discovery');
  if (!bin) throw new Error('pilot-discovery is not built (scripts/go-tools.sh build pilot-discovery)');
  // A free port can be taken between our probe and istiod's bind; on a busy machine, try again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(bin, o);
    } catch (err) {
      if (attempt < 3 && /address already in use/.test(String(err))) continue;
      throw err;
    }
  }
}

async function startOnce(bin: string, o: IstiodOptions): Promise<Istiod> {
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-istiod-'));
  const configDir = path.join(workDir, 'config');
  await fs.mkdir(configDir);
  const addr = async () => `127.0.0.1:${await freePort()}`;
  const addrs = { http: await addr(), grpc: await addr(), secureGrpc: await addr(), monitoring: await addr() };
  const proc = startServerProcess('istiod', bin, [
    `--httpAddr=${addrs.http}`, `--grpcAddr=${addrs.grpc}`, `--secureGRPCAddr=${addrs.secureGrpc}`, `--monitoringAddr=${addrs.monitoring}`,
    `--configDir=${configDir}`, '--domain=cluster.local',
  ], {
    // Its relative defaults (./etc/cacerts, ./var/run/secrets/...) land in workDir, never in the repo.
    cwd: workDir,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: workDir,
      ROOT_CA_DIR: path.resolve(o.certDir),
      PILOT_CERT_PROVIDER: 'istiod',
      POD_NAMESPACE: 'istio-system',
      ...(o.multiRoot ? { ISTIO_MULTIROOT_MESH: 'true' } : {}),
      ...o.env,
    },
  });
  const stop = async () => {
    await proc.stop();
    await fs.rm(workDir, { recursive: true, force: true });
  };
  stopWhenTestFinishes(stop);
  const metricsUrl = `http://${addrs.monitoring}/metrics`;
  try {
    const timeoutMs = o.startTimeoutMs ?? 60_000;
    // Our main prints this once istiod's Start returned: every listener is bound, the CA is registered.
    await proc.waitForLog(/"msg":"pilot-discovery started"/, { timeoutMs });
    // Then /ready turns 200 once its xDS caches are synced (at once, with the in-memory Kubernetes client).
    await proc.waitUntil(async () => {
      const r = await httpGet(`http://${addrs.http}/ready`);
      return r.status === 200 || `HTTP ${r.status} ${r.text.slice(0, 200)}`;
    }, timeoutMs);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    addrs,
    metricsUrl,
    certDir: o.certDir,
    workDir,
    lines: proc.lines,
    waitForLog: proc.waitForLog,
    metrics: async () => parseCitadel((await httpGet(metricsUrl)).text),
    stop,
    child: proc.child,
  };
}

export function parseCitadel(text: string): IstiodCaMetrics {
  const citadel: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(citadel_[a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (m) citadel[m[1]!] = Number(m[2]);
  }
  return {
    certChainExpiry: citadel['citadel_server_cert_chain_expiry_timestamp'],
    rootCertExpiry: citadel['citadel_server_root_cert_expiry_timestamp'],
    citadel,
    text,
  };
}
