/**
 * What a workload gets from istiod's CA: runs tools/istio's workload stand-in, which calls
 * IstioCertificateService/CreateCertificate on istiod's secure gRPC port with a client certificate it
 * mints from a CA dir (see tools/istio/cmd/workload/main.go for what istiod accepts), and parses its answer.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { goTool } from './go-tools.js';
import type { Istiod } from './istiod.js';

export interface WorkloadCertOptions {
  /** CA dir to mint the client certificate from (usually the agent's cert dir: the current intermediate). */
  certDir?: string;
  /** Or a ready client certificate chain + key (PEM files). */
  clientCert?: string;
  clientKey?: string;
  /** The workload's identity; default spiffe://cluster.local/ns/default/sa/workload. */
  spiffe?: string;
  /** Requested lifetime in seconds; default 3600. */
  ttlSeconds?: number;
  /** PEM roots to verify istiod's serving certificate with; without it, it is only reported. */
  caRoots?: string;
  timeoutMs?: number;
}

export interface CertSummary {
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  uris?: string[];
  dnsNames?: string[];
}

export interface WorkloadCert {
  /** CreateCertificate's answer as istiod sent it: leaf, intermediates, then the whole root-cert.pem. */
  chain: string[];
  leaf: X509Certificate;
  /** The elements between the leaf and the root bundle: istiod's cert-chain.pem, one certificate each (it may end with the root). */
  certChain: X509Certificate[];
  /** The last element: root-cert.pem as istiod runs it (may hold several roots). */
  rootBundle: string;
  leafInfo: CertSummary;
  /** What istiod presented on the TLS handshake of its secure port. */
  serving: { chain: string[]; leaf: CertSummary; verified: boolean };
}

export class WorkloadCertError extends Error {
  constructor(message: string, readonly stderr: string) {
    super(message);
  }
}

/** Asks `istiod` (or a host:port) for a workload certificate; rejects with WorkloadCertError when refused. */
export async function requestWorkloadCert(istiod: Pick<Istiod, 'addrs'> | string, o: WorkloadCertOptions): Promise<WorkloadCert> {
  const bin = goTool('workload');
  if (!bin) throw new Error('workload is not built (scripts/go-tools.sh build workload)');
  const addr = typeof istiod === 'string' ? istiod : istiod.addrs.secureGrpc;
  const args = [`--addr=${addr}`, `--ttl=${o.ttlSeconds ?? 3600}s`, `--timeout=${o.timeoutMs ?? 20_000}ms`];
  if (o.certDir) args.push(`--cert-dir=${o.certDir}`);
  if (o.clientCert) args.push(`--client-cert=${o.clientCert}`, `--client-key=${o.clientKey ?? ''}`);
  if (o.spiffe) args.push(`--spiffe=${o.spiffe}`);
  if (o.caRoots) args.push(`--ca-roots=${o.caRoots}`);
  const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
    execFile(bin, args, { timeout: (o.timeoutMs ?? 20_000) + 10_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, (err, stdout, stderr) => {
      if (err) reject(new WorkloadCertError(`workload stand-in failed: ${stderr.trim() || err.message}`, stderr));
      else resolve({ stdout });
    });
  });
  const out = JSON.parse(stdout) as { chain: string[]; leaf: CertSummary; serving: WorkloadCert['serving'] };
  const certs = out.chain.slice(0, -1).map((p) => new X509Certificate(p));
  return {
    chain: out.chain,
    leaf: certs[0]!,
    certChain: certs.slice(1),
    rootBundle: out.chain[out.chain.length - 1]!,
    leafInfo: out.leaf,
    serving: { ...out.serving, chain: out.serving.chain ?? [] },
  };
}

/**
 * Checks with `openssl verify` (path building, signatures, validity, CA flags) that the leaf of `chain`
 * chains through the given intermediates to one of `rootsPem`, at `atSeconds` (Unix time; default now).
 * Returns openssl's verdict text on failure.
 */
export async function verifyChain(leafPem: string, intermediatesPem: string[], rootsPem: string, atSeconds?: number): Promise<{ ok: boolean; output: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-verify-'));
  try {
    const leaf = path.join(dir, 'leaf.pem');
    const roots = path.join(dir, 'roots.pem');
    await fs.writeFile(leaf, leafPem);
    await fs.writeFile(roots, rootsPem);
    const args = ['verify', '-CAfile', roots, ...(atSeconds === undefined ? [] : ['-attime', String(Math.floor(atSeconds))])];
    if (intermediatesPem.length) {
      const untrusted = path.join(dir, 'untrusted.pem');
      await fs.writeFile(untrusted, intermediatesPem.join(''));
      args.push('-untrusted', untrusted);
    }
    args.push(leaf);
    return await new Promise((resolve) => {
      execFile('openssl', args, { timeout: 15_000 }, (err, stdout, stderr) => resolve({ ok: !err, output: `${stdout}${stderr}`.trim() }));
    });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
