/**
 * How Vault looks from here, cheaply and without a token: `sys/health?standbyok=true` (any unsealed
 * node answers 200, active or standby) and, for an HA cluster, `sys/leader` (the active node's
 * address). During a failover every standby answers health as usual and keeps naming the dead leader
 * until an election ends, so what matters to a waiting client is a CHANGE: unreachable or sealed to
 * answering, or one leader to another. The renewal loop compares these states while it waits.
 */
import * as z from 'zod/mini';
import type { VaultTransport } from './transport.js';

const healthBody = z.object({ initialized: z.boolean(), sealed: z.boolean() });
const leaderBody = z.object({ ha_enabled: z.boolean(), leader_address: z.optional(z.string()) });

export interface VaultState {
  /** Some node answers, initialized and unsealed. */
  up: boolean;
  /** Opaque: equal strings mean nothing changed ("down", "sealed", "leader:<addr>", "up"). */
  fingerprint: string;
}

/** Never throws: an unreachable Vault is a state too. */
export async function vaultState(transport: VaultTransport, signal?: AbortSignal): Promise<VaultState> {
  try {
    const health = healthBody.safeParse(await transport.request({ operation: 'health', method: 'GET', path: 'sys/health?standbyok=true', doing: 'checking whether Vault answers', signal }));
    if (!health.success) return { up: false, fingerprint: 'not-vault' };
    if (!health.data.initialized || health.data.sealed) return { up: false, fingerprint: 'sealed' };
    const leader = leaderBody.safeParse(await transport.request({ operation: 'health', method: 'GET', path: 'sys/leader', doing: "asking Vault for its active node", signal }));
    if (!leader.success || !leader.data.ha_enabled) return { up: true, fingerprint: 'up' };
    return { up: true, fingerprint: `leader:${leader.data.leader_address ?? ''}` };
  } catch {
    return { up: false, fingerprint: 'down' };
  }
}
