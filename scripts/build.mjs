// Bundles the agent into one ESM file (dist/istiod-vault-agent.mjs): the image runs it with plain
// `node`, no node_modules, no tsx. CommonJS dependencies (node-vault, axios) need `require`, which an
// ESM bundle lacks, hence the banner.
import { build } from 'esbuild';
import { chmod, stat } from 'node:fs/promises';

const outfile = 'dist/istiod-vault-agent.mjs';
await build({
  entryPoints: ['src/main.ts'],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: process.argv.includes('--minify'),
  sourcemap: false,
  legalComments: 'none',
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
});
await chmod(outfile, 0o755);
const { size } = await stat(outfile);
console.log(`${outfile}: ${(size / 1024).toFixed(0)} KiB`);
