// A stream as an object-mode Node Duplex, for stream.pipeline.
import { Duplex, type Writable } from 'node:stream';
import { StreamClosedError } from '../errors';
import type { Stream } from '../types';

/**
 * Writes are sends (a full input buffer holds the write callback, so the
 * writable side applies backpressure), ending the writable side ends the
 * input, and reads are outputs taken only as the readable side wants them.
 * A handler error destroys the Duplex with that error, once the outputs made
 * before it were passed on; destroying the Duplex (a pipeline failing
 * elsewhere) cancels the stream.
 */
export function toDuplex<I, O>(stream: Stream<I, O>): Duplex {
  let reading = false;
  /** Settles once the readable side has passed on every output and ended, or failed with the handler's error. */
  let delivered: (() => void) | undefined;
  const outputsDone = new Promise<void>((resolve) => (delivered = resolve));
  const duplex: Duplex = new Duplex({
    objectMode: true,
    // The stream has bounded buffers of its own; keep Node's small.
    highWaterMark: 1,
    write(event: I, _encoding, callback) {
      stream.send(event).then(
        () => callback(),
        (error: unknown) => {
          // Refused because the handler finished (it returned early, or threw): its outputs come first, and a
          // failure is the handler's own error, which the readable side reports. Failing the write now would
          // destroy the pipeline with a StreamClosedError before them. (Cancelled: the Duplex is being destroyed.)
          if (stream.state === 'cancelled') callback(error as Error);
          else void outputsDone.then(() => callback(error as Error));
        },
      );
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
          if (error instanceof StreamClosedError && stream.state !== 'failed') {
            duplex.push(null);
            duplex.once('end', () => delivered?.());
          } else failAfterDelivered(error as Error);
        } finally {
          reading = false;
        }
      })();
    },
    destroy(error, callback) {
      delivered?.();
      stream.cancel(error ?? undefined).then(
        () => callback(error),
        () => callback(error),
      );
    },
  });

  // The Writables it is piped into (`pipeline` pipes it): a failure waits until they have written what it gave them.
  const sinks: NodeJS.WritableStream[] = [];
  const pipe = duplex.pipe.bind(duplex);
  duplex.pipe = <T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T => {
    sinks.push(destination);
    return pipe(destination, options);
  };

  /**
   * Destroys the Duplex with the handler's error once the outputs it pushed before have gone on: read from
   * its buffer, and written by the Writables it is piped into. A pipeline destroys every stream at the first
   * error, so a slow sink's buffered outputs would otherwise be dropped with it. A sink that asked to wait
   * announces its empty buffer (`'drain'`); one below its high-water mark does not, and is looked at again
   * after 1 ms, then up to every 64 ms while it stays busy.
   */
  function failAfterDelivered(error: Error): void {
    let delay = 1;
    const check = (): void => {
      if (duplex.destroyed) return;
      let busy: Partial<Writable> | undefined;
      for (const sink of sinks as Partial<Writable>[])
        if (sink.destroyed !== true && sink.writableFinished !== true && (sink.writableLength ?? 0) > 0) busy = sink;
      if (busy?.writableNeedDrain === true) {
        busy.once?.('drain', check);
        return;
      }
      if (busy === undefined && duplex.readableLength === 0) {
        duplex.destroy(error);
        return;
      }
      setTimeout(check, delay);
      delay = Math.min(delay * 2, 64);
    };
    check();
  }
  return duplex;
}
