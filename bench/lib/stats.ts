/** Order statistics for benchmark samples (nearest-rank percentiles: no interpolation between runs). */

export interface Summary {
  n: number;
  median: number;
  p90: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile of `values` (p in 0..100). Throws on an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of no samples');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** Median as the mean of the two middle values for an even count. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of no samples');
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function summarize(values: readonly number[]): Summary {
  return { n: values.length, median: median(values), p90: percentile(values, 90), min: Math.min(...values), max: Math.max(...values) };
}

/** `12.3` style with a fixed number of decimals. */
export function fmt(v: number, decimals = 1): string {
  return v.toFixed(decimals);
}

export function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1);
}
