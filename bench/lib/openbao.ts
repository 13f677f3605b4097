/**
 * The benchmark's Vault: the same dev OpenBao the `dev` command and the integration tests use (pki/
 * root, policy istiod-ca, jwt auth role istiod, an SA-like token file), plus what the vault-agent
 * baseline needs: kv-v2 at secret/ holding a pre-made intermediate bundle at secret/istio-ca, readable
 * under the same policy, as in the "Vaulted Istio certificates" setup (vault-agent-init + templates).
 */
import { findVaultBinary } from '../../src/dev/bao-binary.js';
import { signerPolicy, writePolicy } from '../../src/dev/configure.js';
import { DEV_POLICY, startDevEnvironment, type DevEnvironment } from '../../src/dev/dev-environment.js';
import { PROJECT_ROOT } from './bundles.js';

export const KV_MOUNT = 'secret';
export const KV_SECRET = 'istio-ca';

/** Finds (installing when missing) the bao binary and starts a configured dev server. */
export async function startBao(): Promise<{ bin: string; env: DevEnvironment }> {
  const bin = findVaultBinary({ vaultBin: process.env.VAULT_BIN, pathEnv: process.env.PATH, projectRoot: PROJECT_ROOT, install: true, log: (m) => console.error(m) });
  const env = await startDevEnvironment({ bin, pathEnv: process.env.PATH });
  return { bin, env };
}

export interface BundleFilesText {
  caCert: string;
  caKey: string;
  certChain: string;
  rootCert: string;
}

/** Enables kv-v2 at secret/, stores `bundle` at secret/istio-ca, and lets the istiod-ca policy read it. */
export async function setupKvBundle(env: DevEnvironment, bundle: BundleFilesText): Promise<void> {
  const res = await env.api.request('POST', `sys/mounts/${KV_MOUNT}`, { type: 'kv', options: { version: '2' } });
  if (res.status >= 300 && !JSON.stringify(res.body).includes('already in use')) throw new Error(`enabling kv-v2 at ${KV_MOUNT}/: HTTP ${res.status}`);
  // A fresh kv-v2 mount needs a moment to upgrade before it accepts writes.
  for (let i = 0; ; i++) {
    const w = await env.api.request('POST', `${KV_MOUNT}/data/${KV_SECRET}`, {
      data: { ca_cert: bundle.caCert, ca_key: bundle.caKey, cert_chain: bundle.certChain, root_cert: bundle.rootCert },
    });
    if (w.status < 300) break;
    if (i > 100) throw new Error(`writing ${KV_MOUNT}/data/${KV_SECRET}: HTTP ${w.status}: ${JSON.stringify(w.body)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await writePolicy(env.api, DEV_POLICY, `${signerPolicy('pki')}path "${KV_MOUNT}/data/${KV_SECRET}" { capabilities = ["read"] }\n`);
}
