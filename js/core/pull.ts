// A source that a handler pulls from directly (pull fusion, input side).
//
// When a stream whose handler is a generator is fed by an async source
// (`feed()`, `run()`, a pipe's first stage), nothing needs to read the source
// ahead of the handler: each time the handler waits for its next event with
// nothing buffered, the stream asks the source for one, and the event goes to
// the handler as a send that finds it waiting does (a handoff, counted in
// JavaScript and reported in the stream's batched native calls). There is no
// sender coroutine and no event crosses into the core, where a sender running
// ahead of the handler made one native call per event.
//
// What stays the stream's: the handler's wait is the stream's own promise,
// which a cancel, the idle deadline or `end()` settles even while the
// source's `next()` never does; an event that arrives when the handler no
// longer waits for it (a send woke it meanwhile, its input closed) is sent as
// any other (into the core's buffer, or refused); the source is closed
// (`return()`, or `destroy()` for a Node Readable) when the stream stops
// taking events, as the sender closes it.
import { checkedIterator, checkedResult, closeSource, judgesOwnCut } from './source';
import { NOT_NOW, ReadKind, type ReadTarget, kReadNow, kReadTo, kSendNow } from './protocol';

/** `[kPullable]()`: whether a stream's handler would pull from an async source fed to its end (a pipe's link asks). */
export const kPullable = Symbol.for('velo-stream.pullable');

/** What the pull needs of its stream. */
export interface PullTarget<I> {
  /** Sends a pulled event: handed to the handler if it waits (no native call), else as `send()`. */
  [kSendNow](event: I): true | Promise<void>;
  /** The source ended: the stream's input ends. */
  end(): void;
  /** The pull stopped for good (the source ended, failed or was closed): the stream forgets it. */
  [kPullDetached](pull: SourcePull<I>): void;
}

/** `PullTarget`'s own method (module-private to the stream kinds). */
export const kPullDetached = Symbol('velo.pullDetached');

/**
 * One source pulled by one stream. It is its own reader of a source that answers through `kReadTo` (a stream's
 * outputs, an NDJSON body): no promise and no closure between the source's answer and the handler.
 */
export class SourcePull<I> implements ReadTarget {
  readonly kind = ReadKind.Iter;
  readonly #it: AsyncIterator<I>;
  /** The iterator's `kReadNow` and `kReadTo` methods, if it has them (called on `#it`). */
  readonly #readNow: (() => I | typeof NOT_NOW) | undefined;
  readonly #readTo: ((reader: ReadTarget) => void) | undefined;
  readonly #target: PullTarget<I>;
  readonly #source: object;
  /** A `next()` of the source is pending. */
  #pending = false;
  #stopped = false;
  /** Settles `kSendAll`'s promise: true once the source ended, false if it was closed before. */
  readonly #settle: (sent: boolean) => void;
  readonly #fail: (error: unknown) => void;
  /** What `kSendAll` answers. */
  readonly done: Promise<boolean>;
  /** The stream's idle end while it waits on this source is its stall (`SourceStalledError`): false for a source with a rule of its own (`judgesOwnCut`). */
  readonly stalls: boolean;
  /** The reactions to a pending `next()` of a source without `kReadTo` (made at its first use). */
  #onNext: ((r: IteratorResult<I>) => void) | undefined;
  #onError: ((error: unknown) => void) | undefined;

  constructor(source: AsyncIterable<I>, target: PullTarget<I>) {
    this.#source = source;
    this.#target = target;
    this.stalls = !judgesOwnCut(source);
    const it = (this.#it = checkedIterator(source[Symbol.asyncIterator]()));
    const readNow = (it as { [kReadNow]?: () => I | typeof NOT_NOW })[kReadNow];
    this.#readNow = typeof readNow === 'function' ? readNow : undefined;
    const readTo = (it as { [kReadTo]?: (reader: ReadTarget) => void })[kReadTo];
    this.#readTo = typeof readTo === 'function' ? readTo : undefined;
    let settle!: (sent: boolean) => void;
    let fail!: (error: unknown) => void;
    this.done = new Promise<boolean>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    this.#settle = settle;
    this.#fail = fail;
  }

  /** A `next()` of the source is pending: the stream waits on the source (its idle clock runs on it). */
  get asked(): boolean {
    return this.#pending;
  }

  /** An event the source has ready now (`kReadNow`, the rest of a chunk's lines), or `NOT_NOW`. */
  ready(): I | typeof NOT_NOW {
    if (this.#readNow === undefined || this.#pending || this.#stopped) return NOT_NOW;
    try {
      return this.#readNow.call(this.#it);
    } catch (error) {
      this.#failed(error);
      return NOT_NOW;
    }
  }

  /** The handler waits for input with nothing buffered: ask the source for its next event (once at a time). */
  request(): void {
    if (this.#pending || this.#stopped) return;
    this.#pending = true;
    if (this.#readTo !== undefined) {
      this.#readTo.call(this.#it, this);
      return;
    }
    let next: Promise<IteratorResult<I>>;
    try {
      next = Promise.resolve(this.#it.next());
    } catch (error) {
      this.#pending = false;
      this.#failed(error);
      return;
    }
    next.then((this.#onNext ??= (r) => this.resolve(r)), (this.#onError ??= (error) => this.reject(error)));
  }

  /** The source's next result (as its reader: `kReadTo`, or the reaction to its `next()`). */
  resolve(r: IteratorResult<I>): void {
    this.#pending = false;
    // (Closed meanwhile: the event is dropped, as a send refused by a closed input would be.)
    if (this.#stopped) return;
    // `done` read once, then `value` only if not done, as `for await` reads them: a truthy `done` ends the
    // source, and a getter that throws fails it (with its error) instead of escaping as an unhandled rejection.
    let done: boolean;
    let value: I;
    try {
      done = Boolean(checkedResult(r).done);
      value = done ? (undefined as I) : (r.value as I);
    } catch (error) {
      this.#failed(error);
      return;
    }
    if (done) {
      this.#stopped = true;
      this.#target[kPullDetached](this);
      this.#target.end();
      this.#settle(true);
      return;
    }
    const sent = this.#target[kSendNow](value);
    if (sent !== true) {
      // Not taken at once (the input is full, or closed): a refusal closes the source.
      sent.catch(() => this.stop());
    }
  }

  /** The source failed (as its reader, or the reaction to its `next()`). */
  reject(error: unknown): void {
    this.#pending = false;
    if (this.#stopped) return;
    this.#failed(error);
  }

  #failed(error: unknown): void {
    this.#stopped = true;
    this.#target[kPullDetached](this);
    this.#fail(error);
  }

  /**
   * The stream takes no more events from the source (it finished, was
   * cancelled, its source stalled, or its outputs were read to the end):
   * close the source, now even while its `next()` waits (a Readable by
   * `destroy()`: an async generator runs `return()` only once its pending
   * `next()` settles; its signal, if `feed()` made one, aborts with `reason`).
   */
  readonly stop = (reason?: unknown): void => {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#target[kPullDetached](this);
    closeSource(this.#source, this.#it, reason);
    this.#settle(false);
  };
}
