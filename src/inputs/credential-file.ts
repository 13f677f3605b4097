/**
 * Reads credential files for Vault log-in. The service-account token is re-read at every login because
 * kubelet rotates projected tokens; the content is never logged or put in an error message.
 */
import fs from 'node:fs/promises';
import { AgentError } from '../common/errors.js';

export class CredentialError extends AgentError {
  /** ENOENT, EACCES... or 'EMPTY'. */
  readonly errno: string;
  constructor(message: string, errno: string) {
    super(message, { code: 'CREDENTIALS_UNREADABLE', reason: 'credentials_unreadable', retryable: false });
    this.errno = errno;
  }
}

/** Returns the trimmed content of a credential file; throws CredentialError naming the setting. */
export async function readCredentialFile(file: string, setting: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'error';
    throw new CredentialError(`${setting}: cannot read ${what} at ${file} (${code}); check the projected volume and its mount`, code);
  }
  const value = text.trim();
  if (value === '') throw new CredentialError(`${setting}: ${what} at ${file} is empty`, 'EMPTY');
  return value;
}
