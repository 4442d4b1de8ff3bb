// Waiting for room in an HTTP response: what every writer of velo-stream does when `write()` returns false.
import type { ServerResponse } from 'node:http';

/**
 * Waits until `res` takes more ('drain') or is gone ('close'), and removes
 * both listeners whichever comes first: a long response to a slow reader
 * waits thousands of times, and each wait must leave nothing behind.
 */
export function drainOrClose(res: ServerResponse): Promise<void> {
  // Already gone: its 'close' has fired.
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
