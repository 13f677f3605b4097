/**
 * The two PKI calls the agent needs. Responses are validated with zod before anything else sees them;
 * a body that is not the documented shape (a proxy's HTML page, truncated JSON) is an invalid_response.
 */
import * as z from 'zod/mini';
import type { VaultTransport } from './transport.js';
import { requestValidated } from './validated-request.js';

/** Parameters of `<mount>/root/sign-intermediate`, as Vault names them. */
export interface SignIntermediateParams {
  csr: string;
  common_name: string;
  /** A list: Vault splits a string on commas, so a value with a comma must travel as one array element. */
  organization?: string[];
  locality?: string[];
  alt_names?: string;
  ttl: string;
  max_path_length: number;
  exclude_cn_from_sans: boolean;
  use_csr_values: boolean;
  format: 'pem';
}

export interface SignIntermediateResult {
  certificate: string;
  issuingCa: string;
  caChain: string[];
  serialNumber: string | undefined;
  warnings: string[];
}

export interface IssuerInfo {
  certificate: string;
  caChain: string[];
}

/** One issuer of a PKI mount, as `LIST <mount>/issuers` and `<mount>/issuer/<id>/json` describe it. */
export interface IssuerEntry extends IssuerInfo {
  id: string;
  name: string;
  isDefault: boolean;
}

const pemString = z.string().check(z.minLength(1), z.maxLength(1_000_000));

const signResponse = z.object({
  data: z.object({
    certificate: pemString,
    issuing_ca: pemString,
    ca_chain: z.nullish(z.array(pemString).check(z.maxLength(20))),
    serial_number: z.optional(z.string().check(z.maxLength(200))),
  }),
  warnings: z.nullish(z.array(z.string())),
});

/** A mount has a handful of issuers; a few dozen is already unusual. */
const MAX_ISSUERS = 32;

const issuerListResponse = z.object({
  data: z.object({
    keys: z.array(z.string().check(z.maxLength(100))).check(z.maxLength(MAX_ISSUERS)),
    key_info: z.record(z.string(), z.object({ is_default: z.optional(z.boolean()), issuer_name: z.optional(z.string()), serial_number: z.optional(z.string().check(z.maxLength(200))) })),
  }),
});

const issuerResponse = z.object({
  data: z.object({
    certificate: pemString,
    ca_chain: z.nullish(z.array(pemString).check(z.maxLength(20))),
  }),
});

/** Signs the CSR. Throws VaultRequestError or AgentError(invalid_response). */
export async function signIntermediate(
  transport: VaultTransport,
  path: string,
  params: SignIntermediateParams,
  token: string,
  signal?: AbortSignal,
): Promise<SignIntermediateResult> {
  const { data: d, warnings } = await requestValidated(transport, signResponse, {
    operation: 'sign',
    method: 'POST',
    path,
    body: params,
    token,
    signal,
    doing: 'signing the intermediate CSR',
    deniedHint: `the token's policy must grant "update" on ${path}; check the policy attached to the auth role, and PKI_SIGN_PATH`,
    notFoundHint: `check PKI_SIGN_PATH: "${path}" is not a signing endpoint of a PKI mount`,
  });
  return {
    certificate: d.certificate,
    issuingCa: d.issuing_ca,
    caChain: d.ca_chain ?? [],
    serialNumber: d.serial_number,
    warnings: warnings ?? [],
  };
}

/**
 * Reads the signing issuer's certificate and chain. Vault serves it without a token, but the token is
 * sent anyway: for a mount that does not exist Vault answers an anonymous request with a bare 403,
 * while an authenticated one gets the ACL's verdict or a 404 that can name the wrong setting.
 */
export async function readIssuer(transport: VaultTransport, mount: string, issuerRef: string, token: string | undefined, signal?: AbortSignal): Promise<IssuerInfo> {
  const { data: d } = await requestValidated(transport, issuerResponse, {
    operation: 'read_issuer',
    method: 'GET',
    path: `${mount}/issuer/${issuerRef}/json`,
    doing: "reading the signing issuer's certificate",
    token,
    signal,
    deniedHint: `Vault answers 403 for a PKI mount that does not exist: check that "${mount}" in PKI_SIGN_PATH is the PKI mount, and the policy attached to the auth role`,
    notFoundHint: `no issuer "${issuerRef}" at mount "${mount}": check PKI_SIGN_PATH (vault list ${mount}/issuers)`,
  });
  return { certificate: d.certificate, caChain: d.ca_chain ?? [] };
}

/**
 * Issuers as last read, by id, with the serial LIST gave for each. An issuer's certificate never changes
 * under its id, and its chain only when the mount's issuers change (or an operator sets a manual chain,
 * which a restart picks up; every signed chain is verified against the root the plan expects anyway), so
 * a look that finds the same ids and serials reads nothing more than the LIST.
 */
export type IssuerCache = Map<string, { serial: string; info: IssuerInfo }>;

/**
 * Every issuer of `mount` with its certificate: `LIST <mount>/issuers`, then `issuer/<id>/json` for each
 * (both unauthenticated in Vault and OpenBao, so a poll needs no login), or from `cache` while the ids
 * and serials are those it holds (servers that give no serial in the LIST are always read).
 */
export async function listIssuers(transport: VaultTransport, mount: string, token: string | undefined, signal?: AbortSignal, cache?: IssuerCache): Promise<IssuerEntry[]> {
  const { data: d } = await requestValidated(transport, issuerListResponse, {
    operation: 'read_issuer',
    method: 'LIST',
    path: `${mount}/issuers`,
    doing: 'listing the PKI issuers',
    token,
    signal,
    deniedHint: `Vault answers 403 for a PKI mount that does not exist: check that "${mount}" in PKI_SIGN_PATH is the PKI mount`,
    notFoundHint: `no issuers at mount "${mount}": check PKI_SIGN_PATH`,
  });
  // An issuer added or deleted can change the others' chains: then read them all again.
  if (cache && (cache.size !== d.keys.length || d.keys.some((id) => !cache.has(id)))) cache.clear();
  const out: IssuerEntry[] = [];
  for (const id of d.keys) {
    const info = d.key_info[id];
    const serial = info?.serial_number;
    const hit = serial === undefined ? undefined : cache?.get(id);
    const cert = hit !== undefined && hit.serial === serial ? hit.info : await readIssuer(transport, mount, id, token, signal);
    if (cache && serial !== undefined) cache.set(id, { serial, info: cert });
    out.push({ id, name: info?.issuer_name ?? '', isDefault: info?.is_default === true, ...cert });
  }
  return out;
}

/** The certificate fields of a PKI read: `certificate`, and `ca_chain` (one string, or a list). */
export interface PkiCertificates {
  values: { certificate?: string; ca_chain?: string | string[] };
}

const certsResponse = z.object({
  data: z.object({
    certificate: z.nullish(pemString),
    ca_chain: z.nullish(z.union([pemString, z.array(pemString).check(z.maxLength(20))])),
  }),
});

/**
 * A PKI read of certificates only, which Vault serves without a token (`<mount>/cert/ca`,
 * `<mount>/cert/ca_chain`, `<mount>/cert/<serial>`, `<mount>/issuer/<ref>/json`); the token is sent
 * anyway, for the reason given at readIssuer. Throws VaultRequestError or AgentError(invalid_response).
 */
export async function readPkiCertificates(transport: VaultTransport, path: string, setting: string, token: string, signal?: AbortSignal): Promise<PkiCertificates> {
  const { data: d } = await requestValidated(transport, certsResponse, {
    operation: 'read',
    method: 'GET',
    path,
    doing: 'reading certificates from PKI',
    token,
    signal,
    deniedHint: `Vault answers 403 for a PKI mount that does not exist: check the mount in ${setting}, and the policy attached to the auth role (it should grant "read" on ${path})`,
    notFoundHint: `"${path}" is not a PKI read (check ${setting}: <mount>/cert/ca, <mount>/cert/ca_chain or <mount>/issuer/<ref>/json)`,
  });
  return { values: { ...(d.certificate ? { certificate: d.certificate } : {}), ...(d.ca_chain ? { ca_chain: d.ca_chain } : {}) } };
}
