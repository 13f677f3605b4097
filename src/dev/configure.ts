/**
 * Configures a dev/test server the way the production setup script (manifests/vault/setup.sh) does:
 * a root PKI mount, a least-privilege signing policy, and auth roles bound to istiod's service account.
 */
import type { AdminApi } from './admin-api.js';
import type { ServiceAccountRef } from './jwt.js';

export interface PkiSetup {
  mount: string;
  rootCommonName: string;
  keyType?: 'rsa' | 'ec';
  rootTtl?: string;
  maxLeaseTtl?: string;
  issuerName?: string;
}

async function enableMount(api: AdminApi, kind: 'mounts' | 'auth', path: string, body: unknown): Promise<void> {
  const res = await api.request('POST', `sys/${kind}/${path}`, body);
  const already = JSON.stringify(res.body ?? '').includes('already in use');
  if (res.status >= 300 && !already) throw new Error(`enabling ${kind} ${path}: HTTP ${res.status}: ${JSON.stringify(res.body)}`);
}

/** Enables a PKI mount and generates an internal root. Returns the root PEM. */
export async function setupPki(api: AdminApi, o: PkiSetup): Promise<string> {
  await enableMount(api, 'mounts', o.mount, { type: 'pki', config: { max_lease_ttl: o.maxLeaseTtl ?? '87600h' } });
  const res = (await api.call('POST', `${o.mount}/root/generate/internal`, {
    common_name: o.rootCommonName,
    issuer_name: o.issuerName ?? 'root-1',
    key_type: o.keyType ?? 'ec',
    key_bits: o.keyType === 'rsa' ? 2048 : 256,
    ttl: o.rootTtl ?? '87600h',
  })) as { data: { certificate: string } };
  return res.data.certificate;
}

/** The least-privilege policy: sign intermediates at the mount, read its CA. Nothing else. */
export function signerPolicy(mount: string): string {
  return [
    `path "${mount}/root/sign-intermediate" { capabilities = ["update"] }`,
    `path "${mount}/issuer/+/sign-intermediate" { capabilities = ["update"] }`,
    `path "${mount}/cert/ca" { capabilities = ["read"] }`,
    `path "${mount}/cert/ca_chain" { capabilities = ["read"] }`,
    `path "${mount}/issuer/+/json" { capabilities = ["read"] }`,
    '',
  ].join('\n');
}

export async function writePolicy(api: AdminApi, name: string, hcl: string): Promise<void> {
  await api.call('PUT', `sys/policies/acl/${name}`, { policy: hcl });
}

export interface RoleCommon {
  mount: string;
  role: string;
  policy: string;
  sa: ServiceAccountRef;
  audience?: string;
  tokenTtl?: string;
}

/** jwt auth validating tokens with a local public key (no API server needed). */
export async function setupJwtAuth(api: AdminApi, o: RoleCommon & { publicKeyPem: string; boundIssuer?: string }): Promise<void> {
  await enableMount(api, 'auth', o.mount, { type: 'jwt' });
  await api.call('POST', `auth/${o.mount}/config`, { jwt_validation_pubkeys: [o.publicKeyPem], ...(o.boundIssuer ? { bound_issuer: o.boundIssuer } : {}) });
  await api.call('POST', `auth/${o.mount}/role/${o.role}`, {
    role_type: 'jwt',
    user_claim: 'sub',
    bound_audiences: [o.audience ?? 'vault'],
    bound_subject: `system:serviceaccount:${o.sa.namespace}:${o.sa.name}`,
    token_policies: [o.policy],
    token_ttl: o.tokenTtl ?? '1h',
  });
}

/**
 * kubernetes auth whose TokenReview goes to `kubernetesHost` (a real API server or a test stand-in),
 * authenticated with `tokenReviewerJwt` when given (else with the JWT being reviewed, as Vault does).
 */
export async function setupKubernetesAuth(api: AdminApi, o: RoleCommon & { kubernetesHost: string; kubernetesCaPem: string; tokenReviewerJwt?: string }): Promise<void> {
  await enableMount(api, 'auth', o.mount, { type: 'kubernetes' });
  await api.call('POST', `auth/${o.mount}/config`, {
    kubernetes_host: o.kubernetesHost,
    kubernetes_ca_cert: o.kubernetesCaPem,
    disable_local_ca_jwt: true,
    ...(o.tokenReviewerJwt ? { token_reviewer_jwt: o.tokenReviewerJwt } : {}),
  });
  await api.call('POST', `auth/${o.mount}/role/${o.role}`, {
    bound_service_account_names: [o.sa.name],
    bound_service_account_namespaces: [o.sa.namespace],
    audience: o.audience ?? 'vault',
    token_policies: [o.policy],
    token_ttl: o.tokenTtl ?? '1h',
  });
}

/** AppRole with one secret-id. */
export async function setupAppRole(api: AdminApi, o: { mount: string; role: string; policy: string }): Promise<{ roleId: string; secretId: string }> {
  await enableMount(api, 'auth', o.mount, { type: 'approle' });
  await api.call('POST', `auth/${o.mount}/role/${o.role}`, { token_policies: [o.policy], token_ttl: '1h' });
  const roleId = ((await api.call('GET', `auth/${o.mount}/role/${o.role}/role-id`)) as { data: { role_id: string } }).data.role_id;
  const secretId = ((await api.call('POST', `auth/${o.mount}/role/${o.role}/secret-id`, {})) as { data: { secret_id: string } }).data.secret_id;
  return { roleId, secretId };
}

/** A token with only `policy`. */
export async function createToken(api: AdminApi, policy: string, ttl = '1h'): Promise<string> {
  const res = (await api.call('POST', 'auth/token/create', { policies: [policy], ttl, no_default_policy: false })) as { auth: { client_token: string } };
  return res.auth.client_token;
}
