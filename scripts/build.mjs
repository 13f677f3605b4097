// Bundles the agent into one file, twice from the same sources:
// - dist/istiod-vault-agent.mjs (ESM): what `node <bundle>` runs, the npm bin, and what the tests run;
// - dist/istiod-vault-agent.cjs (CommonJS): what scripts/build-snapshot.mjs turns into the V8 startup
//   snapshot the image starts from (a snapshot is built from one CommonJS script).
// No node_modules, no tsx at run time. CommonJS dependencies (node-vault) need `require`, which an ESM
// bundle lacks, hence the ESM banner. Minified by default (less to parse at every cold start, lower idle
// RSS); `--no-minify` for a readable bundle. keepNames keeps class names, which error types
// (`err.name`) and logs rely on. Packages that are loaded but never called (axios, under node-vault)
// are replaced by a throwing stub: scripts/unused-at-run-time.mjs.
import { build } from 'esbuild';
import { chmod, stat, writeFile } from 'node:fs/promises';
import { unusedAtRunTime } from './unused-at-run-time.mjs';

const common = {
  entryPoints: ['src/main.ts'],
  bundle: true,
  platform: 'node',
  target: 'node20',
  minify: !process.argv.includes('--no-minify'),
  keepNames: true,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
  plugins: [unusedAtRunTime],
};
const outputs = {
  esm: 'dist/istiod-vault-agent.mjs',
  cjs: 'dist/istiod-vault-agent.cjs',
};
const [esm] = await Promise.all([
  build({
    ...common,
    outfile: outputs.esm,
    format: 'esm',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  }),
  build({ ...common, outfile: outputs.cjs, format: 'cjs' }),
]);
// What went into the bundle and what it still imports at run time (tests check it is only Node built-ins).
await writeFile('dist/meta.json', JSON.stringify(esm.metafile));
for (const outfile of Object.values(outputs)) {
  await chmod(outfile, 0o755);
  const { size } = await stat(outfile);
  console.log(`${outfile}: ${(size / 1024).toFixed(0)} KiB`);
}
