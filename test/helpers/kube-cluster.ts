/**
 * A real Kubernetes control plane for integration tests, without nodes: tools/kube's etcd and
 * kube-apiserver on 127.0.0.1, with openssl-made certificates (a CA, the serving certificate, an admin
 * client certificate in system:masters), a service-account signing key, RBAC, and TokenRequest/TokenReview
 * as in a cluster. No controller-manager runs: namespaces' `default` service accounts, token Secrets and
 * garbage collection do not happen; create what a test needs explicitly.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/dev/dev-server.js';
import { goTool } from './go-tools.js';
import { startServerProcess, stopWhenTestFinishes, type ServerProcess } from './server-process.js';

export const KUBECTL = '/usr/bin/kubectl';
/** The issuer (and default audience) of service-account tokens, as in a kubeadm cluster. */
export const SA_ISSUER = 'https://kubernetes.default.svc.cluster.local';

export interface KubeClusterOptions {
  /** Audiences the API server accepts in tokens it reviews; default [SA_ISSUER]. */
  apiAudiences?: string[];
  /** Extra kube-apiserver flags (`--name=value`). */
  extraArgs?: string[];
  startTimeoutMs?: number;
}

export interface KubeResponse {
  status: number;
  body: unknown;
  text: string;
}

export interface KubeCluster {
  /** https://127.0.0.1:<port> */
  url: string;
  caPem: string;
  caFile: string;
  /** kubeconfig with the admin client certificate (system:masters). */
  kubeconfig: string;
  dir: string;
  /** Runs kubectl against the cluster; resolves with stdout, rejects with KubectlError. */
  kubectl(...args: string[]): Promise<string>;
  /** Like kubectl, with `input` on stdin (for `apply -f -`). */
  kubectlWithInput(input: string, ...args: string[]): Promise<string>;
  /** Calls the API as the admin. */
  request(method: string, apiPath: string, body?: unknown): Promise<KubeResponse>;
  /** A service-account token from the TokenRequest API (the service account must exist). */
  createToken(namespace: string, serviceAccount: string, audience: string, ttlSeconds?: number): Promise<string>;
  /** Lines kube-apiserver and etcd wrote (stderr), for failure messages. */
  logs: { apiserver: string[]; etcd: string[] };
  stop(): Promise<void>;
}

export class KubectlError extends Error {
  constructor(message: string, readonly code: number | null, readonly stdout: string, readonly stderr: string) {
    super(message);
  }
}

/**
 * Starts etcd and kube-apiserver and resolves once /readyz is ok (RBAC's bootstrap roles exist then).
 * Started inside a test, it is stopped when the test finishes; started in beforeAll, stop it in afterAll.
 */
export async function startKubeCluster(o: KubeClusterOptions = {}): Promise<KubeCluster> {
  const etcdBin = goTool('etcd');
  const apiserverBin = goTool('kube-apiserver');
  if (!etcdBin || !apiserverBin) throw new Error('etcd/kube-apiserver are not built (scripts/go-tools.sh build etcd kube-apiserver)');
  const timeoutMs = o.startTimeoutMs ?? 90_000;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-kube-'));
  const procs: ServerProcess[] = [];
  const stop = async () => {
    for (const p of [...procs].reverse()) await p.stop();
    await fs.rm(dir, { recursive: true, force: true });
  };
  stopWhenTestFinishes(stop);
  try {
    const pki = await makePki(dir);
    const etcdPort = await freePort();
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${await freePort()}`;
    const etcd = startServerProcess('etcd', etcdBin, [
      '--name=test', `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=test=${peerUrl}`,
      '--quota-backend-bytes=268435456', '--unsafe-no-fsync',
    ], serverEnv(dir));
    procs.push(etcd);
    // etcd logs this (JSON, level info) once its client listener serves; kube-apiserver retries before that anyway.
    await etcd.waitForLog(/"msg":"serving client traffic/, { timeoutMs });

    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const apiserver = startServerProcess('kube-apiserver', apiserverBin, [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${port}`,
      `--tls-cert-file=${pki.serverCert}`, `--tls-private-key-file=${pki.serverKey}`, `--client-ca-file=${pki.caFile}`,
      '--authorization-mode=Node,RBAC',
      `--service-account-issuer=${SA_ISSUER}`,
      `--service-account-key-file=${pki.saPub}`, `--service-account-signing-key-file=${pki.saKey}`,
      `--api-audiences=${(o.apiAudiences ?? [SA_ISSUER]).join(',')}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      `--cert-dir=${path.join(dir, 'apiserver-certs')}`,
      '--allow-privileged=true', '--profiling=false', '--enable-priority-and-fairness=false',
      ...(o.extraArgs ?? []),
    ], serverEnv(dir));
    procs.push(apiserver);
    const pemOpts = { ca: pki.caPem, cert: await fs.readFile(pki.adminCert, 'utf8'), key: await fs.readFile(pki.adminKey, 'utf8') };
    const request: KubeCluster['request'] = (method, apiPath, body) => kubeRequest(url, pemOpts, method, apiPath, body);
    // /readyz turns ok after the post-start hooks, RBAC's bootstrap roles (system:auth-delegator) included.
    await apiserver.waitUntil(async () => {
      const r = await request('GET', '/readyz');
      return r.status === 200 || `HTTP ${r.status}: ${r.text.slice(0, 300)}`;
    }, timeoutMs);

    const kubeconfig = path.join(dir, 'admin.kubeconfig');
    await fs.writeFile(kubeconfig, adminKubeconfig(url, pki), { mode: 0o600 });
    const run = (input: string | undefined, args: string[]) => runKubectl(kubeconfig, args, input);
    return {
      url,
      caPem: pki.caPem,
      caFile: pki.caFile,
      kubeconfig,
      dir,
      kubectl: (...args) => run(undefined, args),
      kubectlWithInput: (input, ...args) => run(input, args),
      request,
      async createToken(namespace, serviceAccount, audience, ttlSeconds = 600) {
        const res = await request('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`, {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { audiences: [audience], expirationSeconds: ttlSeconds },
        });
        const token = (res.body as { status?: { token?: string } } | undefined)?.status?.token;
        // The message names the request, never the token.
        if (res.status !== 201 || !token) throw new Error(`TokenRequest for ${namespace}/${serviceAccount}: HTTP ${res.status}: ${res.text.slice(0, 300)}`);
        return token;
      },
      logs: { apiserver: apiserver.lines, etcd: etcd.lines },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

function serverEnv(dir: string): { cwd: string; env: Record<string, string> } {
  return { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir } };
}

function kubeRequest(base: string, tls: { ca: string; cert: string; key: string }, method: string, apiPath: string, body?: unknown): Promise<KubeResponse> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request(new URL(apiPath, base), {
      method,
      ...tls,
      headers: { accept: 'application/json', ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) },
      timeout: 15_000,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, text });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`timeout on ${method} ${apiPath}`)));
    req.end(data);
  });
}

function runKubectl(kubeconfig: string, args: string[], input: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(KUBECTL, [`--kubeconfig=${kubeconfig}`, ...args], { timeout: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path.dirname(kubeconfig) }, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new KubectlError(`kubectl ${args.join(' ')}: ${stderr.trim() || err.message}`, typeof err.code === 'number' ? err.code : null, stdout, stderr));
      else resolve(stdout);
    });
    child.stdin!.end(input ?? '');
  });
}

interface Pki {
  caFile: string;
  caPem: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
}

/** CA, serving certificate (127.0.0.1, localhost, kubernetes.default.svc), admin client, SA key pair. */
async function makePki(dir: string): Promise<Pki> {
  const p = (f: string) => path.join(dir, 'pki', f);
  await fs.mkdir(path.join(dir, 'pki'), { mode: 0o700 });
  const ecKey = (out: string) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', out]);
  await ecKey(p('ca.key'));
  await fs.writeFile(p('ca.cnf'), [
    '[req]', 'distinguished_name = dn', 'prompt = no', 'x509_extensions = v3',
    '[dn]', 'CN = test-kube-ca',
    '[v3]', 'basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign,digitalSignature', 'subjectKeyIdentifier = hash',
  ].join('\n'));
  await openssl(['req', '-x509', '-new', '-key', p('ca.key'), '-config', p('ca.cnf'), '-days', '2', '-out', p('ca.crt')]);

  const leaf = async (name: string, subject: string, ext: string[]) => {
    await ecKey(p(`${name}.key`));
    await openssl(['req', '-new', '-key', p(`${name}.key`), '-subj', subject, '-out', p(`${name}.csr`)]);
    await fs.writeFile(p(`${name}.ext`), ['[v3]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', 'authorityKeyIdentifier = keyid', ...ext].join('\n'));
    await openssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-set_serial', `0x${randomBytes(16).toString('hex')}`,
      '-days', '2', '-extfile', p(`${name}.ext`), '-extensions', 'v3', '-out', p(`${name}.crt`)]);
  };
  await leaf('server', '/CN=kube-apiserver', ['extendedKeyUsage = serverAuth', 'subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local']);
  await leaf('admin', '/O=system:masters/CN=test-admin', ['extendedKeyUsage = clientAuth']);

  await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', p('sa.key')]);
  await openssl(['pkey', '-in', p('sa.key'), '-pubout', '-out', p('sa.pub')]);
  return {
    caFile: p('ca.crt'),
    caPem: await fs.readFile(p('ca.crt'), 'utf8'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    adminCert: p('admin.crt'),
    adminKey: p('admin.key'),
    saKey: p('sa.key'),
    saPub: p('sa.pub'),
  };
}

function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { timeout: 30_000 }, (err, _stdout, stderr) => (err ? reject(new Error(`openssl ${args[0]}: ${stderr.trim() || err.message}`)) : resolve()));
  });
}

function adminKubeconfig(url: string, pki: Pki): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server: url, 'certificate-authority': pki.caFile } }],
    users: [{ name: 'admin', user: { 'client-certificate': pki.adminCert, 'client-key': pki.adminKey } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: 'admin' } }],
    'current-context': 'test',
  });
}
