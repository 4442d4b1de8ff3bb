// A partition's sessions' outputs, moved from each session's stream to the outbox as they come, to its handler's end:
// one callback loop per session over the stream's `kDrain` / `kReadTo` protocol, with no frame, promise or closure of
// its own per wait (a session waits between its events, a second or more, and what it allocates for the wait then
// outlives the young generation: one object per session, reused), and one batch array for all of them.
import { type ReadTarget, ReadKind, kDrain, kFinished, kReadTo } from '../../core/protocol';
import type { EventBudget } from './budget';
import type { Outbox, RoomWaiter } from './outbox';
import type { PartitionHost } from './partition-host';
import type { Session } from './session';
import type { SessionWrites } from './session-writes';

/** What the forwarding needs of its partition's run. */
export interface ForwardHost<I, O> {
  readonly worker: Pick<PartitionHost<I, O>, 'live' | 'report'>;
  readonly writing: SessionWrites<I, O>;
  readonly outbox: Pick<Outbox<O>, 'waitRoom'>;
  readonly budget: EventBudget;
  /** The session's handler has finished and its outputs are all forwarded. */
  over(s: Session<I, O>): void;
}

const noop = (): void => {};

/**
 * A session's wait for its next outputs, and for room in the outbox: the stream's reader (`kReadTo`, a wake-up read)
 * and the outbox's waiter. Answered from inside the stream (a handler's yield may answer it), it only lists the
 * session: the forwarding moves its outputs in a microtask of its own, as a promise's reaction did.
 */
class OutputWait<I, O> implements ReadTarget, RoomWaiter {
  readonly kind = ReadKind.Wake;
  /** The read failed with this (its stream's failure): the session fails there. */
  failure: { readonly error: unknown } | null = null;
  constructor(
    readonly forwarding: SessionForward<I, O>,
    readonly session: Session<I, O>,
  ) {}
  resolve(): void {
    this.forwarding.ready(this);
  }
  reject(error: unknown): void {
    this.failure = { error };
    this.forwarding.ready(this);
  }
  roomFreed(): void {
    this.forwarding.ready(this);
  }
}

export class SessionForward<I, O> {
  /** The batch outputs are moved through, one for all the sessions; null while in use (a nested call makes its own). */
  #batch: O[] | null = [];
  /** Sessions whose handler's end frees their slot already (`kFinished` watched while their outputs wait for room). */
  readonly #watched = new WeakSet<Session<I, O>>();
  /** Waits answered, in the order answered, to go on in one microtask (`#goOn`). */
  #ready: OutputWait<I, O>[] = [];
  #scheduled = false;
  readonly #goOn = (): void => this.#goOnReady();

  constructor(readonly host: ForwardHost<I, O>) {}

  /** Moves the session's outputs as they come, from its opening on. */
  start(s: Session<I, O>): void {
    this.#forward(s, new OutputWait(this, s));
  }

  /** A session's wait was answered (its stream has outputs or ended, or the outbox has room): it goes on soon. */
  ready(wait: OutputWait<I, O>): void {
    this.#ready.push(wait);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(this.#goOn);
  }

  #goOnReady(): void {
    const ready = this.#ready;
    // (Waits answered meanwhile are taken in the same pass, in order.)
    for (let i = 0; i < ready.length; i++) {
      const wait = ready[i];
      const failure = wait.failure;
      try {
        if (failure === null) this.#forward(wait.session, wait);
        else {
          wait.failure = null;
          this.host.writing.fail(wait.session, failure.error);
          this.#forwarded(wait.session);
        }
      } catch (error) {
        this.host.worker.report(error);
      }
    }
    ready.length = 0;
    this.#scheduled = false;
  }

  #forward(s: Session<I, O>, wait: OutputWait<I, O>): void {
    // Room in the outbox first: its outputs stay in the session's stream meanwhile (its handler stops at a full
    // output buffer, and takes no more events), so what waits for a commit is bounded by the outbox's limit and a batch
    // per session, not by every stream's buffer.
    if (this.host.outbox.waitRoom(wait)) {
      this.#watchEnd(s);
      return;
    }
    const { writing, budget } = this.host;
    const batch = this.#batch ?? [];
    this.#batch = null;
    let finished: boolean;
    try {
      finished = s.stream[kDrain](batch);
      if (batch.length > 0) {
        for (const value of batch) {
          writing.output(s, value);
          s.yieldsQueued++;
          if (s.checkpoints?.attached === true) s.checkpoints.forwarded(s.yieldsQueued);
          if (s.checkpoints !== null && s.checkpoints.calls.length > 0) writing.checkpointsDue(s);
        }
        // The handler ran: it may have taken events.
        if (budget.waiting) budget.freed();
      }
    } catch (error) {
      writing.fail(s, error);
      finished = true;
    } finally {
      batch.length = 0;
      this.#batch = batch;
    }
    if (!finished) s.stream[kReadTo](wait);
    // (Not before the opening that called this has returned: it arms the session's timers, unless it is done.)
    else queueMicrotask(() => this.#forwarded(s));
  }

  /**
   * Its slot is free once its handler has finished (`kFinished`: a cancelled stream's outputs are over while its
   * handler's `finally` may still run), though its last outputs may still wait for room in the outbox. Watched once
   * per session, from the first time its outputs wait for room (not from the opening on: a promise per session); a
   * session whose outputs are over is watched by `#forwarded`.
   */
  #watchEnd(s: Session<I, O>): void {
    if (s.forwardDone || this.#watched.has(s)) return;
    this.#watched.add(s);
    s.stream[kFinished].then(() => this.#freeSlot(s), noop);
  }

  #freeSlot(s: Session<I, O>): void {
    if (s.slotFreed) return;
    s.slotFreed = true;
    this.host.worker.live--;
  }

  /** Its outputs are all forwarded: once its handler has finished, its slot is free and it is over. */
  #forwarded(s: Session<I, O>): void {
    s.forwardDone = true;
    this.#watched.delete(s);
    s.stream[kFinished].then(
      () => {
        this.#freeSlot(s);
        this.host.over(s);
      },
      (error: unknown) => this.host.worker.report(error),
    );
  }
}
