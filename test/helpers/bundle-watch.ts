/**
 * A reader that keeps judging a cert dir while something else happens (a Vault failover, a storm):
 * it reads the dir as istiod would, back to back, and verifies what it finds at the instant it reads it
 * (chain, key pairing, validity now). Once a valid bundle has been seen, anything else (missing, invalid,
 * expired) is a problem. A check that straddles a publish (the `..data` target changed while it read) is
 * read again rather than counted: a reader opening four paths in turn can always straddle a rename.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { judgeDir } from '../evidence/support/cert-dir.js';
import { passTime } from './wait.js';

export interface BundleWatch {
  /** Completed checks. */
  readonly checks: number;
  /** What went wrong, with when (Date.now()); empty when the dir was always valid once first published. */
  readonly problems: readonly { at: number; problem: string }[];
  /** Serials seen, in order. */
  readonly serials: readonly string[];
  /** Stops reading; resolves after the check in progress. */
  stop(): Promise<void>;
}

export function watchBundle(dir: string): BundleWatch {
  const problems: { at: number; problem: string }[] = [];
  const serials: string[] = [];
  let checks = 0;
  let running = true;
  let seenValid = false;
  const data = () => fs.readlink(path.join(dir, '..data')).catch(() => undefined);
  const loop = (async () => {
    while (running) {
      const before = await data();
      const v = await judgeDir(dir);
      const after = await data();
      checks++;
      if (before !== after) continue;
      if (v.ok && v.state === 'valid') {
        seenValid = true;
        if (serials.at(-1) !== v.serial) serials.push(v.serial);
      } else if (!v.ok) {
        problems.push({ at: Date.now(), problem: v.problem });
      } else if (seenValid) {
        problems.push({ at: Date.now(), problem: 'the bundle disappeared' });
      }
      // The reader's pace, a check every 20 ms or so: it yields to the event loop between checks (the
      // test's own waits run on it too). Time is the point here, not a wait for something.
      await passTime(20);
    }
  })();
  return {
    get checks() {
      return checks;
    },
    problems,
    serials,
    async stop() {
      running = false;
      await loop;
    },
  };
}
