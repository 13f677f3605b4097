/**
 * The baseline: OpenBao's agent (`bao agent`, OpenBao's vault-agent) configured the way the vault-agent
 * injector configures its init container in the "Vaulted Istio certificates" setup: auto-auth with jwt
 * (same mount, role and token file as our agent), a file sink, and four templates rendering the
 * pre-made bundle from kv-v2 into the four files istiod reads. `exit_after_auth = true` for the init
 * flavour; without it, the long-running template sidecar.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { KV_MOUNT, KV_SECRET } from './openbao.js';

const TEMPLATES: [file: string, field: string][] = [
  ['ca-cert.pem', 'ca_cert'],
  ['ca-key.pem', 'ca_key'],
  ['cert-chain.pem', 'cert_chain'],
  ['root-cert.pem', 'root_cert'],
];

export const BUNDLE_FILE_NAMES = TEMPLATES.map(([f]) => f);

export interface BaoAgentConfig {
  vaultAddr: string;
  saTokenPath: string;
  /** Folder for the config, the token sink and the pid file. */
  workDir: string;
  certDir: string;
  exitAfterAuth: boolean;
}

function hcl(s: string): string {
  return JSON.stringify(s);
}

/** Writes the agent's config file and returns its path. */
export function writeBaoAgentConfig(c: BaoAgentConfig): string {
  fs.mkdirSync(c.workDir, { recursive: true });
  const lines = [
    `pid_file = ${hcl(path.join(c.workDir, 'agent.pid'))}`,
    `exit_after_auth = ${c.exitAfterAuth}`,
    `vault {`,
    `  address = ${hcl(c.vaultAddr)}`,
    `}`,
    `auto_auth {`,
    `  method "jwt" {`,
    `    mount_path = "auth/jwt"`,
    `    config = {`,
    `      path = ${hcl(c.saTokenPath)}`,
    `      role = "istiod"`,
    `      remove_jwt_after_reading = false`,
    `    }`,
    `  }`,
    `  sink "file" {`,
    `    config = {`,
    `      path = ${hcl(path.join(c.workDir, 'token'))}`,
    `    }`,
    `  }`,
    `}`,
    `template_config {`,
    `  exit_on_retry_failure = true`,
    `}`,
    ...TEMPLATES.flatMap(([file, field]) => [
      `template {`,
      `  destination = ${hcl(path.join(c.certDir, file))}`,
      `  contents = ${hcl(`{{ with secret "${KV_MOUNT}/data/${KV_SECRET}" }}{{ .Data.data.${field} }}{{ end }}`)}`,
      `}`,
    ]),
    '',
  ];
  const file = path.join(c.workDir, 'agent.hcl');
  fs.writeFileSync(file, lines.join('\n'));
  return file;
}

export interface BaoAgentProcess {
  child: ChildProcess;
  pid: number;
  output(): string;
  exit: Promise<{ code: number | null; at: number }>;
  stop(): Promise<void>;
}

/** Starts `bao agent -config=<file>`; `wrap` runs it under another command (e.g. /usr/bin/time). */
export function startBaoAgent(bin: string, configFile: string, home: string, wrap: string[] = []): BaoAgentProcess {
  const argv = [...wrap, bin, 'agent', `-config=${configFile}`];
  const [cmd, ...rest] = argv as [string, ...string[]];
  const child = spawn(cmd, rest, {
    // A private HOME and no VAULT_*/BAO_* from the caller: only the config file speaks.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-4000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited = false;
  const exit = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.once('exit', (code) => {
      exited = true;
      resolve({ code, at: performance.now() });
    }),
  );
  return {
    child,
    pid: child.pid ?? -1,
    output: () => out,
    exit,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(t);
    },
  };
}
