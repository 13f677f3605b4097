#!/usr/bin/env node
/**
 * Process entry (the bundle's ENTRYPOINT). Wires real stdout/stderr and signals into the CLI, and
 * guarantees the exit deadline Kubernetes expects: after SIGTERM the process is gone within 2 s even if
 * a Vault request is still hanging (node-vault cannot cancel it).
 *
 * The image starts the agent from a V8 startup snapshot of this bundle (scripts/build-snapshot.mjs,
 * image/Dockerfile): what is imported statically from here is evaluated once, when the snapshot is built,
 * and the process starts with it already loaded. Modules that load what a snapshot cannot hold
 * (node:http(s), worker_threads, child_process, perf_hooks, tty) or that read the process's state at load
 * (prom-client's process start time) are imported when a command first needs them: pino, prom-client,
 * the Vault client, the metrics server, `check` and `dev`. A static import of one of those makes the
 * snapshot build warn, and build-snapshot.mjs refuses it.
 */
import v8 from 'node:v8';
import { main } from './cli.js';

const SHUTDOWN_DEADLINE_MS = 1900;

function start(args: string[]): void {
  main(args, process.env, {
    out: (l) => process.stdout.write(`${l}\n`),
    err: (l) => process.stderr.write(`${l}\n`),
    onSignal: (sig, handler) =>
      process.on(sig, () => {
        if (sig !== 'SIGHUP') setTimeout(() => process.exit(0), SHUTDOWN_DEADLINE_MS).unref();
        handler();
      }),
    cwd: process.cwd(),
    isTty: process.stdout.isTTY === true,
    pid: process.pid,
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
  }).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`istiod-vault-agent: unexpected failure: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}

if (v8.startupSnapshot?.isBuildingSnapshot()) {
  // `node --snapshot-blob <blob> -- <args>`: no script name, the agent's arguments start at argv[1].
  v8.startupSnapshot.setDeserializeMainFunction(() => start(process.argv.slice(1)));
} else {
  start(process.argv.slice(2));
}
