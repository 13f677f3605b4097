/**
 * Command-line flags: `--setting-name value` / `--setting-name=value` for every row of the settings
 * table, laid over the environment (flags win). An unknown flag is a configuration error that suggests
 * the closest known one; a secret is refused on the command line.
 */
import { ConfigError } from '../common/errors.js';
import { SETTINGS, flagName } from './settings.js';

const BY_ENV = new Map<string, (typeof SETTINGS)[number]>(SETTINGS.map((s) => [s.env, s]));

/** Edit distance (insertions, deletions, substitutions, adjacent swaps), for "did you mean". */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The known flag closest to `flag`, when it is close enough to be a typo. */
export function closestFlag(flag: string): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const s of SETTINGS) {
    const name = flagName(s.env);
    const d = distance(flag, name);
    if (!best || d < best.d) best = { name, d };
  }
  return best && best.d <= Math.max(3, Math.ceil(flag.length / 4)) ? best.name : undefined;
}

/**
 * Overlays `--flag value` / `--flag=value` on top of the environment. Returns the merged source and
 * the remaining positional arguments. Unknown flags are configuration errors.
 */
export function mergeFlags(
  env: Readonly<Record<string, string | undefined>>,
  args: readonly string[],
): { source: Record<string, string | undefined>; positional: string[] } {
  const source: Record<string, string | undefined> = { ...env };
  const positional: string[] = [];
  const problems: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const name = flag.slice(2).toUpperCase().replace(/-/g, '_');
    const row = BY_ENV.get(name);
    if (!row) {
      const near = closestFlag(flag);
      problems.push(`${flag}: unknown flag (${near ? `did you mean ${near}? ` : ''}see --help)`);
      if (eq === -1 && i + 1 < args.length && !args[i + 1]!.startsWith('--')) i++;
      continue;
    }
    if ('secret' in row && row.secret) {
      problems.push(`${flag}: not accepted on the command line (it would show in the process list); set ${name} in the environment`);
      if (eq === -1) i++;
      continue;
    }
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (i + 1 < args.length) value = args[++i];
    if (value === undefined) {
      problems.push(`${flag}: needs a value`);
      continue;
    }
    source[name] = value;
  }
  if (problems.length) throw new ConfigError(problems);
  return { source, positional };
}
