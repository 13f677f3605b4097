// Preloaded into an agent process (node -r) by tests that measure memory: reports the process's peak
// resident set size on exit, on stderr, so the exact bundle the image runs is what is measured.
process.on('exit', () => {
  try {
    require('node:fs').writeSync(2, `\nPEAK_RSS_KIB=${process.resourceUsage().maxRSS}\n`);
  } catch {
    /* stderr closed: nothing to report */
  }
});
