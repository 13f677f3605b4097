/**
 * A real OpenBao for integration tests: `bao server -dev` on a free loopback port, configured with a
 * root CA at pki/, the signing policy and jwt auth (src/dev/dev-environment.ts), stopped afterwards.
 */
import { afterAll, beforeAll } from 'vitest';
import { startDevEnvironment, type DevEnvironment } from '../../src/dev/dev-environment.js';
import { vaultBin } from './tools.js';

export interface OpenBaoOptions {
  tls?: boolean;
  rootKeyType?: 'rsa' | 'ec';
}

/** Starts one server for the enclosing describe block. `get()` returns it inside tests. */
export function useOpenBao(opts: OpenBaoOptions = {}): { get(): DevEnvironment; available: boolean } {
  const bin = vaultBin();
  let env: DevEnvironment | undefined;
  beforeAll(async () => {
    if (!bin) return;
    env = await startDevEnvironment({ bin, pathEnv: process.env.PATH, ...opts });
  });
  afterAll(async () => {
    await env?.stop();
  });
  return {
    available: bin !== '',
    get() {
      if (!env) throw new Error('OpenBao is not running');
      return env;
    },
  };
}

export async function withOpenBao<T>(fn: (env: DevEnvironment) => Promise<T>, opts: OpenBaoOptions = {}): Promise<T> {
  const env = await startDevEnvironment({ bin: vaultBin(), pathEnv: process.env.PATH, ...opts });
  try {
    return await fn(env);
  } finally {
    await env.stop();
  }
}
