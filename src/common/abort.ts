/** Helpers for AbortSignal, which node-vault ignores: we stop waiting even if the request goes on. */
import { AbortedError } from './clock.js';

/** Resolves like `p`, or rejects with AbortedError as soon as `signal` aborts. */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(new AbortedError());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortedError());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

export function isAbort(err: unknown): boolean {
  return err instanceof AbortedError || (err instanceof Error && err.name === 'AbortError');
}
