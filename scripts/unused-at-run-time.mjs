// Packages a dependency requires when it loads but that the agent never calls. The bundle gets a stub
// in their place that throws if it ever is called, so it neither carries nor evaluates them (for axios:
// follow-redirects, form-data, mime-db, proxy agents, and undici probed through `fetch`, ~560 KiB of
// source and ~20 ms of CPU at every start). If a code path did reach one, the agent fails loudly
// instead of quietly using it; the integration tests run this bundle against a real OpenBao.

/** Package name -> why it is never called. */
export const UNUSED_AT_RUN_TIME = {
  axios:
    "node-vault requires it at load but calls it only when no `request-promise` option is given; src/vault/transport.ts always gives one (its own node:http(s) request function)",
};

function stubSource(name) {
  const message = `${name} is not in this bundle (scripts/unused-at-run-time.mjs: ${UNUSED_AT_RUN_TIME[name]}), yet it was called`;
  return [
    `const message = ${JSON.stringify(message)};`,
    'function unused() { throw new Error(message); }',
    // What a caller could reach: the package's default export and its create().
    'unused.create = unused;',
    'unused.default = unused;',
    'module.exports = unused;',
  ].join('\n');
}

/** esbuild plugin: resolves each package of UNUSED_AT_RUN_TIME to its throwing stub. */
export const unusedAtRunTime = {
  name: 'unused-at-run-time',
  setup(build) {
    const names = Object.keys(UNUSED_AT_RUN_TIME);
    const filter = new RegExp(`^(${names.map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|')})$`);
    build.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'unused-at-run-time' }));
    build.onLoad({ filter: /.*/, namespace: 'unused-at-run-time' }, (args) => ({ contents: stubSource(args.path), loader: 'js' }));
  },
};
