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
    `  roots:`,
    ...b.roots.map((r) => `    - ${r.subject} SHA-256 ${r.fingerprint} (notAfter ${new Date(r.notAfter).toISOString()})`),
  ];
  return { ok: true, lines, bundle: b };
}
