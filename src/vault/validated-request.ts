/**
 * A Vault request whose answer is checked against a zod schema before anything else sees it: a body that
 * is not the documented shape (a proxy's HTML page, truncated JSON, another server) becomes an
 * invalid_response naming the call and the first mismatch, never echoing the body.
 */
import type * as z from 'zod/mini';
import { AgentError } from '../common/errors.js';
import type { VaultRequest, VaultTransport } from './transport.js';

function firstIssue(err: { issues: readonly { path: PropertyKey[]; message: string }[] }): string {
  const i = err.issues[0];
  return i ? `${i.path.map(String).join('.') || 'body'}: ${i.message}` : 'unparseable';
}

/**
 * Sends `request` and returns its answer as `schema` parses it. Throws VaultRequestError (from the
 * transport), or AgentError(VAULT_INVALID_RESPONSE, invalid_response, retryable) for an answer of
 * another shape.
 */
export async function requestValidated<T>(transport: VaultTransport, schema: z.ZodMiniType<T>, request: VaultRequest): Promise<T> {
  const res = schema.safeParse(await transport.request(request));
  if (res.success) return res.data;
  throw new AgentError(`while ${request.doing} at ${request.path}: Vault's answer is not the expected shape (${firstIssue(res.error)}); a proxy or a different server may be answering at VAULT_ADDR`, {
    code: 'VAULT_INVALID_RESPONSE',
    reason: 'invalid_response',
    retryable: true,
  });
}
