// The open streams of one stream function, listed only while something asks
// for them (a dashboard, `velo-stream/dashboard`). A function keeps no list
// until `kWatch` is first called on it: an open then costs one field check.
// Once listed, each stream is held weakly (an abandoned stream is still
// collected) in open order, so the oldest come first, and taken off the list
// when its handler finishes; a failure is kept among the latest errors.
import { kFinished } from './protocol';
import { kFailure } from './stream';
import type { Stream } from '../types';

/** `fn[kWatch]()`: the function's `StreamList`, made on the first call (a registered symbol: any copy of the package finds it). */
export const kWatch = Symbol.for('velo-stream.watch');

/** A stream failure kept by a list: when, which stream, and the error. */
export interface ListedFailure {
  /** ms since the Unix epoch. */
  readonly at: number;
  readonly id: string;
  readonly error: unknown;
}

/** Failures a list keeps, the latest. */
const KEPT_FAILURES = 20;

type AnyStream = Stream<never, unknown> & { readonly [kFinished]: Promise<void> };

export class StreamList {
  /** Open order (a Map iterates in insertion order), by stream id. */
  readonly #streams = new Map<string, WeakRef<AnyStream>>();
  readonly #failures: ListedFailure[] = [];

  /** Lists `stream` until its handler finishes. */
  add(stream: AnyStream): void {
    const id = stream.id;
    this.#streams.set(id, new WeakRef(stream));
    // The reaction is held by the stream's own promise: it roots nothing.
    void stream[kFinished].then(() => {
      this.#streams.delete(id);
      if (stream.state === 'failed') {
        // A pipe's error is its failed stage's, which the pipe does not keep.
        const failure = (stream as { [kFailure]?: { error: unknown } })[kFailure];
        this.#failures.push({ at: Date.now(), id, error: failure?.error });
        if (this.#failures.length > KEPT_FAILURES) this.#failures.shift();
      }
    });
  }

  /** Streams listed and not collected, oldest first; collected ones are dropped on the way. */
  *streams(): Generator<AnyStream> {
    for (const [id, ref] of this.#streams) {
      const stream = ref.deref();
      if (stream === undefined) this.#streams.delete(id);
      else yield stream;
    }
  }

  /** The listed stream `id`, if it is still listed. */
  get(id: string): AnyStream | undefined {
    return this.#streams.get(id)?.deref();
  }

  /** Streams listed (collected ones not yet dropped included). */
  get size(): number {
    return this.#streams.size;
  }

  /** The latest failures, oldest first. */
  get failures(): readonly ListedFailure[] {
    return this.#failures;
  }
}
