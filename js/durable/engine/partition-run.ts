// One partition this worker owns, for as long as its lease lasts: it reads the partition's log, runs a session
// per live key (`Session`), holds entries of keys waiting for a session slot, ends sessions where the log says
// (idle by the log's clock, caps, markers) or where their handlers stop, and commits outputs and acks fenced.
// What each handler gets next, as the session rule decides, is `SessionInputs`; how a session opens, from what the
// last owner left, `SessionOpener`. What it needs of the worker is `PartitionHost`.
import { kTaken, kTakenEnd } from '../../core/protocol';
import { FencedError, decodeError } from '../../errors';
import { idTime } from '../common/log-ids';
import { Session, type SessionRun, sessionEnd } from './session';
import { SessionWrites, passWrittenBefore, queueRestart } from './session-writes';
import { SessionForward } from './session-forward';
import { wouldTake } from '../rules/session-rules';
import { SessionOpener } from './session-opener';
import { SessionInputs } from './session-inputs';
import { Outbox } from './outbox';
import type { PartitionHost, RunFlags } from './partition-host';
import { Delivery, HeldEntries } from './held-entries';
import { EventBudget } from './budget';
import { OwnerWrites } from './owner-writes';
import { type InputEntry, type KeptState, type Lease, type StoredKeyState } from '../common/transport';
import { type Grant, waitsForStep } from './session-permits';
import { SessionStarts } from './session-starts';
import { KeyStateReads } from './key-state-reads';
import { ReadPace } from './read-pace';
import { decodeStored } from '../common/codec';

export class PartitionRun<I, O> {
  readonly sessions = new Map<string, Session<I, O>>();
  /** Sessions whose marker was read, until their acks are queued: the key's next session waits for it. */
  readonly finishing = new Map<string, Promise<void>>();
  readonly #outbox: Outbox<O>;
  /** Entries of keys that cannot go to a session yet (held, or left in the pending list). */
  readonly #entries: HeldEntries;
  /** Wake-ups, age markers and ticks this owner writes. */
  readonly #writes: OwnerWrites;
  /** What its sessions write (outputs, failures, checkpoints), queued on the outbox. */
  readonly #writing: SessionWrites<I, O>;
  /** What each session's handler gets next, as the session rule decides. */
  readonly #inputs: SessionInputs<I, O>;
  /** Its state that its parts read (`RunFlags`): it alone writes it. */
  readonly flags: RunFlags = { stopping: false, dropped: false, replayDone: false, logTime: 0, behind: true };
  /** Sessions whose handler has not finished (live, or ending after their marker). */
  readonly #running = new Set<Session<I, O>>();
  /** Sessions as they open, from what the last owner left (its checkpoints, per key: `snapshots`). */
  readonly #opener: SessionOpener<I, O>;
  /**
   * `keyState`: the state a session of this run ended with, per key, until the commit of its end: what the key's
   * next session starts from meanwhile (after it, the key's state is read from the log).
   */
  readonly #ending = new Map<string, KeptState>();
  /** This partition's part of `maxBufferedEvents` (budget.ts). */
  readonly #budget: EventBudget;
  /** Sessions without hooks with entries in `sent` (their handlers' takes are counted by `reconcile`). */
  readonly #holding = new Set<Session<I, O>>();
  validUntil: number;
  /** When the lease's last successful renewal (or its grant) was sent: the next is due `ttl/3` after it. */
  renewedAt: number;
  /** A renewal is in flight. */
  renewing = false;
  lastTrim: number;
  /** Undelivered entries at the last measure. */
  lag = 0;
  /** Age of the oldest pending entry at the last measure, ms. */
  pinned = 0;
  readonly pumped: Promise<void>;
  /** Permits of the worker's `limiter.session` asked for keys' next sessions (session-starts.ts). */
  readonly #starts: SessionStarts;
  /** Stops the worker's permits waking this run (`slotsFreed`). */
  readonly #unwake: (() => void) | undefined;
  /** `keyState`: the states of the keys a read's batch opens, read together (key-state-reads.ts). */
  readonly #ahead: KeyStateReads;
  /** Moves its sessions' outputs to the outbox. */
  readonly #forwarding: SessionForward<I, O>;
  /** What its sessions' hooks tell it (`Session` passes them on): one object for all of them. */
  readonly #sessionRun: SessionRun<I, O> = {
    waits: (s) => this.#inputs.waits(s),
    ask: (s) => this.#inputs.ask(s),
    answered: (s, yielded) => this.#writing.answered(s, yielded),
    checkpointsDue: (s) => this.#writing.checkpointsDue(s),
    armTimer: (s, timer) => (this.#inputs.changed(), this.#writes.armTimer(s, timer)),
    clearTimer: (s, id) => (this.#inputs.changed(), this.#writes.clearTimer(s, id)),
  };

  constructor(
    readonly worker: PartitionHost<I, O>,
    readonly lease: Lease,
    grantedAt: number,
  ) {
    this.#starts = new SessionStarts(worker);
    this.#opener = new SessionOpener({
      worker,
      partition: lease.partition,
      flags: this.flags,
      sessionRun: this.#sessionRun,
      starts: this.#starts,
      queue: (item) => this.#outbox.queue(item),
      queueJournal: (record) => this.#outbox.queueJournal(record),
      failed: (error) => this.#failed(error),
    });
    this.#budget = new EventBudget(
      () => worker.share(),
      worker.clock,
      () => this.reconcile(),
      () => this.flags.stopping,
    );
    this.#outbox = new Outbox(
      worker,
      lease,
      (error) => this.#failed(error),
      (kept) => {
        for (const k of kept) if (this.#ending.get(k.key)?.sid === k.sid) this.#ending.delete(k.key);
      },
      this.#opener.ledger,
    );
    this.#writing = new SessionWrites(worker, this.flags, this.#outbox);
    this.#forwarding = new SessionForward({
      worker,
      writing: this.#writing,
      outbox: this.#outbox,
      budget: this.#budget,
      over: (s) => this.#over(s),
    });
    this.#writes = new OwnerWrites({
      worker: worker as PartitionHost<unknown, unknown>,
      lease,
      flags: this.flags,
      failed: (error) => this.#failed(error),
      live: (s) => this.sessions.get(s.key) === s,
      openings: this.#opener.ledger,
      endingBefore: (s) => {
        const ending = this.#ending.get(s.key);
        return ending !== undefined && ending.sid !== s.sid;
      },
    });
    this.#entries = new HeldEntries({
      worker,
      lease,
      sessions: this.sessions,
      flags: this.flags,
      budget: this.#budget,
      deliver: (entry) => this.#deliver(entry),
      failed: (error) => this.#failed(error),
      restoreWaiting: () => {
        if (this.#opener.snapshots.size > 0) this.#restoreWaiting();
      },
      redecide: (caller) => this.#inputs.redecide(caller),
      admitted:
        (worker.permits?.session.length ?? 0) === 0
          ? undefined
          : { ready: this.#starts.ready, waits: (key) => this.#starts.waits(key) },
    });
    this.#inputs = new SessionInputs<I, O>({
      worker,
      entries: this.#entries,
      writes: this.#writes,
      sessions: this.sessions,
      flags: this.flags,
      budget: this.#budget,
      finish: (s) => this.#finish(s),
    });
    this.#unwake = worker.permits?.onWake(() => this.slotsFreed());
    this.#ahead = new KeyStateReads(this, this.#ending, this.#opener.snapshots, this.#entries);
    this.validUntil = grantedAt + worker.ttl;
    this.renewedAt = grantedAt;
    this.lastTrim = grantedAt;
    this.pumped = this.#pump().catch((error: unknown) => {
      worker.report(error);
      worker.lose(this);
    });
  }

  /** The pump must stop reading (a hand-back, a loss). */
  get stopping(): boolean {
    return this.flags.stopping;
  }

  get partition(): number {
    return this.lease.partition;
  }

  /** The run holds a place at its worker's start gate (`start-gate.ts`) until it catches up or stops. */
  #gated = false;

  /** The run's reads and dispatch, once its worker's start gate lets it go. */
  async #pump(): Promise<void> {
    const wait = this.worker.startGate.enter();
    this.#gated = true;
    try {
      if (wait !== undefined) await wait;
      await this.#serve();
    } finally {
      this.#passGate();
    }
  }

  #passGate(): void {
    if (!this.#gated) return;
    this.#gated = false;
    this.worker.startGate.leave();
  }

  async #serve(): Promise<void> {
    const w = this.worker;
    // Where pending entries are read from (null: new entries): the start (a takeover replays the last owner's), or
    // after the last entry dispatched (a read whose reply was lost may have made entries pending that never arrived).
    let pendingFrom: string | null = '0-0';
    let last = '0-0';
    const pace = new ReadPace(w.readCount, w.clock);
    if (!(await this.#loadSnapshots())) return;
    while (!this.flags.stopping) {
      // Room in the outbox (`Outbox.room`), then in this partition's share, reserved for the read (drainHeld's too).
      await this.#outbox.room();
      const count = await this.#budget.reserve(pace.want);
      if (count === 0) return;
      let read;
      try {
        read = await w.log.read(this.lease, pendingFrom ?? '>', count);
      } catch (error) {
        this.#budget.release(count);
        if (this.#failed(error)) return;
        pendingFrom = last;
        await this.worker.retryWait();
        continue;
      }
      this.#budget.release(count - read.entries.length);
      pace.read();
      if (read.entries.length === 0) {
        if (pendingFrom !== null) {
          pendingFrom = null;
          if (!this.flags.replayDone) {
            this.flags.replayDone = true;
            for (const s of this.sessions.values()) this.#writes.armAge(s);
            this.#inputs.redecide();
          }
          continue;
        }
        this.#caughtUp();
        await w.idle(this, read.tail);
        continue;
      }
      if (!this.flags.replayDone) w.counters.replayed += read.entries.length;
      last = read.entries[read.entries.length - 1].id;
      if (pendingFrom !== null) pendingFrom = last;
      if (w.keyState !== null) await this.#ahead.readAhead(read.entries);
      let rereadable = false;
      this.flags.behind = true;
      for (const entry of read.entries) {
        const turn = pace.turn();
        if (turn !== undefined) await turn;
        if (this.flags.stopping) return;
        this.flags.logTime = Math.max(this.flags.logTime, idTime(entry.id));
        // A tick (a close marker of no session): the pass after this read sets the next one (`SessionInputs.tickRead`).
        if (entry.close === '' && entry.key === '') this.#inputs.tickRead();
        // Synchronous unless the entry must wait (a full session input, a session still finishing).
        const live = w.live;
        const dispatched = this.#entries.dispatch(entry);
        if (w.live > live) pace.opened();
        if (typeof dispatched !== 'boolean') pace.waited();
        rereadable = (typeof dispatched === 'boolean' ? dispatched : await dispatched) || rereadable;
      }
      pace.done(count, read.entries.length);
      this.#ahead.done();
      this.#inputs.redecide();
      if (rereadable) this.#entries.reread().catch((error: unknown) => w.report(error));
      // A short read took all there was: wait for more after its last entry rather than ask again (an empty read).
      if (pendingFrom === null && read.entries.length < count) {
        this.#caughtUp();
        await w.idle(this, last);
      }
    }
  }

  /** The pump has dispatched all it read and the log had no more: the age markers held back meanwhile are written. */
  #caughtUp(): void {
    this.#passGate();
    if (!this.flags.behind) return;
    this.flags.behind = false;
    this.#writes.ageDue();
  }

  /**
   * Before the replay: the checkpoints of the sessions the last owner left, each started again if a slot is free
   * (it must still end where the log says): now, or between the replay's entries once the openings took a slice, or
   * when its key's next entry needs it, or when a slot frees. False once the partition stops.
   */
  async #loadSnapshots(): Promise<boolean> {
    for (;;) {
      if (this.flags.stopping) return false;
      try {
        await this.#opener.load(this.lease);
        break;
      } catch (error) {
        if (this.#failed(error)) return false;
        await this.worker.retryWait();
      }
    }
    // The sessions the openings' slice has room for now; the rest go on between the replay's entries (`#restoreLater`).
    this.#restoreWaiting();
    return true;
  }

  /**
   * The versions of the partition's live sessions, as far as this run knows: those it runs, and those the last owner
   * left that it has not opened yet.
   */
  versions(): Set<string> {
    const found = new Set<string>();
    this.#opener.versions(found);
    for (const s of this.sessions.values()) found.add(s.opening.version);
    return found;
  }

  /**
   * Starts the sessions whose snapshots wait, while slots are free (and their permits granted). Openings that take
   * long together (a slow `migrate` over many sessions) go on at a later turn (`#restoring`), so that the lease's
   * renewals run between them.
   */
  #restoreWaiting(): void {
    for (const [key, snapshot] of [...this.#opener.snapshots]) {
      if (this.flags.stopping || this.sessions.has(key) || this.finishing.has(key)) continue;
      // The worker's openings (of any partition) took a slice of this turn: the rest at a later one.
      if (this.worker.openingSlice.full) {
        this.#restoreLater();
        return;
      }
      const grant = this.#starts.admit(key, snapshot.sid, undefined);
      if (grant === Delivery.NoSlot) return;
      if (grant === Delivery.Waits) continue;
      if (this.#open(key, '', grant as Grant | null) === undefined) return;
    }
  }

  /** The rest of a restore cut short (`#restoreWaiting`), at the next turn; null when none waits. */
  #restoring: Promise<void> | null = null;

  #restoreLater(): void {
    if (this.#restoring !== null) return;
    // After the turn, one microtask later than the openings the log's entries wait for at it (`#deliverNew`): an
    // entry's session opens first, and sessions restored ahead of their entries take what is left of the slice. So
    // a backlog is answered from its first entries while a slow `migrate` adopts the rest, not after all of them.
    this.#restoring = this.worker.openingSlice
      .turn()
      .then(() => undefined)
      .then(() => {
        this.#restoring = null;
        this.slotsFreed();
      });
  }

  /**
   * A session slot freed (a session of this worker ended), a permit was granted, or keys may ask for theirs now
   * (the worker and its permits call this, once per turn): sessions to restore from their checkpoints, held
   * entries and entries left in the pending list go on where they can.
   */
  slotsFreed(): void {
    if (this.flags.stopping) return;
    if (this.#opener.snapshots.size > 0) {
      this.#restoreWaiting();
      // A session restored now, with no entry left to replay, ends where the log says: by a tick for its idle end
      // once its handler waits (the pump, idle at the log's end, applies the rule to no one).
      this.#inputs.redecide();
    }
    if (this.heldCount > 0) this.drainHeld().catch((error: unknown) => this.worker.report(error));
    else if (this.spilledKeys > 0) this.reread().catch((error: unknown) => this.worker.report(error));
  }

  /** Delivers held entries while sessions can open (a session of this worker ended). */
  drainHeld(): Promise<void> {
    return this.#entries.drainHeld();
  }

  /** Reads the entries left in the pending list again (a session of this worker ended). */
  reread(): Promise<void> {
    return this.#entries.reread();
  }

  /** Entries held in memory. */
  get heldCount(): number {
    return this.#entries.count;
  }

  /** Keys whose entries wait in the pending list (read past the bound of held entries). */
  get spilledKeys(): number {
    return this.#entries.spilled.size;
  }

  /** Entries of this partition's share in use (an upper bound: `reconcile` lowers it). */
  get buffered(): number {
    return this.#budget.used;
  }

  /** Wakes whatever waits for room in the share (a handler may have taken events; the share may have grown). */
  budgetFreed(): void {
    this.#budget.freed();
  }

  /** Takes out of the share the entries each session without hooks has taken since (the others' are counted as given). */
  reconcile(): void {
    for (const s of this.#holding) {
      this.#budget.release(s.trimTaken());
      if (s.inbox.length === 0) this.#holding.delete(s);
    }
  }

  /** True if the error ended this partition's ownership; otherwise it is reported and the caller retries. */
  #failed(error: unknown): boolean {
    if (this.flags.dropped) return true;
    if (error instanceof FencedError) {
      this.worker.counters.fenced++;
      this.worker.lose(this);
      return true;
    }
    this.worker.report(error);
    return false;
  }

  /**
   * Delivers an entry counted in `buffered` (an event stays counted, in its session's `sent`, until its handler
   * takes it). Else, with the entry still counted: `NoSlot` if it needs a new session and `maxConcurrent`
   * sessions are live on this worker, `Behind` if an earlier entry of its key is held. Nothing is decided here
   * for a session whose handler is busy: the rule is applied when it asks for its next input (`SessionInputs.ask`).
   */
  #deliver(entry: InputEntry): Delivery | Promise<Delivery> {
    const key = entry.key;
    if (entry.close !== undefined) {
      this.#budget.release();
      const s = this.sessions.get(key);
      if (s !== undefined && s.sid === entry.close) {
        // A marker of the session only moves the log's clock (the rule ends the session by it, `SessionInputs.redecide`); it
        // is acked with the session's entries. (A close marker with no reason, of an older version, the same.)
        s.marker(entry.id);
        // An age marker that came too early by its own id (clocks differ): another once the age is due by it.
        const early = s.start + s.limits.maxSessionAge + 1 - idTime(entry.id);
        if (entry.reason === 'age' && early > 0) this.#writes.rearmAge(s, early);
      } else this.#outbox.queue({ acks: [entry.id] }); // a marker for a session that has ended already
      return Delivery.Done;
    }
    if (entry.wake !== undefined) return this.#deliverWake(entry, entry.wake);
    // Trimmed away while pending (never by velo-stream's own trimming): nothing to deliver.
    if (entry.payload === undefined) {
      this.#budget.release();
      this.#outbox.queue({ acks: [entry.id] });
      return Delivery.Done;
    }
    const s = this.sessions.get(key);
    // (Its handler waits for a step's permits: its later entries wait held, out of the share, as other keys go on.)
    if (s !== undefined) return waitsForStep(s) ? Delivery.Waits : this.#send(s, entry);
    const previous = this.finishing.get(key);
    return previous === undefined ? this.#deliverNew(entry) : previous.then(() => this.#deliverNew(entry));
  }

  /**
   * A timer's wake-up: it only moves the log's clock (its timer fires by the rule, at its due time, if its
   * session lives to it); acked with its session's entries (so a replay reads it again), or at once if that
   * session is gone. A session waiting to be restored from its snapshot is started for it.
   */
  #deliverWake(entry: InputEntry, wake: string): Delivery | Promise<Delivery> {
    const space = wake.lastIndexOf(' ');
    const sid = wake.slice(0, space);
    const s = this.sessions.get(entry.key);
    if (s === undefined && this.#opener.snapshots.get(entry.key)?.sid === sid) return this.#deliverNew(entry);
    this.#budget.release();
    if (s !== undefined && s.sid === sid) s.marker(entry.id);
    else this.#outbox.queue({ acks: [entry.id] });
    return Delivery.Done;
  }

  /**
   * `#deliver` of an entry that opens its key's next session (the previous one, if any, has finished). `kept`: with
   * `keyState`, the key's state as read from the log for this entry (null: none); undefined: not read yet.
   */
  #deliverNew(entry: InputEntry, kept?: StoredKeyState | null): Delivery | Promise<Delivery> {
    if (this.flags.stopping) return Delivery.Done;
    const key = entry.key;
    // The ending session's handler left entries before this one (they open the next session), or, while
    // this one waited, a delivery of an earlier entry did.
    if (this.sessions.has(key) || this.#entries.heldBefore(key, entry.id)) return Delivery.Behind;
    const snapshot = this.#opener.snapshots.get(key);
    const restoring = snapshot !== undefined;
    // A wake-up never opens a session of its own: dropped, unless it wakes the session about to be restored.
    if (entry.wake !== undefined && !restoring) return this.#deliverWake(entry, entry.wake);
    // The worker's openings (of any partition) took a slice of this turn: this one opens at a later turn.
    const slice = this.worker.openingSlice;
    if (slice.full) return slice.turn().then(() => this.#deliverNew(entry, kept));
    const sid = `${key}@${entry.id}`;
    const grant = restoring ? this.#starts.admit(key, snapshot.sid, undefined) : this.#starts.admit(key, sid, entry);
    if (grant === Delivery.NoSlot || grant === Delivery.Waits) return grant;
    // keyState: a new session starts from its key's state: the one a session of this run ended with while that end
    // is not committed yet, else the log's, read first (the checks above are made again once it is read).
    const ending = restoring ? undefined : this.#ending.get(key);
    const ahead = this.worker.keyState !== null && kept === undefined && ending === undefined && !restoring;
    if (ahead && (kept = this.#ahead.take(key)) === undefined) {
      if (this.worker.live >= this.worker.fn.config.maxConcurrent) return Delivery.NoSlot;
      return this.#readKept(key).then((read) => (read === undefined ? Delivery.Done : this.#deliverNew(entry, read)));
    }
    const s = this.#open(key, sid, grant as Grant | null, ending ?? kept ?? null);
    if (s === undefined) return Delivery.NoSlot;
    const delivered = restoring ? this.#deliver(entry) : this.#send(s, entry);
    // Openings that took a slice of the event loop (a slow `migrate`): the next delivery waits a turn.
    if (!slice.full) return delivered;
    return Promise.resolve(delivered).then((d) => slice.turn().then(() => d));
  }

  /** `keyState`: the key's state as the log has it (null: none), read until it answers; undefined once the partition stops. */
  async #readKept(key: string): Promise<StoredKeyState | null | undefined> {
    for (;;) {
      if (this.flags.stopping) return undefined;
      try {
        return await this.worker.log.keyState(this.partition, key);
      } catch (error) {
        if (this.#failed(error)) return undefined;
        await this.worker.retryWait();
      }
    }
  }

  /**
   * Gives the entry to its key's live session: into its input ahead of a busy handler (a prefetch: the rule
   * decides when the handler asks), or, to a handler waiting for input, as the rule decides now. `Done` at once,
   * or once a full input took it.
   */
  #send(s: Session<I, O>, entry: InputEntry): Delivery | Promise<Delivery> {
    s.ids.push(entry.id);
    s.inbox.receive(entry);
    if (s.checkpoints?.attached !== true) this.#holding.add(s);
    if (s.scope !== undefined) s.scope.event(entry, !this.flags.replayDone);
    if (s.inbox.poisoned) return Delivery.Done;
    let value: unknown;
    try {
      value = decodeStored(this.worker.codec, entry.payload as Buffer | string);
    } catch (error) {
      // Its input ends there once the rule gets to it (`SessionInputs.ask`); it and the key's later entries stay out.
      s.inbox.poison(entry, decodeError(`The codec could not decode entry ${entry.id}`, error));
      return this.#woken(s);
    }
    // (A stepped session's handler is given each input only with its step's permits: none goes into its stream ahead.)
    if (s.waiting || s.inbox.outside > 0 || s.stepped) {
      s.inbox.keepOut(entry, value);
      return this.#woken(s);
    }
    const pushed = this.#inputs.push(s, value);
    return pushed === undefined ? Delivery.Done : pushed.then(() => Delivery.Done);
  }

  /** `SessionInputs.wake`, as a delivery. */
  #woken(s: Session<I, O>): Delivery | Promise<Delivery> {
    const woke = this.#inputs.wake(s);
    return woke === undefined ? Delivery.Done : woke.then(() => Delivery.Done);
  }

  /**
   * The key's new session (`SessionOpener.open`), running in this run from now on; undefined while `maxConcurrent`
   * sessions of the function are open.
   */
  #open(
    key: string,
    sid: string,
    grant: Grant | null = null,
    kept: { readonly state: Buffer | string; readonly unreadable?: unknown; readonly version?: string } | null = null,
  ): Session<I, O> | undefined {
    const w = this.worker;
    // This worker's own sessions fill the function's slots: no open to try (and no StreamLimitError to build, a
    // stack trace each) while they do. On a backlog, every session that ends asks each partition for a slot.
    if (w.live >= w.fn.config.maxConcurrent) return undefined;
    const opened = this.#opener.open(key, sid, grant, kept);
    if (opened === undefined) return undefined;
    const s = opened.session;
    const checkpoints = s.checkpoints;
    // Without hooks (a pipe), its handler never asks: its entries are decided as they come (it has no timers).
    // With them, it may be waiting already (its handler ran up to its first await at the open).
    this.#inputs.opened(s, !checkpoints.attached || checkpoints.waits > 0);
    // Its hooks tell the run through the session from now on (timers it made so far are armed below).
    checkpoints.owner = s;
    if (!this.flags.replayDone) w.counters.replayedSessions++;
    this.sessions.set(key, s);
    this.#running.add(s);
    w.live++;
    this.#forwarding.start(s);
    if (this.flags.replayDone) this.#writes.armAge(s);
    // Calls its handler made before the session existed (it runs up to its first await at the open), and the
    // timers it was restored with.
    this.#writing.checkpointsDue(s);
    for (const timer of s.rule.timers) this.#writes.armTimer(s, timer);
    if (opened.broken !== undefined) {
      w.report(opened.broken);
      this.#writing.failOpening(s, opened.broken, opened.written);
    }
    return s;
  }

  /** Its handler has finished and its outputs are all forwarded (`SessionForward`): it ends in the run. */
  #over(s: Session<I, O>): void {
    // Its permits go back (its session's, its last step's), whatever ended it.
    s.permit?.release();
    s.step?.release();
    try {
      this.#ended(s);
      this.budgetFreed();
    } catch (error) {
      this.worker.report(error);
    }
    this.#running.delete(s);
    s.over();
    this.worker.notifySessionEnded();
  }

  /**
   * Its handler has finished. It keeps the entries its handler took (at least its first); those it never took go,
   * in log order, to the key's next session. That depends only on the log and the handler, so every replay ends it
   * at the same entry, whatever ended it. Its entries are acked after its outputs.
   */
  #ended(s: Session<I, O>): void {
    this.#writes.stopSession(s);
    s.ended = true;
    this.#holding.delete(s);
    this.#budget.release(s.inbox.length);
    const { given, base } = s.inbox;
    const sent = s.inbox.clear();
    // Stopped by a hand-off or a takeover: nothing is acked, the next owner replays it all.
    if (this.flags.dropped) return;
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
    // Its handler took the first `taken` of them (with hooks none: an entry given leaves `sent`). A new session
    // keeps its first entry even if its handler never took it (else that entry would open session after session);
    // a restored one's first was taken before its snapshot.
    const taken = s.checkpoints?.attached === true ? 0 : Math.max(0, Math.min(given, s.stream[kTaken]() - base));
    const first = base === 0 && !s.restored && s.stop?.kind !== 'decode' ? 1 : 0;
    const untaken = sent.slice(Math.min(Math.max(taken, first), sent.length));
    const moved = s.takenPast === null ? untaken : s.takenPast.concat(untaken);
    // The worker's end (a cap, an input it could not decode) is the session's last output if its handler read to it.
    if (s.stop !== undefined && s.stream[kTakenEnd]() && !s.failed) {
      if (s.stop.kind === 'cap') this.worker.counters.capped++;
      this.#writing.end(s, s.stop.error);
    }
    // A migrated session that wrote nothing past its old version's outputs ends after them: its last seq is theirs
    // (else `checkReplay` would count the outputs written before as missing from the replay). Those it held for
    // the input the old version was answering are settled first (session-writes.ts).
    this.#writing.settleHeld(s);
    passWrittenBefore(s);
    let acks = s.ids.all();
    if (moved.length > 0) {
      const away = new Set(moved.map((e) => e.id));
      acks = acks.filter((id) => !away.has(id));
      for (const entry of moved) this.#entries.hold(entry);
      // Counted: those its handler would have taken had it not stopped first (not those read ahead past a cap).
      if (s.stop === undefined)
        this.worker.counters.handedOn += wouldTake(
          s.rule,
          moved.map((e) => idTime(e.id)),
          s.limits,
        );
    }
    // keyState: its last checkpoint is kept for its key, or, with none, the state it started from; one made in its
    // last step counts when that step returned (a step that threw is not the session's).
    let keep = s.keep;
    const step = s.checkpoints?.stepState ?? null;
    if (!s.failed && step !== null) keep = step;
    const kept =
      keep === undefined || this.worker.keyState === null
        ? undefined
        : { key: s.key, sid: s.sid, state: keep, version: keep === s.keep ? s.keepVersion : s.opening.version };
    if (kept !== undefined) this.#ending.set(s.key, kept);
    const wakes = s.wakeWrites;
    const after = wakes === null || wakes.size === 0 ? undefined : Promise.all(wakes);
    // Its journal goes with it, in the commit that ends it.
    const unjournal = s.checkpoints?.journal?.all();
    this.#outbox.queue({ acks, ended: s.sid, lastSeq: s.seq, endedAt: sessionEnd(s, acks), keep: kept, after, unjournal });
    queueRestart(s, this.#outbox);
    if (moved.length > 0) this.#entries.drainHeld().catch((error: unknown) => this.worker.report(error));
  }

  /**
   * The log ended the session (its marker was read, a cap, an entry it cannot decode): its input ends. The
   * key's next session waits until it has finished (`#ended` may give it entries).
   */
  #finish(s: Session<I, O>): void {
    s.ended = true;
    this.sessions.delete(s.key);
    // Its input has ended: a wake-up would find no session to wake.
    this.#writes.stopSession(s);
    s.stream.end();
    const done = s.forwarded.then(() => {
      if (this.finishing.get(s.key) === done) this.finishing.delete(s.key);
    });
    this.finishing.set(s.key, done);
  }

  /** Stops every local session of the partition (their state is rebuilt by the next owner's replay). */
  async stopSessions(): Promise<void> {
    // Keys waiting for their sessions' permits stop waiting (a permit granted meanwhile goes back).
    this.#unwake?.();
    this.#starts.stop();
    const running = [...this.#running];
    for (const s of running) this.#writes.stopSession(s);
    this.#writes.stop();
    this.sessions.clear();
    // Never acked: the next owner replays them.
    this.#entries.clear();
    this.budgetFreed();
    await Promise.all(running.map((s) => s.stream.cancel()));
    await Promise.all(running.map((s) => s.forwarded));
  }

  /** The partition was taken over (or its lease ran out): drop everything, write nothing more. */
  async drop(): Promise<void> {
    this.#given = true;
    this.flags.dropped = true;
    this.flags.stopping = true;
    this.#outbox.discard();
    this.worker.wakeIdle(this.partition);
    await this.stopSessions();
  }

  /** Graceful hand-back: stop reading, stop the sessions, commit what they made, release the lease. */
  async release(): Promise<void> {
    this.flags.stopping = true;
    this.worker.wakeIdle(this.partition);
    this.budgetFreed();
    await this.pumped;
    // Cancelled sessions make no more outputs; those made before are committed below.
    this.flags.dropped = true;
    await this.stopSessions();
    await this.#outbox.flushed();
    // Dropped meanwhile (a close past its deadline): the lease lapses, and the log may be closed by now.
    if (this.#given) return;
    await this.worker.log.release(this.lease).catch((error: unknown) => this.worker.report(error));
  }

  /** Dropped (`drop`): nothing more is sent for it, not even the release of a graceful hand-back still running. */
  #given = false;
}
