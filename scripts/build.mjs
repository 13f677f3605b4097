// Bundles the agent into one ESM file (dist/istiod-vault-agent.mjs): the image runs it with plain
// `node`, no node_modules, no tsx, and the tests run this same file. CommonJS dependencies (node-vault,
// axios) need `require`, which an ESM bundle lacks, hence the banner. Minified by default (half the
// size: less to parse at every cold start, lower idle RSS); `--no-minify` for a readable bundle.
// keepNames keeps class names, which error types (`err.name`) and logs rely on. Packages that are loaded
// but never called (axios, under node-vault) are replaced by a throwing stub: scripts/unused-at-run-time.mjs.
import { build } from 'esbuild';
import { chmod, stat, writeFile } from 'node:fs/promises';
import { unusedAtRunTime } from './unused-at-run-time.mjs';

const outfile = 'dist/istiod-vault-agent.mjs';
const result = await build({
  entryPoints: ['src/main.ts'],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: !process.argv.includes('--no-minify'),
  keepNames: true,
  sourcemap: false,
  legalComments: 'none',
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
  metafile: true,
  plugins: [unusedAtRunTime],
});
// What went into the bundle and what it still imports at run time (tests check it is only Node built-ins).
await writeFile('dist/meta.json', JSON.stringify(result.metafile));
await chmod(outfile, 0o755);
const { size } = await stat(outfile);
console.log(`${outfile}: ${(size / 1024).toFixed(0)} KiB`);
