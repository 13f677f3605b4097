/**
 * The narrow interface the vault-paths source uses: read a KV secret (v1 or v2, found as `vault kv get`
 * finds it), ask a KV v2 secret for its version only, and read certificates from PKI; plus the shared
 * connection facts (token expiry, TLS CA, revoke at exit). Every call logs in if needed and goes through
 * the hardened transport. A fake of it (test/helpers/fake-vault-reader.ts) drives the unit tests.
 */
import { findKvMount, readKvCurrentVersion, readKvSecret, type KvMount, type KvSecret } from './kv-api.js';
import { readPkiCertificates, type PkiCertificates } from './pki-api.js';
import type { VaultTransport } from './transport.js';
import { openConnection, type ConnectionOptions, type VaultConnection } from './vault-connection.js';

export interface VaultReader extends VaultConnection {
  /**
   * Reads the KV secret at `path` (as `vault kv get` takes it). `setting` names the setting that holds
   * the path, for error messages. Throws VaultRequestError or AgentError with reason and retryable set.
   */
  readKv(path: string, setting: string, signal?: AbortSignal): Promise<KvSecret>;
  /** The current version of a KV v2 secret from its metadata; undefined on KV v1 (no versions). */
  kvVersion(path: string, setting: string, signal?: AbortSignal): Promise<number | undefined>;
  /** `certificate` and `ca_chain` of a PKI read such as `<mount>/cert/ca`. */
  readPki(path: string, setting: string, signal?: AbortSignal): Promise<PkiCertificates>;
}

/** `transport` is made with the same options (createVaultTransport), as for createVaultCa. */
export function createVaultReader(opts: ConnectionOptions, transport: VaultTransport): VaultReader {
  const { session, connection } = openConnection(opts, transport);
  // A mount's type and version do not change under a running agent; found once per path.
  const mounts = new Map<string, KvMount>();
  const mountOf = async (path: string, setting: string, token: string, signal?: AbortSignal) => {
    let m = mounts.get(path);
    if (!m) mounts.set(path, (m = await findKvMount(transport, path, setting, token, signal)));
    return m;
  };
  return {
    ...connection,
    readKv: (path, setting, signal) => session.withToken(async (token) => readKvSecret(transport, await mountOf(path, setting, token, signal), setting, token, signal), signal),
    kvVersion: (path, setting, signal) =>
      session.withToken(async (token) => {
        const kv = await mountOf(path, setting, token, signal);
        return kv.version === 2 ? readKvCurrentVersion(transport, kv, setting, token, signal) : undefined;
      }, signal),
    readPki: (path, setting, signal) => session.withToken((token) => readPkiCertificates(transport, path, setting, token, signal), signal),
  };
}
