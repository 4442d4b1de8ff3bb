// A stream as an object-mode Node Duplex, for stream.pipeline.
import { Duplex, type Writable } from 'node:stream';
import { StreamClosedError } from '../errors';
import { type StreamKind, kFedBy, kFinished, kInputError, kStalled } from './protocol';

/**
 * After a handler error, how long the outputs made before it may go without moving into the Writables the
 * Duplex is piped into before the error goes out anyway, ms.
 */
const DELIVERY_STALL_MS = 2000;

/** A clock of outputs waiting: each call gives how many wait now; true once that count went DELIVERY_STALL_MS unchanged. */
function stallClock(): (pending: number) => boolean {
  let left = -1;
  let movedAt = performance.now();
  return (pending) => {
    const now = performance.now();
    if (pending === left) return now - movedAt >= DELIVERY_STALL_MS;
    left = pending;
    movedAt = now;
    return false;
  };
}

/**
 * Writes are sends (a full input buffer holds the write callback, so the
 * writable side applies backpressure), ending the writable side ends the
 * input, and reads are outputs taken only as the readable side wants them.
 * Until its writable side ends, the stream is fed from the source written
 * into it (a pipeline's upstream): an idle end then is that source's stall,
 * as for `feed()`, and fails the stream with `SourceStalledError`.
 * A handler error destroys the Duplex with that error, once the outputs made
 * before it were passed on; destroying the Duplex (a pipeline failing
 * elsewhere) cancels the stream.
 */
export function toDuplex<I, O>(stream: StreamKind<I, O>): Duplex {
  let reading = false;
  /** Settles once the readable side has passed on every output and ended, or failed with the handler's error. */
  let delivered: (() => void) | undefined;
  const outputsDone = new Promise<void>((resolve) => (delivered = resolve));
  const written = (stream as { [kFedBy]?: () => () => void })[kFedBy]?.();
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
      written?.();
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
          // (A body's stream, a task stage's, takes a stall as its input's end: the stall is reported here.)
          const stalled = (stream as { [kStalled]?: () => Error | undefined })[kStalled]?.();
          if (error instanceof StreamClosedError && stream.state !== 'failed' && stalled === undefined) {
            duplex.push(null);
            duplex.once('end', () => delivered?.());
          } else failAfterDelivered(stalled ?? (error as Error));
        } finally {
          reading = false;
        }
      })();
    },
    destroy(error, callback) {
      written?.();
      delivered?.();
      stream.cancel(error ?? undefined).then(
        () => callback(error),
        () => callback(error),
      );
    },
  });

  // A handler that failed while the readable side is not reading (its sink stopped writing, so the outputs wait
  // in the stream): nothing would read to the error. The error goes out once the outputs stop moving.
  void stream[kFinished].then(() => {
    // (Nobody listens for its errors: not in a pipeline, never read. The error waits in the stream.)
    if (stream.state !== 'failed' || duplex.destroyed || duplex.listenerCount('error') === 0) return;
    const refused = stream[kInputError]();
    watchStall(((refused as { cause?: unknown } | undefined)?.cause ?? refused) as Error);
  });

  /** Outputs not yet written: in the stream, in the Duplex's buffer, in the sinks' buffers. */
  function undelivered(): number {
    let n = stream.metrics.bufferedOut + duplex.readableLength;
    for (const sink of sinks as Partial<Writable>[]) if (sink.destroyed !== true) n += sink.writableLength ?? 0;
    return n;
  }

  /** Destroys the Duplex with `error` once the outputs before it went DELIVERY_STALL_MS without moving. */
  function watchStall(error: Error): void {
    const stalled = stallClock();
    const look = (): void => {
      if (duplex.destroyed) return;
      if (stalled(undelivered())) {
        duplex.destroy(error);
        return;
      }
      setTimeout(look, 64);
    };
    look();
  }

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
   * after 1 ms, then up to every 64 ms while it stays busy. The wait lasts while the outputs move: once
   * nothing moved for DELIVERY_STALL_MS (a sink that stopped writing, a client that stopped reading), or every
   * sink is gone, the error goes out at once, so a failed pipeline always settles.
   */
  function failAfterDelivered(error: Error): void {
    let delay = 1;
    const stalled = stallClock();
    const check = (): void => {
      if (duplex.destroyed) return;
      let busy: Partial<Writable> | undefined;
      let pending = duplex.readableLength;
      for (const sink of sinks as Partial<Writable>[]) {
        if (sink.destroyed === true || sink.writableFinished === true || (sink.writableLength ?? 0) === 0) continue;
        busy = sink;
        pending += sink.writableLength ?? 0;
      }
      const gone = sinks.length > 0 && (sinks as Partial<Writable>[]).every((sink) => sink.destroyed === true);
      if ((busy === undefined && duplex.readableLength === 0) || gone) {
        duplex.destroy(error);
        return;
      }
      if (stalled(pending)) {
        duplex.destroy(error);
        return;
      }
      if (busy?.writableNeedDrain === true) {
        // The drain, or the end of the wait, whichever comes first.
        const drained = (): void => {
          clearTimeout(timer);
          check();
        };
        const timer = setTimeout(() => {
          busy.off?.('drain', drained);
          check();
        }, DELIVERY_STALL_MS);
        busy.once?.('drain', drained);
        return;
      }
      setTimeout(check, delay);
      delay = Math.min(delay * 2, 64);
    };
    check();
  }
  return duplex;
}
