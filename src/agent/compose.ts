/**
 * Builds a working agent from validated settings: the only place vault, pki, store and telemetry are
 * wired together. Side effects that tests replace (clock, randomness, HTTP to istiod, key generation)
 * arrive in `Runtime`.
 */
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import { ConfigError, describeError } from '../common/errors.js';
import type { Settings } from '../config/settings.js';
import type { CertInfo } from '../pki/cert-info.js';
import { keySpec, type GeneratedKey, type KeySpec } from '../pki/keys.js';
import { parseExtraRoots } from '../pki/trust-roots.js';
import { CertDirWriter } from '../store/cert-dir-writer.js';
import type { MetricsRecorder } from '../telemetry/metrics.js';
import type { AuthSpec } from '../vault/auth.js';
import { createVaultCa } from '../vault/vault-ca.js';
import type { ConnectionOptions, VaultConnection } from '../vault/vault-connection.js';
import { createVaultReader } from '../vault/vault-reader.js';
import { CredentialError, readCredentialFile } from '../inputs/credential-file.js';
import { watchMountedFile, type MountedFile } from '../inputs/mounted-file.js';
import { BundleKeeper } from './bundle-keeper.js';
import type { BundleSource } from './bundle-source.js';
import type { FetchText } from './istiod-sync.js';
import { istiodComparesSets } from './istiod-version.js';
import { pkiSignSource } from './sources/pki-sign-source.js';
import { vaultPathsSource } from './sources/vault-paths-source.js';

export interface Runtime {
  clock: Clock;
  random: () => number;
  fetchText: FetchText;
  generate?: (spec: KeySpec) => Promise<GeneratedKey>;
}

export interface Agent {
  keeper: BundleKeeper;
  vault: VaultConnection;
  /** Stops watchers and revokes the Vault token (bounded). Never throws. */
  close(): Promise<void>;
}

/** A mounted input: watched in long-running modes, read once in `init`. */
async function openInput(file: string, setting: string, watch: boolean, log: Logger, onChange: (c: string) => void): Promise<MountedFile | { current(): string; close(): Promise<void> }> {
  try {
    if (!watch) {
      const content = await readCredentialFile(file, setting, 'the file');
      return { current: () => content, close: async () => undefined };
    }
    return await watchMountedFile(file, {
      onChange: (c) => {
        log.info({ setting, file }, `${setting} changed on disk; using the new content from the next request`);
        onChange(c);
      },
      onError: (err) => log.warn({ setting, file, err }, `${setting}: cannot re-read; keeping the previous content`),
    });
  } catch (err) {
    const errno = err instanceof CredentialError ? err.errno : ((err as { code?: string }).code ?? describeError(err));
    throw new ConfigError([`${setting}: cannot read ${file} (${errno === 'EMPTY' ? 'empty' : errno})`]);
  }
}

export async function createAgent(s: Settings, rt: Runtime, log: Logger, metrics: MetricsRecorder, opts: { watch: boolean; dev?: boolean }): Promise<Agent> {
  const inputs: { close(): Promise<void> }[] = [];
  // The CA watcher is created before the client it updates.
  const late: { vault?: VaultConnection } = {};

  let caCert: string | undefined;
  if (s.vaultCaCert) {
    const f = await openInput(s.vaultCaCert, 'VAULT_CACERT', opts.watch, log, (c) => late.vault?.setCaCert(c));
    inputs.push(f);
    caCert = f.current();
  }

  let extraRoots: readonly CertInfo[] = [];
  if (s.extraTrustRootsFile) {
    const f = await openInput(s.extraTrustRootsFile, 'EXTRA_TRUST_ROOTS_FILE', opts.watch, log, (c) => {
      try {
        extraRoots = parseExtraRoots(c);
      } catch (err) {
        log.error({ err }, 'EXTRA_TRUST_ROOTS_FILE: new content rejected; keeping the previous roots');
      }
    });
    inputs.push(f);
    try {
      extraRoots = parseExtraRoots(f.current());
    } catch (err) {
      throw new ConfigError([describeError(err)]);
    }
  }

  let auth: AuthSpec;
  switch (s.authMethod) {
    case 'kubernetes':
    case 'jwt': {
      const readJwt = () => readCredentialFile(s.saTokenPath, 'SA_TOKEN_PATH', 'the service-account token');
      // Found now, not after the first call to Vault: a missing projected token is a mount problem.
      await readJwt().catch((err: unknown) => {
        throw new ConfigError([`SA_TOKEN_PATH: cannot read ${s.saTokenPath} (${err instanceof CredentialError ? (err.errno === 'EMPTY' ? 'empty' : err.errno) : describeError(err)}); check the projected service-account token volume`]);
      });
      auth = { method: s.authMethod, mount: s.authMount, role: s.authRole!, readJwt };
      break;
    }
    case 'approle': {
      const f = await openInput(s.approleSecretIdFile!, 'APPROLE_SECRET_ID_FILE', opts.watch, log, () => undefined);
      inputs.push(f);
      auth = { method: 'approle', mount: s.authMount, roleId: s.approleRoleId!, readSecretId: async () => f.current().trim() };
      break;
    }
    case 'token':
      auth = { method: 'token', token: s.vaultToken! };
      break;
  }

  const connection: ConnectionOptions = {
    addrs: s.vaultAddrs!,
    redirectOrigins: s.vaultRedirectOrigins,
    namespace: s.vaultNamespace,
    skipVerify: s.vaultSkipVerify,
    caCert,
    timeoutMs: s.vaultClientTimeoutMs,
    observe: metrics.observeVault,
    auth,
    clock: rt.clock,
    log: log.child({ module: 'vault' }),
  };
  // Imported here, not with this module: node-vault and node:http(s) load with it (src/main.ts says why).
  const { createVaultTransport } = await import('../vault/transport.js');
  const transport = createVaultTransport(connection);

  let source: BundleSource;
  let vault: VaultConnection;
  if (s.bundlePaths) {
    const reader = createVaultReader(connection, transport);
    vault = reader;
    source = vaultPathsSource({ vault: reader, clock: rt.clock, log, paths: s.bundlePaths, pollIntervalMs: s.bundlePollIntervalMs, renewBeforeMs: s.renewBeforeMs, extraRoots: () => extraRoots });
  } else {
    const ca = createVaultCa({ ...connection, signPath: s.pkiSignPath, pkiMount: s.pkiMount, issuerRef: s.pkiIssuerRef }, transport);
    vault = ca;
    source = pkiSignSource({
      vault: ca,
      clock: rt.clock,
      log,
      key: keySpec(s.keyType, s.keySize),
      subject: { commonName: s.certCommonName, organization: s.certOrganization, locality: s.clusterName, dnsSans: s.certDnsSans },
      certTtlMs: s.certTtlMs,
      signPath: s.pkiSignPath,
      extraRoots: () => extraRoots,
      generate: rt.generate,
      rotation: {
        mode: s.rootRotation,
        multiRoot: s.istioMultiRootMesh,
        soakMs: s.rootSwitchSoakMs,
        removeAfterMs: s.rootRemoveAfterMs,
        pollIntervalMs: s.issuerPollIntervalMs,
        istiodComparesSets: istiodComparesSets({ url: s.istiodMetricsUrl, fetchText: rt.fetchText, log }),
        onPlan: (plan, restartRequired) => metrics.recordRootRotation({ phase: plan.phase, nextAt: plan.nextAt, restartRequired }),
      },
    });
  }

  const keeper = new BundleKeeper({
    source,
    writer: new CertDirWriter(s.certDir, rt.clock, s.minPublishIntervalMs),
    clock: rt.clock,
    random: rt.random,
    log,
    metrics,
    certDir: s.certDir,
    renewBeforeMs: s.renewBeforeMs,
    createMissingCertDir: opts.dev,
  });

  late.vault = vault;
  return {
    keeper,
    vault,
    close: async () => {
      await Promise.all([source.close(), ...inputs.map((i) => i.close().catch(() => undefined))]);
    },
  };
}
