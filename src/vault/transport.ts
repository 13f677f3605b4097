/**
 * The only place node-vault is used. It is hardened here and nowhere else:
 * - TLS verification is decided by our settings only. node-vault on its own disables verification for
 *   ANY non-empty VAULT_SKIP_VERIFY (even "false"), so we always pass an explicit strictSSL.
 * - VAULT_CACERT is passed as `ca`; it can be swapped at run time (kubelet updates the mounted file).
 * - Every request has a timeout: node-vault's (an axios socket timeout) plus our own deadline, because
 *   a server that trickles bytes defeats a socket-idle timeout and node-vault ignores AbortSignal.
 * - Its `debug` output prints request bodies (the login JWT, secret IDs): we pass a no-op.
 * - node-vault also reads VAULT_TOKEN / VAULT_NAMESPACE / VAULT_PREFIX / VAULT_ADDR from the process
 *   environment: we overwrite every one of those fields after construction.
 * - No node-vault or axios error object leaves this file: their JSON carries the X-Vault-Token header.
 *   Failures become VaultRequestError (see errors.ts).
 */
import nodeVault from 'node-vault';
import type { Clock } from '../common/clock.js';
import { toVaultRequestError, vaultTimeoutError, type VaultCallContext } from './errors.js';

export type HttpMethod = 'GET' | 'POST' | 'LIST';

/** What the rest of src/vault asks of the transport. */
export interface VaultTransport {
  /**
   * Sends one request. `token` is sent as X-Vault-Token when given (never implicitly).
   * Resolves with the parsed JSON body (or undefined for 204). Throws VaultRequestError.
   */
  request(ctx: VaultCallContext & { method: HttpMethod; body?: unknown; token?: string }): Promise<unknown>;
  /** Replaces the CA bundle used to verify Vault's TLS certificate (undefined: system roots). */
  setCaCert(pem: string | undefined): void;
}

export interface TransportOptions {
  addr: string;
  namespace: string | undefined;
  skipVerify: boolean;
  caCert: string | undefined;
  timeoutMs: number;
  clock: Clock;
  /** Called once per request with its outcome, for the latency histogram. `code` is the HTTP status or an error class. */
  observe?: (operation: string, code: string, seconds: number) => void;
}

function buildClient(opts: TransportOptions, caCert: string | undefined) {
  const requestOptions: Record<string, unknown> = { strictSSL: !opts.skipVerify, timeout: opts.timeoutMs };
  if (caCert !== undefined) requestOptions.ca = caCert;
  // rpDefaults is read by node-vault but missing from its type definitions.
  const options: nodeVault.VaultOptions & { rpDefaults: Record<string, unknown> } = {
    apiVersion: 'v1',
    endpoint: opts.addr,
    debug: () => {},
    rpDefaults: { strictSSL: !opts.skipVerify, timeout: opts.timeoutMs },
    requestOptions,
  };
  const client = nodeVault(options);
  // Constructor falls back to process.env for these; pin them to our settings.
  client.endpoint = opts.addr.replace(/\/$/, '');
  (client as unknown as { pathPrefix: string }).pathPrefix = '';
  (client as unknown as { token: string | undefined }).token = undefined;
  (client as unknown as { namespace: string | undefined }).namespace = opts.namespace;
  return client;
}

/** Creates the hardened transport. Never throws on construction for a reachable or unreachable address. */
export function createVaultTransport(opts: TransportOptions): VaultTransport {
  let client = buildClient(opts, opts.caCert);

  return {
    setCaCert(pem) {
      client = buildClient(opts, pem);
    },
    async request(ctx) {
      const headers: Record<string, string> = {};
      if (ctx.token !== undefined) headers['X-Vault-Token'] = ctx.token;
      const start = performance.now();
      let code = 'error';
      const deadline = new AbortController();
      try {
        const call =
          ctx.method === 'GET'
            ? client.read(ctx.path, { headers })
            : ctx.method === 'LIST'
              ? client.list(ctx.path, { headers })
              : client.write(ctx.path, ctx.body ?? {}, { headers });
        // Our own deadline: the node-vault promise is left to settle (and be ignored) if it loses.
        const timeout = opts.clock.sleep(opts.timeoutMs + 250, deadline.signal).then(
          () => {
            throw vaultTimeoutError(ctx, opts.timeoutMs);
          },
          () => undefined,
        );
        call.catch(() => undefined);
        const body = await Promise.race([call, timeout]);
        code = '200';
        return body;
      } catch (err) {
        const mapped = toVaultRequestError(err, ctx, opts.timeoutMs);
        code = mapped.status !== undefined ? String(mapped.status) : mapped.networkCode;
        throw mapped;
      } finally {
        deadline.abort();
        opts.observe?.(ctx.operation, code, (performance.now() - start) / 1000);
      }
    },
  };
}
