/**
 * `check [DIR]`: verify a cert dir as istiod would and describe it for a person: subject, issuer,
 * chain, expiry and when renewal is due under the current settings.
 */
import { describeError } from '../common/errors.js';
import { formatDuration } from '../common/duration.js';
import type { VerifiedBundle } from '../pki/bundle.js';
import { verifyBundle } from '../pki/verify.js';
import { readCertDir } from '../store/cert-dir-reader.js';
import { dueAt } from './renewal-policy.js';

export interface CheckReport {
  ok: boolean;
  lines: string[];
  bundle?: VerifiedBundle;
}

/** When the running agent will renew, as it reports it (its own settings decide, not this process's). */
export interface AgentSchedule {
  renewAt: number;
  from: string;
  /** Its root rotation state (root_rotation_* metrics), when it reports one. */
  rotation?: { phase: string; nextAt: number | undefined; restartRequired: boolean };
}

/**
 * The rotation state a cert dir shows by itself: the roots of root-cert.pem in file order, which one the
 * intermediate chains to, and the phase that implies (one root: steady; the intermediate on the newest
 * of several: switched, the older ones wait for removal; else added, the switch is to come). The running
 * agent's own view (from its metrics) is added when known: it also knows Vault's issuers and the clock.
 */
export function describeRotation(b: Pick<VerifiedBundle, 'roots' | 'anchor'>, now: number, agent?: AgentSchedule): string[] {
  const anchorDer = b.anchor.der;
  const lines = [`  roots:      ${b.roots.length} in root-cert.pem, in file order (istiod's citadel_server_root_cert_expiry_timestamp reports the first)`];
  b.roots.forEach((r, n) => {
    lines.push(`    ${n + 1}. ${r.subject} SHA-256 ${r.fingerprint} (notBefore ${new Date(r.notBefore).toISOString()}, notAfter ${new Date(r.notAfter).toISOString()})${r.der.equals(anchorDer) ? '  <- the intermediate chains to this one' : ''}`);
  });
  const others = b.roots.filter((r) => !r.der.equals(anchorDer));
  let state: string;
  if (others.length === 0) {
    state = 'steady: one root, no rotation in progress';
  } else if (others.every((r) => r.notBefore < b.anchor.notBefore)) {
    state = `switched: the intermediate chains to the newest root; ${others.map((r) => `"${r.subject}"`).join(', ')} stay${others.length === 1 ? 's' : ''} trusted until the agent removes ${others.length === 1 ? 'it' : 'them'} (ROOT_REMOVE_AFTER after the switch, or once Vault no longer has ${others.length === 1 ? 'it' : 'them'})`;
  } else {
    const newer = others.filter((r) => r.notBefore >= b.anchor.notBefore);
    state = `added: ${newer.map((r) => `"${r.subject}"`).join(', ')} ${newer.length === 1 ? 'is' : 'are'} trusted next to "${b.anchor.subject}", which the intermediate still chains to; the switch comes once Vault's signing issuer is the new root and ROOT_SWITCH_SOAK has passed (or: an EXTRA_TRUST_ROOTS_FILE root)`;
  }
  lines.push(`  rotation:   ${state}`);
  const r = agent?.rotation;
  if (r) {
    const next = r.nextAt === undefined ? 'nothing scheduled' : `next step ${new Date(r.nextAt).toISOString()} (${r.nextAt <= now ? 'due now' : `in ${formatDuration(r.nextAt - now)}`})`;
    lines.push(`              the running agent at ${agent.from}: ${r.phase}, ${next}${r.restartRequired ? '; a root change waits for a rolling restart of istiod (it runs without ISTIO_MULTIROOT_MESH)' : ''}`);
  }
  return lines;
}

export async function checkCertDir(dir: string, now: number, renewBeforeMs: number | undefined, agent?: AgentSchedule): Promise<CheckReport> {
  let outcome;
  try {
    outcome = await readCertDir(dir);
  } catch (err) {
    return { ok: false, lines: [`${dir}: cannot read: ${describeError(err)}`] };
  }
  if (outcome.state === 'absent') return { ok: false, lines: [`${dir}: no bundle (none of ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem)`] };
  if (outcome.state === 'incomplete') return { ok: false, lines: [`${dir}: incomplete bundle, missing ${outcome.missing.join(', ')}`] };
  if (outcome.bundle.brokenLinks.length) {
    return { ok: false, lines: [`${dir}: INVALID: ${outcome.bundle.brokenLinks.join(', ')} missing or not linked into ..data: istiod would not find them (the agent repairs this at its next start)`] };
  }
  let b: VerifiedBundle;
  try {
    b = verifyBundle(outcome.bundle.files, { now });
  } catch (err) {
    return { ok: false, lines: [`${dir}: INVALID: ${describeError(err)}`] };
  }
  const i = b.intermediate;
  const due = agent?.renewAt ?? dueAt(i.notBefore, i.notAfter, renewBeforeMs);
  const basis = agent
    ? `as the running agent at ${agent.from} reports it`
    : `computed with RENEW_BEFORE=${renewBeforeMs === undefined ? '(a third of the lifetime)' : formatDuration(renewBeforeMs)} from this environment; the running agent uses its own`;
  const lines = [
    `${dir}: valid${outcome.bundle.generation ? ` (generation ${outcome.bundle.generation})` : ''}`,
    `  subject:    ${i.subject}`,
    `  issuer:     ${i.issuer}`,
    `  serial:     ${i.serial}`,
    `  key:        ${i.keyType} ${i.keyBits}`,
    `  SANs:       ${i.dnsSans.join(', ') || '(none)'}`,
    `  notBefore:  ${new Date(i.notBefore).toISOString()}`,
    `  notAfter:   ${new Date(i.notAfter).toISOString()} (in ${formatDuration(i.notAfter - now)})`,
    `  renewal:    ${new Date(due).toISOString()} (${due <= now ? 'due now' : `in ${formatDuration(due - now)}`}; ${basis})`,
    `  chain:`,
    ...b.chain.map((c, n) => `    ${n + 1}. ${c.subject} (notAfter ${new Date(c.notAfter).toISOString()})`),
    ...describeRotation(b, now, agent),
  ];
  return { ok: true, lines, bundle: b };
}
