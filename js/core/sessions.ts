// Per-key sessions: one stream per key (a user, a device) for events that
// arrive in separate requests, and one merged, bounded output of all of them.
//
// A key never has two live instances. After `end(key)` (or an idle timeout,
// a failure, its handler leaving its input loop), the key's stream finishes what it holds; a send in the
// meantime waits for its handler to finish, then opens the key's next
// instance (the slot is free by then, so `maxConcurrent: 1` is enough). The
// next instance's outputs enter the merged output after every output of the
// one before, so per-key order holds across instances. Events an instance
// accepted that its handler never took (it returned or threw first) open the
// key's next instance: nothing a send was told is accepted is dropped.
import { StreamClosedError, sessionsReaderError } from '../errors';
import { Fifo } from './fifo';
import { type Debounce, Debouncer } from './debounce';

/** `SessionsConfig.singleton`. */
export type Singleton = 'skip' | 'replace' | 'latest';
import { traceText } from '../tracing';
import { drainOutputs } from './drive';
import { doneResult, type StreamKind, kFinished, kInputError, kOwnedReads, kTaken, kTraceAttributes } from './protocol';
import type { SessionItem, Stream, StreamFn } from '../types';

/**
 * The events a session accepted that its handler has not taken yet, in
 * order (`head`: the first; `base`: the handler's taken count at `head`).
 * If the handler returns or throws first, they open the key's next session.
 */
type Lent<I> = { events: { event: I; refused: boolean }[]; head: number; base: number; ended: boolean };

/**
 * A send (or an `end`) waiting for the key's next instance. `handedOn`: an event an earlier session accepted
 * (its send resolved) and its handler never took: if the next instance refuses it too (its handler stopped
 * first: a worker's may, on its own thread, while these are sent), it is passed on again, never reported.
 */
type Waiting<I> = { event: I; handedOn?: true; resolve(): void; reject(reason: unknown): void } | typeof END;
const END = Symbol('end');
/** A lent event its handler has taken: cleared, so the session no longer holds it. */
const TAKEN: { event: never; refused: boolean } = { event: undefined as never, refused: true };

export class Sessions<K, I, O> implements AsyncIterable<SessionItem<K, O>> {
  /** Each session's span carries its key (`SessionsConfig.traceKeys`). */
  readonly #traceKeys: boolean;
  /** The function the sessions' streams belong to (with the sessions' config): for stats and metrics. */
  readonly fn: StreamFn<I, O>;
  /** Opens a session's stream (its limiters' admission item carries the key). */
  readonly #open: (key: K) => StreamKind<I, O>;
  readonly #live = new Map<K, StreamKind<I, O>>();
  /** Each live stream's accepted events not yet taken by its handler. */
  readonly #lent = new Map<StreamKind<I, O>, Lent<I>>();
  /** Keys whose next instance waits for the previous one to finish: what was sent meanwhile, in order. */
  readonly #waiting = new Map<K, Waiting<I>[]>();
  /** Each key's last forwarder: the next instance's forwarder starts after it. */
  readonly #forwarded = new Map<K, Promise<void>>();
  // The merged output: bounded; a forwarder that finds it full waits, so its
  // session's own output buffer fills and that session's handler pauses.
  readonly #merged = new Fifo<SessionItem<K, O>>();
  readonly #capacity: number;
  readonly #space = new Fifo<() => void>();
  /** Pending `next()` calls, served in order. */
  readonly #readers = new Fifo<(r: IteratorResult<SessionItem<K, O>>) => void>();
  #reading = false;
  /** Forwarders running plus hand-overs pending: the merged output ends after the last. */
  #pending = 0;
  #closed = false;
  /** The reader left: every session was cancelled, and no new one opens. */
  #left = false;
  #allDone: (() => void) | null = null;
  /** Debounce per key (`SessionsConfig.debounce`): what `send` goes through first. */
  readonly #debouncer: Debouncer<K, I> | undefined;
  /** One session per key at a time, and what a send to a key with a live one does (`SessionsConfig.singleton`). */
  readonly #singleton: Singleton | undefined;
  #singletonDropped = 0;

  constructor(
    fn: StreamFn<I, O>,
    open: (key: K) => StreamKind<I, O>,
    traceKeys = false,
    debounce?: Debounce,
    singleton?: Singleton,
  ) {
    this.fn = fn;
    this.#singleton = singleton;
    this.#open = open;
    this.#traceKeys = traceKeys;
    this.#capacity = fn.config.buffer;
    if (debounce !== undefined) {
      this.#debouncer = new Debouncer<K, I>(
        debounce,
        (key, event) => this.#deliver(key, event),
        (key, error) => void this.#push({ key, error }),
      );
    }
  }

  /** Events debounce dropped (collapsed into a later one, or sent within a leading quiet period). */
  get dropped(): number {
    return (this.#debouncer?.dropped ?? 0) + this.#singletonDropped;
  }

  /** Trailing debounced events held now, to be delivered after their quiet period. */
  get held(): number {
    return this.#debouncer?.held ?? 0;
  }

  /** Live sessions. */
  get size(): number {
    return this.#live.size;
  }

  /** The key's stream, or undefined. */
  get(key: K): Stream<I, O> | undefined {
    return this.#live.get(key);
  }

  /**
   * Sends to the key's session, opening it on first use. After the key's
   * session ended, the send waits for it to finish, then opens the next.
   * Rejects with `StreamLimitError` when `maxConcurrent` sessions are live,
   * and with `StreamClosedError` after `close()`.
   */
  send(key: K, event: I): Promise<void> {
    if (this.#closed) return Promise.reject(new StreamClosedError('The sessions are closed'));
    if (this.#debouncer !== undefined) return this.#debouncer.send(key, event);
    return this.#deliver(key, event);
  }

  /** `send` past debounce: with `singleton`, a key with a live session applies its policy. */
  #deliver(key: K, event: I): Promise<void> {
    const policy = this.#singleton;
    if (policy === undefined) return this.#sendNow(key, event);
    const current = this.#live.get(key);
    const waiting = this.#waiting.get(key);
    // Live: a session open or finishing, or one about to open (a hand-over waits). Every send to it counts.
    if (current === undefined && waiting === undefined) return this.#sendNow(key, event);
    if (policy === 'skip') {
      this.#singletonDropped++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const next: Waiting<I> = { event, resolve, reject };
      if (waiting !== undefined) {
        // The one pending event (the next session's first) is replaced by this later arrival: dropped, counted.
        // (An `end(key)` made meanwhile stays: it ends the session the pending event opens.)
        const ends = waiting.filter((w) => w === END);
        for (const w of waiting) {
          if (w === END) continue;
          this.#singletonDropped++;
          w.resolve();
        }
        waiting.splice(0, waiting.length, next, ...ends);
        return;
      }
      this.#waiting.set(key, [next]);
      if (policy === 'replace') void current!.cancel();
      void this.#handOver(key, current!);
    });
  }

  /** `send` past debounce. */
  #sendNow(key: K, event: I): Promise<void> {
    const waiting = this.#waiting.get(key);
    if (waiting !== undefined) return new Promise((resolve, reject) => waiting.push({ event, resolve, reject }));
    const current = this.#live.get(key);
    if (current === undefined) {
      let stream: StreamKind<I, O>;
      try {
        stream = this.#start(key);
      } catch (error) {
        return Promise.reject(error);
      }
      return this.#sendTo(stream, event);
    }
    // Open, and its handler still reads its input (one that failed or left
    // its loop may still be finishing): the event goes to this session.
    if (current[kInputError]() === undefined) return this.#sendTo(current, event);
    return new Promise((resolve, reject) => {
      this.#waiting.set(key, [{ event, resolve, reject }]);
      void this.#handOver(key, current);
    });
  }

  /** Ends the key's session (its handler finishes; its outputs still arrive). */
  end(key: K): void {
    // A held trailing event is delivered first: the send that gave it was answered, so it is not lost.
    this.#debouncer?.flush(key);
    const waiting = this.#waiting.get(key);
    // Sends wait for the next instance: that is the one to end, once they are in.
    if (waiting !== undefined) {
      if (waiting.at(-1) !== END) waiting.push(END);
    } else {
      const stream = this.#live.get(key);
      if (stream === undefined) return;
      // (Events it accepted and its handler never takes end with it in the next session.)
      this.#lentOf(stream).ended = true;
      stream.end();
    }
  }

  /**
   * Ends every session and refuses new sends. Resolves once every session has
   * finished and its outputs went into the merged output (so keep reading it,
   * or leave it, which cancels the rest); the merged iteration then ends.
   */
  close(): Promise<void> {
    // Held trailing events are delivered before the sessions end, as `end(key)` does.
    if (!this.#closed) this.#debouncer?.flushAll();
    this.#closed = true;
    for (const stream of this.#live.values()) stream.end();
    if (this.#pending === 0) {
      this.#wakeReaders();
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.#allDone = resolve));
  }

  /** What `stream` accepted and its handler has not taken (a placeholder once it has finished). */
  #lentOf(stream: StreamKind<I, O>): Lent<I> {
    return this.#lent.get(stream) ?? { events: [], head: 0, base: 0, ended: false };
  }

  /**
   * Lets go of the events the handler has taken since: their entries are
   * cleared at once (only events not yet taken stay held, within the
   * session's buffer and its waiting sends), and the list is compacted once
   * its cleared head is the larger half.
   */
  #dropTaken(stream: StreamKind<I, O>, lent: Lent<I>): void {
    const taken = stream[kTaken]();
    const head = lent.head + (taken - lent.base);
    for (let i = lent.head; i < head && i < lent.events.length; i++) lent.events[i] = TAKEN;
    lent.head = head;
    lent.base = taken;
    if (lent.head > 16 && lent.head * 2 > lent.events.length) {
      lent.events.splice(0, lent.head);
      lent.head = 0;
    }
  }

  /** Sends to a session's stream, keeping the event until its handler takes it. */
  #sendTo(stream: StreamKind<I, O>, event: I, handedOn = false): Promise<void> {
    const lent = this.#lent.get(stream);
    // (Finished already: the send is refused.)
    if (lent === undefined) return stream.send(event);
    this.#dropTaken(stream, lent);
    const entry = { event, refused: false };
    lent.events.push(entry);
    const sent = stream.send(event);
    // (A send refused, maybe after waiting for room, was never accepted: it is not passed on. An event
    // handed on was accepted by an earlier session: refused, it is passed on again, after this session.)
    if (!handedOn) sent.catch(() => (entry.refused = true));
    return sent;
  }

  /**
   * A session's handler has finished. If it returned or threw before taking
   * every event the session accepted, the rest open the key's next session
   * (before any send made since), as the Redis workers do; a cancelled
   * session's are dropped with it.
   */
  #afterSession(key: K, stream: StreamKind<I, O>): void {
    const lent = this.#lent.get(stream);
    this.#lent.delete(stream);
    if (lent === undefined) return;
    if (stream.state === 'cancelled' || this.#left) return;
    const taken = stream[kTaken]();
    // The session keeps at least its first event, as the Redis workers' do: a
    // handler that fails or returns before reading anything would otherwise
    // get the same events again in every next session, for ever.
    const from = taken === 0 ? 1 : lent.head + (taken - lent.base);
    // Their senders were answered already: a next session that cannot open
    // (maxConcurrent reached meanwhile) is reported in the merged output.
    let reported = false;
    const report = (error: unknown): void => {
      if (reported) return;
      reported = true;
      void this.#push({ key, error });
    };
    const rest: Waiting<I>[] = [];
    for (let i = from; i < lent.events.length; i++) {
      const { event, refused } = lent.events[i];
      if (!refused) rest.push({ event, handedOn: true, resolve: () => {}, reject: report });
    }
    if (rest.length === 0) return;
    if (lent.ended) rest.push(END);
    const waiting = this.#waiting.get(key);
    // Sends already wait for the next session (a hand-over is under way): these go first.
    if (waiting !== undefined) waiting.unshift(...rest);
    else {
      this.#waiting.set(key, rest);
      void this.#handOver(key, stream);
    }
  }

  /** Opens the key's stream and forwards its outputs (after the key's earlier instance's). Throws `StreamLimitError`. */
  #start(key: K): StreamKind<I, O> {
    const stream = this.#open(key);
    // Its forwarder's reads are ours: they hold no session waiting for a permit (a dropped sessions object gives up
    // their places in line). (Optional calls: a stream of another copy of the module may not have them.)
    stream[kOwnedReads]?.();
    if (this.#traceKeys) stream[kTraceAttributes]?.({ 'velo.session.key': traceText(key) });
    this.#live.set(key, stream);
    this.#lent.set(stream, { events: [], head: 0, base: 0, ended: false });
    void stream[kFinished].then(() => this.#afterSession(key, stream));
    const forwarded = this.#forward(key, stream, this.#forwarded.get(key));
    this.#forwarded.set(key, forwarded);
    void forwarded.then(() => {
      if (this.#forwarded.get(key) === forwarded) this.#forwarded.delete(key);
    });
    return stream;
  }

  /** The key's next instance: opened once `previous` has finished, with what was sent (and ended) meanwhile. */
  async #handOver(key: K, previous: StreamKind<I, O>): Promise<void> {
    this.#pending++;
    try {
      await previous[kFinished];
      const waiting = this.#waiting.get(key) as Waiting<I>[];
      this.#waiting.delete(key);
      let stream: StreamKind<I, O>;
      try {
        if (this.#left) throw new StreamClosedError('The sessions are closed: their reader left');
        stream = this.#start(key);
      } catch (error) {
        for (const w of waiting) if (w !== END) w.reject(error);
        return;
      }
      for (let i = 0; i < waiting.length; i++) {
        const w = waiting[i];
        if (w !== END && i > 0 && stream[kInputError]() !== undefined) {
          // Its handler stopped already (a worker's may, on its own thread, while these are sent): the
          // rest wait for the instance after this one, as sends made now would.
          this.#waiting.set(key, waiting.slice(i));
          void this.#handOver(key, stream);
          break;
        }
        if (w !== END) {
          if (w.handedOn === true) this.#sendTo(stream, w.event, true).catch(() => {});
          else
            this.#sendTo(stream, w.event).then(
              () => w.resolve(),
              (error: unknown) => w.reject(error),
            );
          continue;
        }
        this.#lentOf(stream).ended = true;
        stream.end();
        // Sent after that end: they go to the instance after this one.
        const rest = waiting.slice(i + 1);
        if (rest.length > 0) {
          this.#waiting.set(key, rest);
          void this.#handOver(key, stream);
        }
        break;
      }
      // Sends made before close() are in; the session now ends as close() asked.
      if (this.#closed) stream.end();
    } finally {
      this.#release();
    }
  }

  /** Moves one session's outputs into the merged output, in order, until it ends. */
  async #forward(key: K, stream: StreamKind<I, O>, after: Promise<void> | undefined): Promise<void> {
    this.#pending++;
    try {
      if (after !== undefined) await after;
      await drainOutputs(stream, async (batch) => {
        // The handler ran: what it has taken is let go now, not at the key's next send.
        const lent = this.#lent.get(stream);
        if (lent !== undefined) this.#dropTaken(stream, lent);
        for (const value of batch) {
          const waited = this.#push({ key, value });
          if (waited !== null) await waited;
        }
      });
    } catch (error) {
      const waited = this.#push({ key, error });
      if (waited !== null) await waited;
    } finally {
      if (this.#live.get(key) === stream) this.#live.delete(key);
      // (Finished by now; this lets `#afterSession`, which runs on it first,
      // hand the events its handler never took on before the count can reach 0.)
      await stream[kFinished];
      this.#release();
    }
  }

  #release(): void {
    if (--this.#pending === 0 && this.#closed) {
      this.#allDone?.();
      this.#wakeReaders();
    }
  }

  /** Adds an item; null if there was room, else a promise for when there is. */
  #push(item: SessionItem<K, O>): Promise<void> | null {
    // (Nobody reads any more: dropped, as the reader's leaving dropped those before it.)
    if (this.#left) return null;
    const reader = this.#readers.shift();
    if (reader !== undefined) {
      reader({ value: item, done: false });
      return null;
    }
    if (this.#merged.length < this.#capacity) {
      this.#merged.push(item);
      return null;
    }
    return new Promise((resolve) =>
      this.#space.push(() => {
        this.#merged.push(item);
        resolve();
      }),
    );
  }

  /** Ends the pending reads once nothing more can come. */
  #wakeReaders(): void {
    if (this.#merged.length === 0 && this.#closed && this.#pending === 0) {
      this.#reading = false;
      for (const resolve of this.#readers.drain()) resolve(doneResult());
    }
  }

  #next(): Promise<IteratorResult<SessionItem<K, O>>> {
    if (this.#left) return Promise.resolve(doneResult());
    const item = this.#merged.shift();
    if (item !== undefined) {
      this.#space.shift()?.();
      return Promise.resolve({ value: item, done: false });
    }
    if (this.#closed && this.#pending === 0) {
      this.#reading = false;
      return Promise.resolve(doneResult());
    }
    // Several next() calls may wait (the iterator protocol allows it): served in order.
    return new Promise((resolve) => this.#readers.push(resolve));
  }

  /**
   * The merged outputs of every session, as `{ key, value }` (or `{ key, error }`
   * when a session's handler threw). One reader at a time: another iterator
   * before the first has ended or been left throws `TypeError`
   * `ERR_INVALID_STATE` (two loops would each get some of the items, and
   * neither a key's whole order). Leaving it early cancels every session.
   */
  [Symbol.asyncIterator](): AsyncIterator<SessionItem<K, O>> {
    if (this.#reading) throw sessionsReaderError();
    this.#reading = true;
    return {
      next: () => this.#next(),
      return: async () => {
        this.#closed = this.#left = true;
        this.#debouncer?.dropAll();
        const streams = [...this.#live.values()];
        for (const resume of this.#space.drain()) resume();
        // The reader left: its reads still pending end now, whether or not a session is live to end them, and the
        // outputs it left unread are dropped (a read after this, or another loop, ends at once).
        for (const resolve of this.#readers.drain()) resolve(doneResult());
        this.#merged.drain();
        await Promise.all(streams.map((s) => s.cancel()));
        this.#reading = false;
        return doneResult();
      },
    };
  }
}
