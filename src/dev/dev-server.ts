/**
 * Starts `bao server -dev` (or `vault server -dev`) on a free loopback port and stops it. In-memory:
 * nothing survives a stop. Used by the `dev` command and by the integration tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface DevServer {
  addr: string;
  port: number;
  rootToken: string;
  /** PEM of the CA that signed the server's certificate, with `tls`. */
  tlsCaPem: string | undefined;
  stop(): Promise<void>;
}

export interface DevServerOptions {
  bin: string;
  /** Serve HTTPS with a generated, self-signed CA (`-dev-tls`). */
  tls?: boolean;
  startTimeoutMs?: number;
  /** PATH for the child (the caller's environment; this module does not read process.env). */
  pathEnv?: string;
}

/** A free loopback TCP port (bound and released; a tiny race is acceptable for tests and dev). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitHealthy(addr: string, child: ChildProcess, deadline: number, ca: () => Promise<string | undefined>): Promise<void> {
  let lastErr = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the dev server exited with code ${child.exitCode}`);
    try {
      const caPem = await ca();
      if (addr.startsWith('https:') && !caPem) throw new Error('TLS CA not written yet');
      const res = await healthGet(addr, caPem);
      if (res === 200) return;
      lastErr = `HTTP ${res}`;
    } catch (err) {
      lastErr = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the dev server did not become healthy in time (${lastErr})`);
}

async function healthGet(addr: string, caPem: string | undefined): Promise<number> {
  const request = addr.startsWith('https:') ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(`${addr}/v1/sys/health`, { ca: caPem, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const port = await freePort();
  const rootToken = `root-${randomBytes(12).toString('hex')}`;
  // A private HOME: `-dev` otherwise writes the root token to ~/.vault-token.
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-bao-'));
  const certDir = path.join(home, 'tls');
  if (opts.tls) await fs.mkdir(certDir, { mode: 0o700 });
  const args = ['server', '-dev', `-dev-listen-address=127.0.0.1:${port}`, '-dev-no-store-token'];
  if (opts.tls) args.push('-dev-tls', `-dev-tls-cert-dir=${certDir}`);
  // The root token goes in the environment, not argv: a command line is visible to every user (ps).
  const child = spawn(opts.bin, args, {
    env: { HOME: home, PATH: opts.pathEnv ?? '/usr/local/bin:/usr/bin:/bin', BAO_DEV_ROOT_TOKEN_ID: rootToken, VAULT_DEV_ROOT_TOKEN_ID: rootToken },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  // The server prints its root token in its banner; what is kept for error messages never holds it.
  const keep = (d: Buffer) => {
    output = (output + d.toString().replaceAll(rootToken, '[root token]')).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const addr = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const caFile = path.join(certDir, 'vault-ca.pem');
  const readCa = async () => (opts.tls ? fs.readFile(caFile, 'utf8').catch(() => undefined) : undefined);

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    }
    await fs.rm(home, { recursive: true, force: true });
  };
  try {
    await waitHealthy(addr, child, Date.now() + (opts.startTimeoutMs ?? 20_000), readCa);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}; server output:\n${output}`, { cause: err });
  }
  return { addr, port, rootToken, tlsCaPem: await readCa(), stop };
}
