/**
 * Go/Vault duration syntax ("90s", "15m", "720h", "1h30m", "500ms"), the syntax Istio and Vault users
 * already write. Bare numbers are rejected: "30" is ambiguous (Vault reads seconds, Go rejects it).
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;

/** Milliseconds for a duration string, or undefined when it is not valid syntax. */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (s === '' ) return undefined;
  if (s === '0') return 0;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const m = PART.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2] as string]!;
  }
  return Math.round(total);
}

/** Short human form ("29d 23h", "4m 10s", "850ms") for logs and `check` output. */
export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(Math.round(ms));
  if (rest < 1000) return `${sign}${rest}ms`;
  const units: [string, number][] = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]];
  const out: string[] = [];
  for (const [u, size] of units) {
    const n = Math.floor(rest / size);
    if (n > 0 || (u === 's' && out.length === 0)) out.push(`${n}${u}`);
    rest -= n * size;
    if (out.length === 2) break;
  }
  return sign + out.join(' ');
}

/** Whole seconds in Vault's `ttl` syntax. */
export function toVaultTtl(ms: number): string {
  return `${Math.max(1, Math.floor(ms / 1000))}s`;
}
