// A partition's sessions' outputs, moved from each session's stream to the outbox as they come, to its handler's end:
// one callback loop per session over the stream's `kDrain` / `kWaitOutput` protocol, with no frame or promise of its
// own while the session is idle, and one batch array for all of them.
import { kDrain, kFinished, kWaitOutput } from '../../core/protocol';
import type { EventBudget } from './budget';
import type { Outbox } from './outbox';
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

export class SessionForward<I, O> {
  /** The batch outputs are moved through, one for all the sessions; null while in use (a nested call makes its own). */
  #batch: O[] | null = [];
  /** Sessions whose handler's end frees their slot already (`kFinished` watched while their outputs wait for room). */
  readonly #watched = new WeakSet<Session<I, O>>();

  constructor(readonly host: ForwardHost<I, O>) {}

  /** Moves the session's outputs as they come, from its opening on. */
  start(s: Session<I, O>): void {
    this.#forward(s);
  }

  #forward(s: Session<I, O>): void {
    const { writing, budget } = this.host;
    const batch = this.#batch ?? [];
    this.#batch = null;
    let finished: boolean;
    let room: Promise<void> | undefined;
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
        room = this.host.outbox.waitRoom();
      }
    } catch (error) {
      writing.fail(s, error);
      finished = true;
    } finally {
      batch.length = 0;
      this.#batch = batch;
    }
    // Its slot is free once its handler has finished (`kFinished`: a cancelled stream's outputs are over while its
    // handler's `finally` may still run), though its last outputs may still wait for room in the outbox. Watched
    // once per session, from the first time its outputs wait for room (not from the opening on: a promise per
    // session); a session whose outputs are over is watched by `#forwarded`.
    if (room !== undefined && !finished && !this.#watched.has(s)) {
      this.#watched.add(s);
      s.stream[kFinished].then(() => this.#freeSlot(s), noop);
    }
    if (room !== undefined) {
      room.then(
        () => (finished ? this.#forwarded(s) : this.#waitOutput(s)),
        (error: unknown) => this.host.worker.report(error),
      );
    } else if (!finished) this.#waitOutput(s);
    // (Not before the opening that called this has returned: it arms the session's timers, unless it is done.)
    else queueMicrotask(() => this.#forwarded(s));
  }

  #freeSlot(s: Session<I, O>): void {
    if (s.slotFreed) return;
    s.slotFreed = true;
    this.host.worker.live--;
  }

  #waitOutput(s: Session<I, O>): void {
    s.stream[kWaitOutput]().then(
      () => this.#forward(s),
      (error: unknown) => {
        this.host.writing.fail(s, error);
        this.#forwarded(s);
      },
    );
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
