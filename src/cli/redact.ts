/** VAULT_ADDR for a log line or a message: a user:password in the URL stays out. */
export function withoutCredentials(addr: string | undefined): string | undefined {
  if (!addr) return addr;
  try {
    const u = new URL(addr);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(not a URL)';
  }
}
