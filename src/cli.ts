/**
 * The command line: the only module (with src/cli/) that reads the environment and process signals,
 * and the only one that decides exit codes (0 ok, 1 failed, 2 bad configuration). Everything below it
 * receives values.
 */
import pkg from '../package.json' with { type: 'json' };
import type { Runtime } from './agent/compose.js';
import { fetchMetricsPage } from './agent/istiod-sync.js';
import { initCommand, runCommand, sidecarCommand, type Control, type ModeContext } from './agent/commands.js';
import type { CliIo, RunMode } from './cli/io.js';
import { withoutCredentials } from './cli/redact.js';
import { systemClock } from './common/clock.js';
import { ConfigError, describeError } from './common/errors.js';
import { mergeFlags } from './config/flags.js';
import { SETTINGS, flagName, loadSettings } from './config/settings.js';
import { CHECK_MANIFEST_USAGE, checkManifestCommand } from './install/check-manifest-command.js';
import { discardedMetrics } from './telemetry/discarded-metrics.js';

export type { CliIo } from './cli/io.js';
export { DEV_DEFAULTS } from './cli/dev-defaults.js';

export const VERSION: string = pkg.version;

const COMMANDS: [string, string][] = [
  ['init', 'make sure CERT_DIR holds a valid bundle that is not due; issue one if not (exit 0 ok, 1 failed, 2 bad config)'],
  ['sidecar', 'adopt the bundle on disk and renew it before expiry until SIGTERM; serve metrics and health'],
  ['run', 'init, then sidecar, in one process (Kubernetes native sidecar; /readyz turns 200 after the first publish)'],
  ['check [DIR]', 'verify a cert dir (default CERT_DIR) as istiod would and describe it (exit 0 valid, 1 not)'],
  [CHECK_MANIFEST_USAGE, 'check that every istiod Deployment in a rendered manifest (stdin for -) runs with the agent and cannot fall back to its self-signed CA (exit 0 sound, 1 problems, 2 unreadable)'],
  ['dev', 'without VAULT_ADDR: start a local dev OpenBao, configure it, and run the agent into ./cacerts with a short TTL'],
  ['version', 'print the version'],
];

function usage(): string {
  const lines = [
    `istiod-vault-agent ${VERSION}: istiod's intermediate CA from Vault/OpenBao PKI, renewed in place.`,
    '',
    'Usage: istiod-vault-agent <command> [--setting-name value ...]',
    '',
    'Commands:',
    ...COMMANDS.map(([c, h]) => `  ${c.padEnd(13)} ${h}`),
    '',
    'Settings (environment variables; the --flag of the same name wins):',
    ...SETTINGS.map((s) => {
      const def = s.default || ('defaultText' in s ? s.defaultText : undefined);
      return `  ${s.env.padEnd(24)} ${flagName(s.env).padEnd(26)} ${s.help}${def ? ` [default: ${def}]` : ''}`;
    }),
    '',
    'Signals: SIGTERM/SIGINT stop (exit 0); SIGHUP issues a new intermediate now (sidecar, run).',
  ];
  return lines.join('\n');
}

function runtime(): Runtime {
  return { clock: systemClock, random: Math.random, fetchText: fetchMetricsPage };
}

function control(io: CliIo, log: (m: string) => void): Control & { stop(): void } {
  const ctl = new AbortController();
  let rotate: ((source: string) => void) | undefined;
  const stop = () => {
    if (ctl.signal.aborted) return;
    log('stopping');
    ctl.abort();
  };
  io.onSignal('SIGTERM', stop);
  io.onSignal('SIGINT', stop);
  io.onSignal('SIGHUP', () => rotate?.('SIGHUP'));
  return { shutdown: ctl.signal, onRotate: (h) => (rotate = h), stop };
}

/*
 * pino and prom-client are imported when a mode needs them, not with this module: src/main.ts says why
 * (they load worker_threads and http, which a V8 startup snapshot cannot hold). `init` serves no
 * metrics, so it records none and does not load prom-client at all.
 */
const runMode: RunMode = async (name, settings, io, extra) => {
  const { createCliLogger } = await import('./telemetry/logger.js');
  const log = await createCliLogger({ level: settings.logLevel, format: settings.logFormat, base: { mode: name } });
  const served = name === 'init' ? undefined : new (await import('./telemetry/metrics.js')).AgentMetrics(VERSION);
  const ctl = control(io, () => log.info({}, 'signal received; shutting down'));
  const ctx: ModeContext = { settings, runtime: runtime(), log, metrics: served ?? discardedMetrics, registry: served?.registry, control: ctl, dev: extra?.dev };
  log.info({ version: VERSION, certDir: settings.certDir, vaultAddr: settings.vaultAddrs?.map(withoutCredentials).join(','), authMethod: settings.authMethod, authMount: settings.authMount, bundleSource: settings.bundleSource, ...(settings.bundlePaths ? { bundleFrom: Object.values(settings.bundlePaths).map((r) => `${r.path}#${r.field}`) } : { signPath: settings.pkiSignPath }) }, 'starting');
  try {
    const fn = name === 'init' ? initCommand : name === 'sidecar' ? sidecarCommand : runCommand;
    return await fn(ctx);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    log.error({ err }, `failed: ${describeError(err)}`);
    return 1;
  } finally {
    await extra?.onStop?.();
  }
};

/**
 * Runs the command in `args` with `env`. Returns the exit code; never throws.
 */
export async function main(args: readonly string[], env: Readonly<Record<string, string | undefined>>, io: CliIo): Promise<number> {
  try {
    // Its own flags, not settings: handled before the settings are parsed.
    if (args[0] === 'check-manifest') return await checkManifestCommand(args.slice(1), io);
    const { source, positional } = mergeFlags(env, args.filter((a) => a !== '--help' && a !== '-h' && a !== '--version'));
    if (args.includes('--help') || args.includes('-h') || positional[0] === 'help' || positional.length === 0) {
      io.out(usage());
      return positional.length === 0 && !args.includes('--help') && !args.includes('-h') ? 2 : 0;
    }
    if (args.includes('--version') || positional[0] === 'version') {
      io.out(VERSION);
      return 0;
    }
    const command = positional[0];
    switch (command) {
      case 'init':
      case 'sidecar':
      case 'run':
        if (positional.length > 1) throw new ConfigError([`${command}: unexpected argument "${positional[1]}"`]);
        return await runMode(command, loadSettings(source, { needsVault: true }), io);
      case 'check':
        return await (await import('./cli/check-command.js')).checkCommand(source, positional, io);
      case 'dev':
        return await (await import('./cli/dev-command.js')).devCommand(source, io, runMode);
      default:
        throw new ConfigError([`${command}: unknown command (use init, sidecar, run, check, check-manifest, dev, version or --help)`]);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) io.err(p);
      return 2;
    }
    io.err(`istiod-vault-agent: ${describeError(err)}`);
    return 1;
  }
}
