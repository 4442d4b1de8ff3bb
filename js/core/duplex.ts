// A stream as an object-mode Node Duplex, for stream.pipeline.
import { Duplex } from 'node:stream';
import { StreamClosedError } from '../errors';
import type { Stream } from '../types';

/**
 * Writes are sends (a full input buffer holds the write callback, so the
 * writable side applies backpressure), ending the writable side ends the
 * input, and reads are outputs taken only as the readable side wants them.
 * A handler error destroys the Duplex with that error; destroying the Duplex
 * (a pipeline failing elsewhere) cancels the stream.
 */
export function toDuplex<I, O>(stream: Stream<I, O>): Duplex {
  let reading = false;
  const duplex: Duplex = new Duplex({
    objectMode: true,
    // The stream has bounded buffers of its own; keep Node's small.
    highWaterMark: 1,
    write(event: I, _encoding, callback) {
      stream.send(event).then(() => callback(), callback);
    },
    final(callback) {
      stream.end();
      callback();
    },
    read() {
      if (reading) return;
      reading = true;
      void (async () => {
        try {
          for (;;) {
            const output = await stream.recv();
            // An object-mode Readable cannot carry null (push(null) ends it)
            // nor, usefully, undefined: both are skipped, not ended on (the
            // README says so). They still count in metrics.eventsOut.
            if (output === null || output === undefined) continue;
            if (!duplex.push(output)) break;
          }
        } catch (error) {
          if (error instanceof StreamClosedError && stream.state !== 'failed') duplex.push(null);
          else duplex.destroy(error as Error);
        } finally {
          reading = false;
        }
      })();
    },
    destroy(error, callback) {
      stream.cancel(error ?? undefined).then(
        () => callback(error),
        () => callback(error),
      );
    },
  });
  return duplex;
}
