/**
 * How the agent is started: a Node.js binary, its flags and what it runs (a bundle, or a V8 startup
 * snapshot), plus environment. Everything the bench and the soak spawn of ours goes through one of these,
 * so the Node.js binary (--node) and the way the image starts the agent are chosen in one place.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export interface Launch {
  /** argv before the agent's own arguments; argv[0] is the Node.js binary. */
  argv: string[];
  /** Added to the process environment (e.g. NODE_COMPILE_CACHE). */
  env: Record<string, string>;
}

export interface NodeBinary {
  path: string;
  /** `node -v` of that binary, e.g. v24.22.3. */
  version: string;
}

/** The Node.js binary given with --node (default: the one running this script). Throws when it does not run. */
export function nodeBinary(path: string | undefined): NodeBinary {
  const bin = path ?? process.execPath;
  if (!fs.existsSync(bin)) throw new Error(`--node ${bin}: no such file (scripts/image-node.sh install prints the image's Node.js binary)`);
  const version = execFileSync(bin, ['-v'], { encoding: 'utf8' }).trim();
  return { path: bin, version };
}

/** `node [flags] <script>`. */
export function scriptLaunch(node: NodeBinary, script: string, flags: string[] = [], env: Record<string, string> = {}): Launch {
  return { argv: [node.path, ...flags, script], env };
}

/** The same launch with more Node.js flags right after the binary (profiling, heap settings). */
export function withNodeFlags(l: Launch, flags: string[]): Launch {
  return { argv: [l.argv[0]!, ...flags, ...l.argv.slice(1)], env: l.env };
}

/** Command and arguments for spawn(). */
export function command(l: Launch, args: readonly string[]): [string, string[]] {
  return [l.argv[0]!, [...l.argv.slice(1), ...args]];
}
