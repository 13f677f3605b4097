/** Small waiting helpers over an agent's parsed log lines (polling, so no waiter is left behind). */
import type { AgentRun, LogLine } from '../../helpers/agent-process.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The first line at index >= `from` matching `pred`, polled until `timeoutMs`; undefined on timeout. */
export async function nextLine(a: AgentRun, pred: (l: LogLine) => boolean, from: number, timeoutMs: number): Promise<{ line: LogLine; index: number } | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (let i = from; i < a.lines.length; i++) if (pred(a.lines[i]!)) return { line: a.lines[i]!, index: i };
    if (Date.now() > deadline || a.child.exitCode !== null || a.child.signalCode !== null) return undefined;
    await sleep(10);
  }
}

export const isPublished = (l: LogLine) => l.msg === 'published a new intermediate';
/** A failed attempt: one line, a warning while a retry can help, an error when a person must act. */
export const isFailure = (l: LogLine) => (l.level === 'warn' || l.level === 'error') && String(l.msg).startsWith('issuance failed');
/** The loop's failure line says what it keeps and when it retries (the same line as isFailure). */
export const isKeeping = (l: LogLine) => isFailure(l) && l.retryInMs !== undefined;
