/**
 * A VaultReader over in-memory KV (v1 and v2) and PKI answers, for unit tests of the vault-paths source:
 * what a test writes is what the next read returns; every call is counted by kind, so a test can tell a
 * cheap poll (KV v2 metadata) from a read of the secret. Failures are programmed per kind.
 */
import { VaultRequestError } from '../../src/vault/errors.js';
import type { VaultReader } from '../../src/vault/vault-reader.js';

interface KvEntry {
  version: 1 | 2;
  /** KV v2 keeps every version; KV v1 only the latest (versions.length stays 1). */
  versions: Record<string, unknown>[];
}

function httpError(operation: 'read', path: string, status: number): VaultRequestError {
  return new VaultRequestError(`while reading at ${path}: HTTP ${status}`, {
    ctx: { operation, path, doing: 'reading' },
    status,
    networkCode: 'http',
    reason: status === 403 ? 'vault_denied' : 'vault_error',
    retryable: false,
    code: status === 403 ? 'VAULT_DENIED' : 'VAULT_NOT_FOUND',
  });
}

/** A real read is I/O: yielding to the event loop keeps a loop that spins on reads from starving the test's timers. */
const io = () => new Promise<void>((r) => setImmediate(r));

export class FakeVaultReader implements VaultReader {
  private kv = new Map<string, KvEntry>();
  private pki = new Map<string, { certificate?: string; ca_chain?: string | string[] }>();
  readonly calls = { kvData: 0, kvMetadata: 0, pki: 0 };
  /** KV v2 paths whose metadata answers 403 (a policy granting only the data path). */
  readonly metadataDenied = new Set<string>();
  /** Thrown by the next reads of any kind, in order. */
  fail: Error[] = [];
  closed = false;

  /** Writes a KV secret (a new version on KV v2). */
  putKv(path: string, values: Record<string, unknown>, version: 1 | 2 = 1): void {
    const e = this.kv.get(path);
    if (!e || e.version !== version) this.kv.set(path, { version, versions: [values] });
    else if (version === 2) e.versions.push(values);
    else e.versions = [values];
  }

  putPki(path: string, values: { certificate?: string; ca_chain?: string | string[] }): void {
    this.pki.set(path, values);
  }

  async readKv(path: string) {
    await io();
    this.calls.kvData++;
    const err = this.fail.shift();
    if (err) throw err;
    const e = this.kv.get(path);
    if (!e) throw httpError('read', path, 404);
    return { values: { ...e.versions[e.versions.length - 1]! }, version: e.version === 2 ? e.versions.length : undefined };
  }

  async kvVersion(path: string) {
    await io();
    const e = this.kv.get(path);
    if (!e) throw httpError('read', path, 404);
    if (e.version === 1) return undefined;
    this.calls.kvMetadata++;
    const err = this.fail.shift();
    if (err) throw err;
    if (this.metadataDenied.has(path)) throw httpError('read', `${path.split('/')[0]}/metadata/${path.split('/').slice(1).join('/')}`, 403);
    return e.versions.length;
  }

  async readPki(path: string) {
    await io();
    this.calls.pki++;
    const err = this.fail.shift();
    if (err) throw err;
    const v = this.pki.get(path);
    if (!v) throw httpError('read', path, 404);
    return { values: { ...v } };
  }

  tokenExpiresAt(): number | undefined {
    return undefined;
  }

  async state() {
    return { up: true, fingerprint: 'up' };
  }

  async describeToken() {
    return { expiresAt: undefined, renewable: false };
  }

  setCaCert(): void {}

  async close(): Promise<void> {
    this.closed = true;
  }
}
