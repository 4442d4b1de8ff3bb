// What a partition's owner writes into its input on its own clock, so that the log's clock moves past what its
// sessions wait for: a timer's wake-up once its time comes, an age marker once a session should be that old, and
// a tick at the earliest idle end (or timer) of the sessions waiting for input. Read back, each moves the log's
// clock; what it ends or fires is decided by the session rule from the entry ids, so a replay decides the same.
import type { ClockTimer } from '../common/clock';
import { idTime } from '../common/log-ids';
import type { Openings } from './outbox';
import { RETRY_MS } from './outage';
import type { PartitionHost, RunFlags } from './partition-host';
import type { Session, Timer } from './session';
import type { Lease } from '../common/transport';
import { waitsForStep } from './session-permits';

/** Node's longest timer delay, ms (2^31 - 1). */
export const MAX_TIMER_MS = 2_147_483_647;

/** What the owner's writes use of their partition's run. */
export interface WritesHost {
  readonly worker: PartitionHost<never, unknown>;
  readonly lease: Lease;
  /** The run's state (written by the run alone). */
  readonly flags: Readonly<RunFlags>;
  /** True if the error ended the partition's ownership; otherwise it was reported and the caller retries. */
  failed(error: unknown): boolean;
  /** Whether the session is its key's live one. */
  live(s: Session<never, unknown>): boolean;
  /** The sessions' openings not written yet: a wake-up writes its session's. */
  readonly openings: Openings;
  /**
   * `keyState`: an earlier session of the key has ended, its end (and the state it keeps) not committed yet. Until it
   * is, the session writes nothing: a later owner would replay that one anew (on its own version, keeping another
   * state) under this one, whose opening a wake-up would have stored.
   */
  endingBefore(s: Session<never, unknown>): boolean;
}

export class OwnerWrites {
  /** The partition's tick (`tickFor`): its timer, the deadline it is set for, and a write in flight. */
  #tickTimer: ClockTimer | null = null;
  #tickDeadline = Infinity;
  #ticking = false;
  /**
   * The latest deadline whose tick was due while another was being written (0: none): once that one is written,
   * another is, unless its id passed this already (else nothing would move the log's clock past it).
   */
  #tickAgain = 0;
  /**
   * Redis' time of the last tick written (its id), ms. Until the pump reads it back, a deadline at or before it
   * needs no tick of its own: reading that one passes it. (Without this, every pass over the sessions while the
   * pump was still behind, on a backlog, wrote another tick.)
   */
  #tickWritten = 0;
  /**
   * Set by `SessionInputs`: a pass over the waiting sessions, which sets the tick they need now. Called when a tick's
   * timer goes off: one set for a session that has taken an input since (its idle end later) is not written.
   */
  recheck: (() => void) | null = null;
  /** Sessions whose age markers were due while the pump was behind the log (`RunFlags.behind`). */
  readonly #ageHeld = new Set<Session<never, unknown>>();
  readonly #host: WritesHost;

  constructor(host: WritesHost) {
    this.#host = host;
  }

  /** Sets the tick for `time` if that is before the one set (a session began to wait for it). */
  tickBy(time: number): void {
    if (time < this.#tickDeadline) this.tickFor(time);
  }

  /**
   * Sets the partition's tick for Redis' time `deadline` (Infinity: none needed). A tick is an entry the owner
   * writes into the partition (a close marker naming no session) once Redis' clock should have passed the
   * earliest deadline of its waiting sessions: read back, it moves the log's clock there, and the rule ends every
   * session it passes, however many. Only the replay of a lease's pending entries is left alone (the log decides
   * there). One tick is written at a time; if it came too early (clocks differ), the next is set from its id.
   */
  tickFor(deadline: number): void {
    if (deadline === this.#tickDeadline || !this.#host.flags.replayDone) return;
    if (this.#tickTimer !== null) this.#host.worker.clock.clearTimeout(this.#tickTimer);
    this.#tickTimer = null;
    this.#tickDeadline = deadline;
    if (deadline === Infinity || deadline <= this.#tickWritten) return;
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, deadline - (this.#host.worker.clock.now() + this.#host.worker.clockOffset)));
    this.#tickTimer = this.#host.worker.clock
      .setTimeout(() => {
        this.#tickTimer = null;
        this.#tickDeadline = Infinity;
        this.recheck?.();
        // (The pass set a later deadline, or none: not due yet.)
        if (this.#tickDeadline > deadline) return;
        if (this.#tickTimer !== null) this.#host.worker.clock.clearTimeout(this.#tickTimer);
        this.#tickTimer = null;
        this.#tickDeadline = Infinity;
        this.#tick(deadline);
      }, wait)
      .unref();
  }

  /** Writes a tick for `deadline`, or, while one is being written, another after it (`#tickAgain`). */
  #tick(deadline: number): void {
    if (this.#host.flags.stopping || this.#host.flags.dropped) return;
    if (this.#ticking) {
      this.#tickAgain = Math.max(this.#tickAgain, deadline);
      return;
    }
    this.#ticking = true;
    this.#host.worker.log.markClose(this.#host.lease, '', '').then(
      (id) => {
        this.#ticking = false;
        this.#tickWritten = Math.max(this.#tickWritten, idTime(id));
        // What Redis' clock read against this machine's when it wrote the tick.
        this.#host.worker.clockOffset = idTime(id) - this.#host.worker.clock.now();
        this.#host.worker.counters.ticks++;
        const again = this.#tickAgain;
        this.#tickAgain = 0;
        if (again > this.#tickWritten) this.#tick(again);
      },
      async (error: unknown) => {
        this.#ticking = false;
        if (this.#host.failed(error)) return;
        await this.#host.worker.retryWait();
        this.#tick(Math.max(deadline, this.#tickAgain));
      },
    );
  }

  /**
   * Sets a Node timeout for the session's timer: when Redis' clock should have reached its time (or `after` ms,
   * when Redis said it was early), `#fire` writes its wake-up.
   */
  armTimer(s: Session<never, unknown>, timer: Timer, after?: number): void {
    if (this.#host.flags.dropped || s.forwardDone) return;
    const wait = after ?? Math.max(0, timer.time - (this.#host.worker.clock.now() + this.#host.worker.clockOffset));
    const timeouts = (s.wakeTimeouts ??= new Map<number, ClockTimer>());
    this.#host.worker.clock.clearTimeout(timeouts.get(timer.id));
    timeouts.set(timer.id, this.#host.worker.clock.setTimeout(() => this.#fire(s, timer), Math.min(MAX_TIMER_MS, wait)).unref());
  }

  /**
   * Writes the timer's wake-up into the partition's input (fenced, once per `(sid, timer)`): read back, it is
   * delivered to the session at that place of the log, on every replay too. One written before (by an earlier
   * owner, or by this one before a replay made the timer again) is not written again.
   */
  #fire(s: Session<never, unknown>, timer: Timer): void {
    s.wakeTimeouts?.delete(timer.id);
    if (this.#host.flags.dropped || s.forwardDone || !s.rule.timers.includes(timer)) return;
    // (A migrated session's opening replaces the one kept: only a commit does that. One whose key's state `migrate`
    // converted goes with that state, its first checkpoint: its wake-ups wait for that commit.)
    const pending = this.#host.openings.pending(s.sid);
    if (this.#host.endingBefore(s) || pending?.keyState === 'migrated') return this.armTimer(s, timer, RETRY_MS);
    const opening = pending?.replaces === undefined ? pending : undefined;
    const call = this.#host.worker.log.wake(this.#host.lease, s.key, s.sid, timer.id, timer.time, timer.payload, opening);
    const writes = (s.wakeWrites ??= new Set());
    const settled: Promise<void> = call.then(
      () => void writes.delete(settled),
      () => void writes.delete(settled),
    );
    writes.add(settled);
    call.then(
      (written) => {
        if (typeof written === 'number') return this.armTimer(s, timer, Math.max(1, written));
        if (opening !== undefined && written !== '') this.#host.openings.written([s.sid]);
        if (written !== '') {
          this.#host.worker.counters.wakeups++;
          return;
        }
        // An earlier owner wrote it (read back before the session's checkpoint, maybe): a tick moves the log's
        // clock to it instead, unless the session took it while the reply was on its way (a tick set for it then
        // would replace the one its idle end needs, and be passed already: nothing would move the clock on).
        if (!s.rule.timers.includes(timer)) return;
        (s.wokenBefore ??= new Set()).add(timer.id);
        // (Nor for a session whose handler waits for a step's permits: its input is decided already.)
        if (s.waiting && !waitsForStep(s) && timer.time < this.#tickDeadline) this.tickFor(timer.time);
      },
      async (error: unknown) => {
        if (this.#host.failed(error)) return;
        await this.#host.worker.retryWait();
        this.#fire(s, timer);
      },
    );
  }

  /** The session's timer `id` is gone (taken, replaced or cancelled): its wake-up is neither armed nor known written. */
  clearTimer(s: Session<never, unknown>, id: number): void {
    const timeouts = s.wakeTimeouts;
    if (timeouts !== null) {
      this.#host.worker.clock.clearTimeout(timeouts.get(id));
      timeouts.delete(id);
    }
    s.wokenBefore?.delete(id);
  }

  /** Stops the session's timers (it ended, or the partition is dropped). */
  clearTimers(s: Session<never, unknown>): void {
    const timeouts = s.wakeTimeouts;
    if (timeouts === null) return;
    for (const timeout of timeouts.values()) this.#host.worker.clock.clearTimeout(timeout);
    timeouts.clear();
  }

  /**
   * With `maxSessionAge`, writes an age marker for the session once it should be that old: by this machine's
   * clock at first (`clock.now()` against Redis' time of its first entry), and after a marker that came too
   * early, `after` ms later (the age still missing by the marker's id). Whether it ends the session is decided
   * by the marker's id alone.
   */
  armAge(s: Session<never, unknown>, after?: number): void {
    const max = s.limits.maxSessionAge;
    if (max <= 0 || s.ageMarked || s.ageTimer !== null || s.forwardDone || !this.#host.live(s)) return;
    const wait = after ?? Math.min(max + 1, Math.max(0, s.start + max + 1 - this.#host.worker.clock.now()));
    s.ageTimer = this.#host.worker.clock
      .setTimeout(() => {
        s.ageTimer = null;
        if (this.#host.flags.dropped || !this.#host.live(s)) return;
        // Entries not dispatched yet may end it by their ids (the log's clock passes its age end): once they are.
        if (this.#host.flags.behind) this.#ageHeld.add(s);
        else this.#markAge(s);
      }, wait)
      .unref();
  }

  /** The pump caught up with the log: the sessions still live whose age markers it held back get theirs. */
  ageDue(): void {
    if (this.#ageHeld.size === 0) return;
    const held = [...this.#ageHeld];
    this.#ageHeld.clear();
    for (const s of held) if (!this.#host.flags.dropped && this.#host.live(s)) this.#markAge(s);
  }

  #markAge(s: Session<never, unknown>): void {
    s.ageMarked = true;
    this.#mark(s, 'age');
  }

  /** An age marker came too early by its own id (clocks differ): another, `after` ms later. */
  rearmAge(s: Session<never, unknown>, after: number): void {
    s.ageMarked = false;
    this.armAge(s, after);
  }

  /** Writes a close marker for the session (fenced), retrying after errors until the partition is gone. */
  #mark(s: Session<never, unknown>, reason?: 'age'): void {
    this.#host.worker.log.markClose(this.#host.lease, s.key, s.sid, reason).catch(async (error: unknown) => {
      if (this.#host.failed(error)) return;
      await this.#host.worker.retryWait();
      if (this.#host.flags.dropped) return;
      this.#mark(s, reason);
    });
  }

  /** Stops a session's wake-ups and age marker (it ended, or the partition is dropped). */
  stopSession(s: Session<never, unknown>): void {
    this.clearTimers(s);
    if (s.ageTimer !== null) this.#host.worker.clock.clearTimeout(s.ageTimer);
    s.ageTimer = null;
    this.#ageHeld.delete(s);
  }

  /** The partition stops: no more ticks. */
  stop(): void {
    if (this.#tickTimer !== null) this.#host.worker.clock.clearTimeout(this.#tickTimer);
    this.#tickTimer = null;
  }
}
