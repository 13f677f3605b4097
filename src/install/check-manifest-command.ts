/**
 * `check-manifest [--audience AUD] [FILE|-]`: reads a rendered manifest (a file, or stdin for `-` or no
 * argument), checks every istiod Deployment in it, prints one line per problem on stderr (one `ok` line
 * per sound Deployment on stdout). Exit 0 sound, 1 problems, 2 unreadable input or bad usage.
 */
import fs from 'node:fs/promises';
import { describeError } from '../common/errors.js';
import { checkManifest, DEFAULT_TOKEN_AUDIENCE } from './check-manifest.js';
import { ManifestInputError, parseManifest } from './manifest-input.js';

export interface CheckManifestIo {
  out(line: string): void;
  err(line: string): void;
  /** All of standard input, as text. */
  readStdin?: () => Promise<string>;
}

export const CHECK_MANIFEST_USAGE = 'check-manifest [--audience AUD] [FILE|-]';

export async function checkManifestCommand(args: readonly string[], io: CheckManifestIo): Promise<number> {
  let audience = DEFAULT_TOKEN_AUDIENCE;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--audience' || a.startsWith('--audience=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[++i];
      if (!v) return usage(io, '--audience needs a value');
      audience = v;
    } else if (a.startsWith('--') && a !== '-') {
      return usage(io, `${a}: unknown flag`);
    } else {
      files.push(a);
    }
  }
  if (files.length > 1) return usage(io, `one input only (got ${files.length})`);
  const file = files[0] ?? '-';

  let text: string;
  try {
    if (file === '-') {
      if (!io.readStdin) throw new Error('no standard input available');
      text = await io.readStdin();
    } else {
      text = await fs.readFile(file, 'utf8');
    }
  } catch (err) {
    io.err(`check-manifest: cannot read ${file === '-' ? 'standard input' : file}: ${describeError(err)}`);
    return 2;
  }
  let objects;
  try {
    objects = await parseManifest(text, file === '-' ? 'standard input' : file);
  } catch (err) {
    if (err instanceof ManifestInputError) {
      io.err(`check-manifest: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const report = checkManifest(objects, { audience });
  for (const l of report.sound) io.out(l);
  for (const l of report.problems) io.err(l);
  return report.ok ? 0 : 1;
}

function usage(io: CheckManifestIo, problem: string): number {
  io.err(`check-manifest: ${problem} (usage: istiod-vault-agent ${CHECK_MANIFEST_USAGE})`);
  return 2;
}
