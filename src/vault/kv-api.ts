/**
 * Reading a KV secret the way `vault kv get` does: the mount and its version are found with
 * `sys/internal/ui/mounts/<path>` (answered for any token holding a capability on the path, so the
 * agent's least-privilege policy is enough), then KV v1 is read at `<mount>/<path>` and KV v2 at
 * `<mount>/data/<path>`, with its version; KV v2's `<mount>/metadata/<path>` gives `current_version`
 * without any secret data, which makes polling cheap. Answers are validated with zod; errors name the
 * path and the setting that names it. Values are never put into an error message.
 */
import * as z from 'zod/mini';
import { AgentError } from '../common/errors.js';
import type { VaultRequest, VaultTransport } from './transport.js';
import { requestValidated } from './validated-request.js';

export interface KvMount {
  /** Mount path without the trailing slash, e.g. `secret`. */
  mount: string;
  version: 1 | 2;
  /** The secret's path inside the mount. */
  name: string;
}

/** What was read: the secret's fields as Vault returns them, and its KV v2 version. */
export interface KvSecret {
  values: Readonly<Record<string, unknown>>;
  /** KV v2 version of what was read; undefined on KV v1 (which keeps none). */
  version: number | undefined;
}

const fields = z.record(z.string(), z.unknown());

const mountResponse = z.object({
  data: z.object({
    path: z.string().check(z.minLength(1)),
    type: z.string(),
    options: z.nullish(z.record(z.string(), z.unknown())),
  }),
});

const kv1Response = z.object({ data: fields });

const kv2Response = z.object({
  data: z.object({
    data: z.nullable(fields),
    metadata: z.object({ version: z.number(), deletion_time: z.optional(z.string()), destroyed: z.optional(z.boolean()) }),
  }),
});

const metadataResponse = z.object({ data: z.object({ current_version: z.number() }) });

/** The API path of the secret's data. */
export function kvDataPath(kv: KvMount): string {
  return kv.version === 2 ? `${kv.mount}/data/${kv.name}` : `${kv.mount}/${kv.name}`;
}

/**
 * Finds the mount holding `path` and its KV version. Throws VaultRequestError (403 when the token has
 * no capability on the path) or AgentError(input_invalid) when the path is not in a KV mount.
 */
export async function findKvMount(transport: VaultTransport, path: string, setting: string, token: string, signal?: AbortSignal): Promise<KvMount> {
  const doing = `finding the KV mount and version of "${path}"`;
  const { data: d } = await requestValidated(transport, mountResponse, {
    operation: 'read',
    method: 'GET',
    path: `sys/internal/ui/mounts/${path}`,
    token,
    signal,
    doing,
    deniedHint: `Vault answers this only for a token with a capability on the secret: the policy must grant "read" on it (KV v1: <mount>/<path>; KV v2: <mount>/data/<path>); check the policy attached to the auth role, and ${setting}`,
    notFoundHint: `nothing is mounted at "${path}": check ${setting}`,
  });
  const mount = d.path.replace(/\/+$/, '');
  if (d.type !== 'kv' && d.type !== 'generic') {
    throw new AgentError(`while ${doing}: "${path}" is in a "${d.type}" secrets engine mounted at ${mount}/, not in a KV one (${setting} must name a KV secret, or a PKI read: <mount>/cert/ca, <mount>/cert/ca_chain, <mount>/issuer/<ref>/json)`, {
      code: 'NOT_A_KV_SECRET',
      reason: 'input_invalid',
      retryable: false,
    });
  }
  const name = path.startsWith(`${mount}/`) ? path.slice(mount.length + 1) : '';
  if (!name) {
    throw new AgentError(`while ${doing}: "${path}" is the KV mount itself, not a secret in it (check ${setting})`, { code: 'NOT_A_KV_SECRET', reason: 'input_invalid', retryable: false });
  }
  return { mount, name, version: String(d.options?.version ?? '1') === '2' ? 2 : 1 };
}

function notFoundHint(kv: KvMount, setting: string): string {
  const hint = `no secret "${kv.name}" in the KV v${kv.version} mount ${kv.mount}/ (or its current version is deleted): check ${setting}`;
  // People copy API paths; the setting takes the path as `vault kv get` does.
  if (kv.version === 2 && kv.name.startsWith('data/')) return `${hint}; write the path as for "vault kv get", without /data/: ${kv.mount}/${kv.name.slice(5)}`;
  return hint;
}

/** Reads the secret. Throws VaultRequestError (403, 404...) or AgentError(invalid_response). */
export async function readKvSecret(transport: VaultTransport, kv: KvMount, setting: string, token: string, signal?: AbortSignal): Promise<KvSecret> {
  const api = kvDataPath(kv);
  const doing = `reading the KV secret ${kv.mount}/${kv.name}`;
  const request: VaultRequest = {
    operation: 'read',
    method: 'GET',
    path: api,
    token,
    signal,
    doing,
    deniedHint: `the token's policy must grant "read" on ${api}; check the policy attached to the auth role, and ${setting}`,
    notFoundHint: notFoundHint(kv, setting),
  };
  if (kv.version === 1) return { values: (await requestValidated(transport, kv1Response, request)).data, version: undefined };
  const { data: d } = await requestValidated(transport, kv2Response, request);
  if (d.data === null) {
    throw new AgentError(`while ${doing} at ${api}: version ${d.metadata.version} is ${d.metadata.destroyed ? 'destroyed' : 'deleted'} (write the bundle again, or undelete it; check ${setting})`, {
      code: 'KV_VERSION_DELETED',
      reason: 'input_invalid',
      retryable: false,
    });
  }
  return { values: d.data, version: d.metadata.version };
}

/** KV v2: the secret's current_version, read from its metadata (no secret data travels). */
export async function readKvCurrentVersion(transport: VaultTransport, kv: KvMount, setting: string, token: string, signal?: AbortSignal): Promise<number> {
  const api = `${kv.mount}/metadata/${kv.name}`;
  const res = await requestValidated(transport, metadataResponse, {
    operation: 'read',
    method: 'GET',
    path: api,
    token,
    signal,
    doing: `reading the version of ${kv.mount}/${kv.name}`,
    deniedHint: `the token's policy does not grant "read" on ${api}; grant it for a cheap poll (the agent then reads only the version), or leave it and the agent reads the whole secret instead`,
    notFoundHint: notFoundHint(kv, setting),
  });
  return res.data.current_version;
}
