/**
 * A ready-to-use local Vault for the agent: a dev OpenBao with a root CA at `pki/`, the signing policy,
 * and jwt auth trusting a locally generated key, plus a service-account-like token on disk. The `dev`
 * command runs the agent against it; the integration tests build on it.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { adminApi, type AdminApi } from './admin-api.js';
import { setupJwtAuth, setupPki, signerPolicy, writePolicy } from './configure.js';
import { startDevServer, type DevServer } from './dev-server.js';
import { generateJwtKey, serviceAccountJwt, type JwtKey, type ServiceAccountRef } from './jwt.js';

export const DEV_SA: ServiceAccountRef = { namespace: 'istio-system', name: 'istiod' };
export const DEV_POLICY = 'istiod-ca';
export const DEV_ROLE = 'istiod';

export interface DevEnvironment {
  server: DevServer;
  api: AdminApi;
  jwtKey: JwtKey;
  rootPem: string;
  /** Folder for the token file (and whatever the caller wants); removed by stop(). */
  workDir: string;
  saTokenPath: string;
  /** File (0600) holding the dev server's root token, for a person who wants to explore it. */
  rootTokenPath: string;
  /** Settings that point the agent at this server with jwt auth. */
  env: Record<string, string>;
  /** Writes a fresh token for `sa` (default istiod) to saTokenPath. */
  refreshToken(sa?: ServiceAccountRef, ttlSeconds?: number): Promise<void>;
  stop(): Promise<void>;
}

/** What the agent needs on a configured server, whatever its topology (dev server, HA cluster). */
export interface AgentAccess {
  jwtKey: JwtKey;
  rootPem: string;
  saTokenPath: string;
  /** Settings for jwt auth against this configuration, without VAULT_ADDR. */
  env: Record<string, string>;
  /** Writes a fresh token for `sa` (default istiod) to saTokenPath. */
  refreshToken(sa?: ServiceAccountRef, ttlSeconds?: number): Promise<void>;
}

/**
 * Configures a fresh server the way the dev environment is: a root CA at `pki/`, the signing policy and
 * jwt auth trusting a new local key; writes an SA-like token into `workDir` (which the caller owns).
 */
export async function prepareAgentAccess(api: AdminApi, workDir: string, o: { rootKeyType?: 'rsa' | 'ec' } = {}): Promise<AgentAccess> {
  const rootPem = await setupPki(api, { mount: 'pki', rootCommonName: 'Dev Mesh Root CA', keyType: o.rootKeyType ?? 'ec' });
  await writePolicy(api, DEV_POLICY, signerPolicy('pki'));
  const jwtKey = generateJwtKey();
  await setupJwtAuth(api, { mount: 'jwt', role: DEV_ROLE, policy: DEV_POLICY, sa: DEV_SA, publicKeyPem: jwtKey.publicKeyPem });
  const saTokenPath = path.join(workDir, 'sa-token');
  const refreshToken = async (sa = DEV_SA, ttlSeconds = 24 * 3600) => {
    const tmp = `${saTokenPath}.tmp`;
    await fs.writeFile(tmp, serviceAccountJwt(jwtKey.privateKey, sa, { ttlSeconds }), { mode: 0o600 });
    await fs.rename(tmp, saTokenPath);
  };
  await refreshToken();
  return { jwtKey, rootPem, saTokenPath, refreshToken, env: { AUTH_METHOD: 'jwt', AUTH_MOUNT: 'jwt', AUTH_ROLE: DEV_ROLE, SA_TOKEN_PATH: saTokenPath } };
}

export async function startDevEnvironment(o: { bin: string; pathEnv?: string; tls?: boolean; rootKeyType?: 'rsa' | 'ec' }): Promise<DevEnvironment> {
  const server = await startDevServer({ bin: o.bin, tls: o.tls, pathEnv: o.pathEnv });
  let workDir: string | undefined;
  try {
    const api = adminApi(server.addr, server.rootToken, server.tlsCaPem);
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ivagent-dev-'));
    const access = await prepareAgentAccess(api, workDir, { rootKeyType: o.rootKeyType });
    const rootTokenPath = path.join(workDir, 'root-token');
    await fs.writeFile(rootTokenPath, server.rootToken, { mode: 0o600 });
    const dir = workDir;
    return {
      rootTokenPath,
      server,
      api,
      jwtKey: access.jwtKey,
      rootPem: access.rootPem,
      workDir,
      saTokenPath: access.saTokenPath,
      env: { VAULT_ADDR: server.addr, ...access.env },
      refreshToken: access.refreshToken,
      stop: async () => {
        await server.stop();
        await fs.rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await server.stop();
    if (workDir) await fs.rm(workDir, { recursive: true, force: true });
    throw err;
  }
}
