// The session rule applied to a partition's live sessions: what a handler gets when it asks for its next input (a
// timer, the entry first in its input, or the end), and what the waiting handlers get when the log's clock moves.
// The rule itself is session-rules.ts; what this needs of the partition's run is `InputsHost`.
import type { EventBudget } from './budget';
import { DEBOUNCE_TIMER_KEY } from './debounce-input';
import { kSendNow } from '../../core/protocol';
import { decodeError } from '../../errors';
import { type Session, type Timer, capError } from './session';
import { IN_STREAM, POISON } from './inbox';
import type { InputEntry } from '../common/transport';
import { type Decision, type EndReason, decide, idleDeadline, take, waitsUntil } from '../rules/session-rules';
import { idTime, logOrder } from '../common/log-ids';
import { type HeldEntries, isEvent } from './held-entries';
import type { OwnerWrites } from './owner-writes';
import type { PartitionHost, RunFlags } from './partition-host';
import { type Grant, GrantState, PermitItem, waitsForStep } from './session-permits';
import { decodeStored } from '../common/codec';

const noop = (): void => {};

/** `#giveEntry`/`#giveTimer`: the input ends there (its codec could not decode it). */
const END = Symbol('end');
/** `#giveEntry`: the entry is in the session's stream already (its handler takes it there). */

/** What the sessions' inputs use of their partition's run. */
export interface InputsHost<I, O> {
  readonly worker: Pick<PartitionHost<I, O>, 'codec' | 'report' | 'step' | 'permits'>;
  readonly entries: HeldEntries;
  readonly writes: OwnerWrites;
  /** The live sessions, by key. */
  readonly sessions: ReadonlyMap<string, Session<I, O>>;
  /** The run's state (written by the run alone). */
  readonly flags: Readonly<RunFlags>;
  /** The partition's part of `maxBufferedEvents` (its owner: the run). */
  readonly budget: EventBudget;
  /** The log ended the session: its input ends (`PartitionRun.#finish`). */
  finish(s: Session<I, O>): void;
}

export class SessionInputs<I, O> {
  readonly #host: InputsHost<I, O>;
  readonly #worker: Pick<PartitionHost<I, O>, 'codec' | 'report' | 'step' | 'permits'>;
  readonly #entries: HeldEntries;
  readonly #writes: OwnerWrites;
  /**
   * `ask`'s answer with a value: one object reused, not one per input (the core reads its value at once, before
   * anything can ask again). Emptied at the next `ask`, so it holds no event for long.
   */
  readonly #answer: { value: unknown } = { value: undefined };
  /**
   * A log time below which `redecide` would change nothing (-Infinity: it goes over the sessions at its next call):
   * the earliest `waitsUntil` of the sessions waiting at its last pass, lowered as sessions begin to wait (or open
   * waiting), and cleared when a timer is set or dropped or a tick is read. With nothing held or left in the pending
   * list, a pass while the log's clock is below it would find every waiting session still waiting and set the same
   * tick or a later one. A tick read is the exception: its timer's deadline was dropped when it was written, and one
   * that came early (Redis' clock behind this machine's; or set for a session that took an input since) moved the
   * log's clock short of the idle end it was set for, so the pass after its read sets the next tick. Without the
   * bound, each read of a live partition went over all its sessions.
   */
  #quietUntil = -Infinity;

  constructor(host: InputsHost<I, O>) {
    this.#host = host;
    this.#worker = host.worker;
    this.#entries = host.entries;
    this.#writes = host.writes;
    // (A tick's timer went off: whether it is still due is a pass's answer, not the deadline set before.)
    host.writes.recheck = () => {
      this.#quietUntil = -Infinity;
      this.redecide();
    };
  }

  /** Sends an event into the session's stream; waits while its input is full (the partition is not read meanwhile). */
  /**
   * A session opened: `waiting` if its handler waits for input already (it ran up to its first await at the open), or
   * has no hooks (a pipe's: its entries are decided as they come). This module alone writes `waiting` from here on.
   */
  opened(s: Session<I, O>, waiting: boolean): void {
    s.waiting = waiting;
    // (Opened waiting, a restored session with nothing left to replay among them: as one that begins to wait.)
    if (waiting) this.#begins(s);
  }

  /** A session's timers changed (one set or dropped): the next `redecide` goes over the sessions. */
  changed(): void {
    this.#quietUntil = -Infinity;
  }

  /** A tick was read from the partition: the next `redecide` goes over the sessions, and sets the tick they need now. */
  tickRead(): void {
    this.#quietUntil = -Infinity;
  }

  /** Its handler waits for its next input (`SessionHooks.waiting`). */
  waits(s: Session<I, O>): void {
    s.waiting = true;
    this.#begins(s);
  }

  /** The session begins to wait: the rule's next answer for it may come with the log's clock, and its idle end needs a tick. */
  #begins(s: Session<I, O>): void {
    const until = waitsUntil(s.rule, s.limits);
    if (until < this.#quietUntil) this.#quietUntil = until;
    // (Waiting for its step's permits, it has its input decided already: no idle end to tick for until it asks
    // again. A tick set from its idle end now, one the log's clock has passed, would hold off the next.)
    if (!waitsForStep(s)) this.#host.writes.tickBy(this.tickTime(s));
  }

  /** The log ended the session: it waits for nothing more, and its input ends (`PartitionRun.#finish`). */
  #finished(s: Session<I, O>): void {
    s.waiting = false;
    s.checkpoints.inputEnded();
    this.#host.finish(s);
  }

  push(s: Session<I, O>, value: unknown): Promise<void> | undefined {
    const sent = s.stream[kSendNow](value as I);
    if (sent === true) return undefined;
    // A send refused because the handler finished is fine: the entry, untaken, goes to the key's next session.
    return sent.then(noop, noop);
  }

  /**
   * The time of the key's next entry the session has not been given: the first of its input, or (none there) a
   * lower bound from the key's entries held, being drained, or left in the pending list; undefined: none known.
   */
  #nextTime(s: Session<I, O>): number | undefined {
    const next = s.inbox.next;
    if (next !== undefined) return idTime(next.id);
    // (Nothing held, being drained or left in the pending list, as at each read of a live partition: none known. Here
    // first, as `redecide` asks this of every waiting session at each read: no closure made per session.)
    const entries = this.#entries;
    if (entries.held.size === 0 && entries.draining === null && entries.spilled.size === 0) return undefined;
    return this.#laterTime(s);
  }

  /** `#nextTime` of a session with nothing in its input, from the entries held, being drained, or left in the pending list. */
  #laterTime(s: Session<I, O>): number | undefined {
    let time: number | undefined;
    // An entry that reached this session is no next input of it: one being drained or read again from the pending
    // list stays listed there until its delivery returns, and the handler may have taken it by then (as the next
    // entry it would count twice). Reached: at or before the inbox's last delivery (the session's ids lose those
    // its checkpoints acked).
    const reached = s.inbox.lastReceived;
    const ahead = (id: string): boolean => reached === undefined || logOrder(id, reached) > 0;
    // Only events are inputs: a marker or a wake-up held behind the key's events (an ended session's, or this
    // one's) only moves the log's clock, and as the next entry it would end the session at its event cap.
    const held = this.#entries.held.get(s.key)?.find((e) => isEvent(e) && ahead(e.id));
    if (held !== undefined) time = idTime(held.id);
    const draining = this.#entries.draining;
    if (draining !== null && draining.key === s.key && isEvent(draining) && ahead(draining.id))
      time = Math.min(time ?? Infinity, idTime(draining.id));
    // Of the entries left in the pending list, the first event (with their ids not all kept: a lower bound, the
    // later of the first listed and the last delivered, while the last listed is ahead).
    const spilled = this.#entries.spilled.get(s.key);
    if (spilled !== undefined) {
      const first =
        spilled.ids !== null
          ? spilled.ids.find((id) => !spilled.notEvents.has(id) && ahead(id))
          : !ahead(spilled.last)
            ? undefined
            : reached !== undefined && logOrder(reached, spilled.after) > 0
              ? reached
              : spilled.after;
      if (first !== undefined) time = Math.min(time ?? Infinity, idTime(first));
    }
    return time;
  }

  #decide(s: Session<I, O>): Decision {
    return decide(s.rule, this.#nextTime(s), this.#host.flags.logTime, s.limits);
  }

  /**
   * Its handler asks for its next input (`SessionHooks.next`): the rule answers with a timer's payload, the entry
   * first in its stream (undefined: the stream gives it), or the end. Undefined with nothing in its stream: the
   * handler waits (`waiting`), and is answered when something new is known (`wake`).
   */
  ask(s: Session<I, O>): { value: unknown } | 'end' | undefined {
    this.#answer.value = undefined;
    if (this.#host.flags.dropped) return undefined;
    if (s.checkpoints?.broken === true) {
      // Failed at a checkpoint call its handler caught: its input ended there (what it has not taken moves on).
      if (!s.ended) this.#finished(s);
      return 'end';
    }
    if (s.failed || s.ended) return undefined;
    // Its last step ends here: that step's permits go back.
    const step = s.step;
    if (step !== null && step.state !== GrantState.Waiting) {
      s.step = null;
      step.release();
    }
    s.waiting = false;
    const d = this.#decide(s);
    if (d.kind === 'end') {
      this.#end(s, d.reason);
      return 'end';
    }
    // (An entry known only held, or left in the pending list: the handler waits for its delivery.)
    if (d.kind !== 'timer' && (d.kind !== 'entry' || s.inbox.length === 0)) return undefined;
    // (Waiting for its step's permits: the handler waits, and is given this input once they are granted.)
    if (s.stepped && !this.#stepReady(s, d)) return undefined;
    const given = d.kind === 'timer' ? this.#giveTimer(s, d.timer) : this.#giveEntry(s);
    if (given === END) return 'end';
    if (given === IN_STREAM) return undefined;
    this.#answer.value = given;
    return this.#answer;
  }

  /**
   * The session's handler waits for input (or its stream has no hooks: its entries are decided as they come):
   * applies the rule again with what is known now, and gives the handler what it answers. Entries delivered
   * meanwhile then go into its stream behind it. A promise: a send waits for room in its input.
   */
  wake(s: Session<I, O>): Promise<void> | undefined {
    const attached = s.checkpoints?.attached === true;
    while (s.waiting && !s.ended && !s.failed && !this.#host.flags.dropped) {
      const d = this.#decide(s);
      if (d.kind === 'wait') break;
      if (d.kind === 'end') {
        this.#end(s, d.reason);
        return undefined;
      }
      if (d.kind === 'timer') {
        if (s.stepped && !this.#stepReady(s, d)) break;
        const given = this.#giveTimer(s, d.timer);
        if (given === END) return undefined;
        s.waiting = false;
        void s.stream[kSendNow](given as I);
        break;
      }
      if (s.inbox.next === undefined) break;
      if (s.stepped && !this.#stepReady(s, d)) break;
      // (Given while its handler waits: outside its stream.)
      const given = this.#giveEntry(s);
      if (given === END) return undefined;
      // (Its stream has it already: it is answered there.)
      if (given === IN_STREAM) break;
      const pushed = this.push(s, given);
      if (attached) {
        s.waiting = false;
        break;
      }
      if (pushed !== undefined) return pushed.then(() => this.wake(s));
    }
    // (A stream without hooks never says it waits: each time it is given its entries, it begins to wait again, so
    // that its idle end, moved by what it took, has its tick.)
    if (!attached && s.waiting && !s.ended && !s.failed) this.#begins(s);
    // (A stepped session's entries stay outside: each is given with its step's permits.)
    if (!attached || s.waiting || s.ended || s.stepped) return undefined;
    // Running again: entries delivered while it waited go into its stream, in order, up to one that cannot be decoded.
    while (s.inbox.outside > 0 && !s.ended) {
      const pushed = this.push(s, s.inbox.shiftOutside());
      if (pushed !== undefined) return pushed.then(() => this.wake(s));
    }
    return undefined;
  }

  /**
   * The rule gives a stepped session's handler its next input (`d`): true once the step's permits of the worker's
   * `limiter.step` are held, asked for here if they are not (the handler waits meanwhile; `#stepGranted` gives it
   * the input). The permits' wait changes nothing the rule decides: the input is decided by log times already.
   */
  #stepReady(s: Session<I, O>, d: Decision): boolean {
    // (An entry its codec cannot decode ends the input: no step of the handler.)
    if (d.kind === 'entry' && s.inbox.poisonFirst) return true;
    let grant = s.step;
    if (grant === null) {
      const permits = this.#worker.permits;
      if (permits === null) return true;
      const codec = this.#worker.codec;
      let item: PermitItem;
      if (d.kind === 'timer') {
        const payload = d.timer.payload;
        item = new PermitItem(s.key, s.sid, 'timer', () => decodeStored(codec, payload));
      } else {
        const value = s.inbox.firstValue;
        item = new PermitItem(s.key, s.sid, 'event', () => value);
      }
      grant = permits.start('step', item) as Grant;
      s.step = grant;
      if (grant.state === GrantState.Waiting) {
        const waiting = grant;
        grant.onGranted = () => this.#stepGranted(s, waiting);
      }
    }
    return grant.state === GrantState.Granted;
  }

  /** The step's permits a stepped session waited for were granted: its waiting handler is given its input. */
  #stepGranted(s: Session<I, O>, grant: Grant): void {
    if (s.step !== grant || s.ended || s.failed || this.#host.flags.dropped || !s.waiting) return;
    const woke = this.wake(s);
    if (woke !== undefined) woke.catch((error: unknown) => this.#worker.report(error));
  }

  /**
   * An input is about to be given: a step of a simulated run (`PartitionHost.step`), which may stop the process
   * past its bound. True if it did (the partition is dropped): its handler's input ends here.
   */
  #stopped(): boolean {
    this.#worker.step?.();
    return this.#host.flags.dropped;
  }

  /** Gives the session its first timer (taken by the rule): its payload, or `END` if its codec cannot decode it. */
  #giveTimer(s: Session<I, O>, timer: Timer): unknown {
    if (this.#stopped()) return END;
    take(s.rule, timer.time, timer);
    s.checkpoints.took(`t${timer.id}`, timer.time, null);
    this.#writes.clearTimer(s, timer.id);
    // The debounce timer's payload is the worker's own (debounce-input.ts), not made by the function's codec.
    if (timer.key === DEBOUNCE_TIMER_KEY) return timer.payload;
    try {
      return decodeStored(this.#worker.codec, timer.payload);
    } catch (error) {
      s.stop = {
        error: decodeError(`The codec could not decode timer ${timer.id} of session ${JSON.stringify(s.sid)}`, error),
        kind: 'decode',
      };
      this.#finished(s);
      return END;
    }
  }

  /**
   * Gives the session the next entry of its input (taken by the rule): its value if it is outside its stream
   * (delivered while its handler waited), `IN_STREAM` if in it, `END` if its codec could not decode it (the
   * session keeps it: its input ends there, with the decoding error).
   */
  #giveEntry(s: Session<I, O>): unknown {
    if (this.#stopped()) return END;
    const entry = s.inbox.next as InputEntry;
    const time = idTime(entry.id);
    take(s.rule, time);
    const hooked = s.checkpoints?.attached === true;
    // With hooks, given is taken (without, its handler takes it later: `PartitionRun.#ended` reads what it took).
    if (hooked) s.checkpoints?.took(entry.id, time, entry);
    const value = s.inbox.give(hooked);
    if (value === POISON) {
      // The session keeps it (acked with its entries): out of its input.
      this.#host.budget.release();
      s.stop = { error: s.inbox.poisonError, kind: 'decode' };
      this.#finished(s);
      return END;
    }
    if (hooked) {
      // Taken now: out of the share.
      s.checkpoints.entries++;
      this.#host.budget.release();
      this.#host.budget.freed();
    }
    return value;
  }

  /** The rule ended the session: a cap's error is its last output once its handler reads to the end. */
  #end(s: Session<I, O>, reason: EndReason): void {
    s.endedBy = reason;
    if (reason !== 'idle') s.stop = { error: capError(s.sid, s.start, reason, s.limits), kind: 'cap' };
    this.#finished(s);
  }

  /**
   * Applies the rule again to the sessions whose handlers wait for input (the log's clock moved), and sets the
   * partition's tick for the earliest idle end among those still waiting (`OwnerWrites.tickFor`). A session whose key has
   * entries held, or left in the pending list, waits for their delivery (started here, unless the caller is
   * that delivery).
   */
  redecide(caller?: 'drain' | 'reread'): void {
    const flags = this.#host.flags;
    if (flags.stopping || flags.dropped) return;
    const entries = this.#entries;
    // (Nothing held or left in the pending list, no timer changed and no tick read since the last pass, and the log's
    // clock below every waiting session's `waitsUntil`: the pass would change nothing. `#quietUntil`.)
    if (flags.logTime < this.#quietUntil && entries.held.size === 0 && entries.spilled.size === 0 && entries.draining === null)
      return;
    // (A session that begins to wait during the pass lowers it from here: kept below.)
    this.#quietUntil = Infinity;
    let next = Infinity;
    let quiet = Infinity;
    let drain = false;
    let reread = false;
    for (const s of [...this.#host.sessions.values()]) {
      // (One waiting for its step's permits has its input decided already: it is given once they are granted.)
      if (!s.waiting || s.ended || waitsForStep(s)) continue;
      // No input of its key known beyond what it took, and the rule still waits: waking it would decide the same
      // (most waiting sessions at each read of a backlog). One decision, not `wake`'s and the one below.
      if (!s.failed && this.#nextTime(s) === undefined && decide(s.rule, undefined, flags.logTime, s.limits).kind === 'wait') {
        next = Math.min(next, this.tickTime(s));
        quiet = Math.min(quiet, waitsUntil(s.rule, s.limits));
        continue;
      }
      const woke = this.wake(s);
      if (woke !== undefined) woke.catch((error: unknown) => this.#worker.report(error));
      // (Now waiting for its step's permits: its input is decided, and its idle end, passed maybe, needs no tick.)
      if (!s.waiting || s.ended || waitsForStep(s)) continue;
      next = Math.min(next, this.tickTime(s));
      // (Still waiting with an input known: the next call goes over the sessions again.)
      quiet = this.#nextTime(s) === undefined ? Math.min(quiet, waitsUntil(s.rule, s.limits)) : -Infinity;
      // Held back only by entries of its key not delivered yet (held, or in the pending list): they go first.
      if (s.inbox.next !== undefined || decide(s.rule, undefined, this.#host.flags.logTime, s.limits).kind === 'wait') continue;
      if (this.#entries.held.has(s.key)) drain = true;
      else if (this.#entries.spilled.has(s.key)) reread = true;
    }
    this.#writes.tickFor(next);
    // (Until the replay is done, no tick is set: the pass at its end must go over the sessions.)
    this.#quietUntil = flags.replayDone ? Math.min(quiet, this.#quietUntil) : -Infinity;
    if (drain && caller !== 'drain') this.#entries.drainHeld().catch((error: unknown) => this.#worker.report(error));
    if (reread && caller !== 'reread') this.#entries.reread().catch((error: unknown) => this.#worker.report(error));
  }

  /**
   * When a tick should move the log's clock for a waiting session: its idle end (its age end has its marker, its
   * timers their wake-ups), or a timer whose wake-up an earlier owner wrote (not written again).
   */
  tickTime(s: Session<I, O>): number {
    let time = idleDeadline(s.rule, s.limits);
    const woken = s.wokenBefore;
    if (woken !== null) for (const timer of s.rule.timers) if (woken.has(timer.id)) time = Math.min(time, timer.time);
    return time;
  }
}
