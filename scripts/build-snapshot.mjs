#!/usr/bin/env node
// Builds the V8 startup snapshot the image starts the agent from:
//
//   node [<Node.js/V8 flags>] scripts/build-snapshot.mjs <bundle.cjs> <blob>
//
// runs `node <flags> --snapshot-blob <blob> --build-snapshot <bundle.cjs>` with the Node.js binary and
// the flags running this script. A snapshot starts only on the exact Node.js version that built it, and
// some versions (20) also refuse other V8 flags than the build's: image/Dockerfile runs this with the
// runtime's own binary and its ENTRYPOINT's flags, the bench and the tests with what they measure.
// The build is refused when Node.js warns: its warning names a built-in module whose state a snapshot
// may not restore (src/main.ts keeps those out of the static imports). The blob is then started once
// (`version`) to show it loads on this binary.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

const [bundle, blob] = process.argv.slice(2);
if (!bundle || !blob) {
  console.error('usage: node scripts/build-snapshot.mjs <bundle.cjs> <blob>');
  process.exit(2);
}
const fail = (what, res) => {
  console.error(`build-snapshot: ${what} (${process.execPath}, Node.js ${process.version})\n${res?.stderr ?? ''}`);
  process.exit(1);
};

fs.rmSync(blob, { force: true });
// A minimal environment: nothing of the builder's (tokens, VAULT_*) can end up in the snapshot's heap.
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
const flags = process.execArgv;
const built = spawnSync(process.execPath, [...flags, '--snapshot-blob', blob, '--build-snapshot', bundle], { encoding: 'utf8', env });
if (built.status !== 0 || !fs.existsSync(blob)) fail(`building the snapshot of ${bundle} failed (exit ${built.status ?? built.signal})`, built);
// Node.js's own process warnings, `(node:<pid>) Warning: ...` (not V8's notes on flags that imply others).
if (/^\(node:\d+\) \w*Warning:/m.test(built.stderr)) {
  fs.rmSync(blob, { force: true });
  fail(`building the snapshot of ${bundle} warned; a module it loads at start-up must be imported when first needed instead (see src/main.ts)`, built);
}
const started = spawnSync(process.execPath, [...flags, '--snapshot-blob', blob, '--', 'version'], { encoding: 'utf8', env });
if (started.status !== 0 || !/^\d+\.\d+\.\d+/.test(started.stdout)) fail(`the snapshot ${blob} does not start (exit ${started.status ?? started.signal})`, started);
console.log(`${blob}: ${(fs.statSync(blob).size / 1024 / 1024).toFixed(1)} MiB, Node.js ${process.version}${flags.length ? ` ${flags.join(' ')}` : ''}, version ${started.stdout.trim()}`);
