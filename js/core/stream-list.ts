// The open streams of one stream function, listed only while something asks
// for them (a dashboard, `velo-stream/dashboard`). A function keeps a list
// only from `kWatch` to the last dashboard's `release()`: otherwise an open
// costs one field check.
// Once listed, a stream costs one WeakRef (an abandoned stream is still
// collected), in open order, so the oldest come first; finished and collected
// streams are swept out as the list grows (amortized, at opens) and skipped
// when read. A stream holds its function's `Listing` (not the function) and
// reports its failure there (`reportFailure`), so nothing waits on each
// stream's end, and a failure reaches only the list of its own function,
// never that of another function of the same name.
import type { Stream } from '../types';

/**
 * `fn[kWatch]()`: the function's `StreamList`, made on the first call, for one dashboard, which calls its `release()`
 * when done (a registered symbol: any copy of the package finds it).
 */
export const kWatch = Symbol.for('velo-stream.watch');

/**
 * What a dashboard may show of a stream besides its id: the label given to `open()` or `run()`, or, for a
 * `redisWorker` session, its key and sid (shown only as the dashboard's options allow).
 */
export interface StreamTag {
  readonly label?: string;
  readonly session?: { readonly key: string; readonly sid: string };
}

/** Tags by stream: set at the open (a label given, a Redis session), read only by dashboards. */
const tags = new WeakMap<object, StreamTag>();

/** Tags `stream` (just opened). */
export function tagStream(stream: object, tag: StreamTag): void {
  tags.set(stream, tag);
}

/** `stream`'s tag, if it has one. */
export function tagOf(stream: object): StreamTag | undefined {
  return tags.get(stream);
}

/** A stream failure kept by a list: when, which stream, and the error. */
export interface ListedFailure {
  /** ms since the Unix epoch. */
  readonly at: number;
  readonly id: string;
  readonly error: unknown;
}

/** Failures a list keeps, the latest. */
const KEPT_FAILURES = 20;
/** A sweep is due once the list holds this many more than the streams live after the last one, or twice as many. */
const SWEEP_SLACK = 1024;

type AnyStream = Stream<never, unknown>;

/**
 * What a function's streams know of it: its name, and the list of its open streams while one is kept. Each stream
 * holds its function's listing, so a failure is reported to the list of the function that opened the stream.
 */
export class Listing {
  readonly name: string;
  /**
   * The function's list while at least one dashboard shows it (from `watch()` to the last `release()`); undefined
   * otherwise, and then an open costs one field check.
   */
  list: StreamList | undefined = undefined;

  constructor(name: string) {
    this.name = name;
  }

  /** One more dashboard shows the function: its list, made now if none is kept. */
  watch(): StreamList {
    const list = (this.list ??= new StreamList(this));
    list.watchers++;
    return list;
  }
}

/** Called by a stream whose handler threw (`listing`: its function's). Only a failure, never an event, comes here. */
export function reportFailure(listing: Listing, stream: { readonly id: string }, error: unknown): void {
  listing.list?.failed({ at: Date.now(), id: stream.id, error });
}

const live = (stream: AnyStream): boolean => {
  const state = stream.state;
  return state === 'open' || state === 'ending';
};

export class StreamList {
  /** Open order. */
  #refs: WeakRef<AnyStream>[] = [];
  /** Streams live after the last sweep. */
  #kept = 0;
  readonly #failures: ListedFailure[] = [];
  readonly #listing: Listing;
  /** Dashboards showing the function with this list (`Listing.watch()`), not yet released. */
  watchers = 0;

  constructor(listing: Listing) {
    this.#listing = listing;
  }

  /**
   * A dashboard showing the function no longer does (closed, or collected unclosed). With the last one gone, the
   * function lists no new stream and keeps no failure: a later dashboard starts a list of its own.
   */
  release(): void {
    if (this.watchers === 0) return;
    if (--this.watchers === 0 && this.#listing.list === this) this.#listing.list = undefined;
  }

  /** Lists `stream` (just opened). */
  add(stream: AnyStream): void {
    this.#refs.push(new WeakRef(stream));
    if (this.#refs.length >= 2 * this.#kept + SWEEP_SLACK) this.sweep();
  }

  /** Drops finished and collected streams. */
  sweep(): void {
    this.#refs = this.#refs.filter((ref) => {
      const stream = ref.deref();
      return stream !== undefined && live(stream);
    });
    this.#kept = this.#refs.length;
  }

  /** Streams listed that are open or ending, oldest first. */
  *streams(): Generator<AnyStream> {
    for (const ref of this.#refs) {
      const stream = ref.deref();
      if (stream !== undefined && live(stream)) yield stream;
    }
  }

  /** The listed stream `id`, if it is open or ending. */
  get(id: string): AnyStream | undefined {
    for (const ref of this.#refs) {
      const stream = ref.deref();
      if (stream !== undefined && stream.id === id) return live(stream) ? stream : undefined;
    }
    return undefined;
  }

  /** Streams listed (finished and collected ones not yet swept included). */
  get size(): number {
    return this.#refs.length;
  }

  failed(failure: ListedFailure): void {
    this.#failures.push(failure);
    if (this.#failures.length > KEPT_FAILURES) this.#failures.shift();
  }

  /** The latest failures, oldest first. */
  get failures(): readonly ListedFailure[] {
    return this.#failures;
  }
}
