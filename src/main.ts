#!/usr/bin/env node
/**
 * Process entry (the bundle's ENTRYPOINT). Wires real stdout/stderr and signals into the CLI, and
 * guarantees the exit deadline Kubernetes expects: after SIGTERM the process is gone within 2 s even if
 * a Vault request is still hanging (node-vault cannot cancel it).
 */
import { main } from './cli.js';

const SHUTDOWN_DEADLINE_MS = 1900;

main(process.argv.slice(2), process.env, {
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
