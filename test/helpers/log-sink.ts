/** A pino logger whose JSON lines are collected in memory (tests assert on fields, not strings). */
import { Writable } from 'node:stream';
import { createLogger } from '../../src/telemetry/logger.js';

export interface CapturedLog {
  log: ReturnType<typeof createLogger>;
  lines: Record<string, unknown>[];
  text(): string;
}

export function captureLog(level = 'debug'): CapturedLog {
  const raw: string[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw.push(chunk.toString());
      cb();
    },
  });
  const log = createLogger({ level, destination: dest });
  return {
    log,
    get lines() {
      return raw.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    text: () => raw.join(''),
  };
}
