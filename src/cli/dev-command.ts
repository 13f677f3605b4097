/**
 * `dev`: the agent against a throwaway local OpenBao, with lifetimes short enough to watch rotation.
 * It owns its cert dir and that OpenBao's root: every run starts clean (a bundle left by an earlier run
 * was signed by an earlier, gone root). With VAULT_ADDR already set (most Vault users have it), it says
 * so first and runs against that Vault instead.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { findVaultBinary } from '../dev/bao-binary.js';
import { startDevEnvironment, type DevEnvironment } from '../dev/dev-environment.js';
import { loadSettings, type Settings } from '../config/settings.js';
import { BUNDLE_FILES } from '../pki/bundle.js';
import { DATA_LINK, GEN_DIR } from '../store/layout.js';
import type { CliIo, RunMode } from './io.js';
import { DEV_DEFAULTS } from './dev-defaults.js';
import { withoutCredentials } from './redact.js';

export { DEV_DEFAULTS };


/**
 * Removes what an earlier `dev` run published into `dir` (the agent's own names only: the visible
 * links or files, `..data`, `.gen`). Anything else in the folder is left alone.
 */
async function clearEarlierBundle(dir: string): Promise<boolean> {
  const entries = await fs.readdir(dir).catch(() => [] as string[]);
  const ours = new Set<string>([...Object.values(BUNDLE_FILES), DATA_LINK, GEN_DIR]);
  const stale = entries.filter((e) => ours.has(e));
  for (const e of stale) await fs.rm(path.join(dir, e), { recursive: true, force: true });
  return stale.length > 0;
}

export async function devCommand(source: Readonly<Record<string, string | undefined>>, io: CliIo, runMode: RunMode): Promise<number> {
  const chosen = Object.keys(DEV_DEFAULTS).filter((k) => source[k] === undefined || source[k] === '');
  const withDefaults: Record<string, string | undefined> = { ...DEV_DEFAULTS, ...source };
  // A relative CERT_DIR is only accepted here, where the working directory is the user's.
  withDefaults.CERT_DIR = path.resolve(io.cwd, withDefaults.CERT_DIR || DEV_DEFAULTS.CERT_DIR!);
  if (!withDefaults.LOG_FORMAT && io.isTty) withDefaults.LOG_FORMAT = 'pretty';
  if (source.VAULT_ADDR) {
    io.err(`dev: VAULT_ADDR is set (${withoutCredentials(source.VAULT_ADDR)}), so no local OpenBao is started: the agent runs against that Vault with dev's short lifetimes and needs its auth settings (AUTH_METHOD, AUTH_ROLE...). For the self-contained demo: env -u VAULT_ADDR npm start`);
    return runMode('run', loadSettings(withDefaults, { needsVault: true }), io, { dev: { chosen } });
  }
  // Validate the user's settings before starting anything.
  loadSettings(withDefaults, { needsVault: false });
  const bin = findVaultBinary({ vaultBin: source.VAULT_BIN, pathEnv: source.PATH, projectRoot: io.cwd, install: true, log: io.err });
  io.err(`dev: starting a local OpenBao (${bin})`);
  let dev: DevEnvironment | undefined = await startDevEnvironment({ bin, pathEnv: source.PATH });
  const settings: Settings = loadSettings({ ...withDefaults, ...dev.env }, { needsVault: true });
  if (await clearEarlierBundle(settings.certDir)) io.err(`dev: removed the bundle an earlier run left in ${settings.certDir} (its throwaway root is gone)`);
  const m = settings.metricsAddr;
  io.err(`dev: OpenBao at ${dev.server.addr}, PKI at pki/, jwt auth role "istiod" (its root token is in ${dev.rootTokenPath}, never logged)`);
  io.err(`dev: writing the bundle to ${settings.certDir}${m ? `; metrics on http://${m.host}:${m.port}/metrics; rotate now with: kill -HUP ${io.pid} or curl -XPOST http://${m.host}:${m.port}/rotate` : ''}`);
  return runMode('run', settings, io, {
    dev: { chosen },
    onStop: async () => {
      await dev?.stop();
      dev = undefined;
    },
  });
}
