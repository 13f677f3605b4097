/** What the command line needs from the process, passed in so tests can run it in-process. */
import type { Settings } from '../config/settings.js';

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** Process signal hookup; tests pass their own. */
  onSignal(signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP', handler: () => void): void;
  cwd: string;
  /** True when stdout is a terminal (a person is watching). */
  isTty?: boolean;
  /** This process's id, for the "kill -HUP" hint. */
  pid?: number;
  /** All of standard input (check-manifest -). */
  readStdin?: () => Promise<string>;
}

export interface RunModeExtras {
  onStop?: () => Promise<void>;
  /** Set by `dev`: the settings it chose itself (no warning about them). */
  dev?: { chosen: readonly string[] };
}

export type RunMode = (name: 'init' | 'sidecar' | 'run', settings: Settings, io: CliIo, extra?: RunModeExtras) => Promise<number>;
