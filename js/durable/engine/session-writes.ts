// What a session of the partition's run writes, queued on its outbox in the order its handler made it: its outputs
// (each with its place among the session's inputs), its failure, and its checkpoints once the outputs yielded before
// each are queued. A migrated session's outputs that an earlier owner wrote (`Session.writtenBefore`) are dropped.
//
// The input the old version was answering when it stopped (in flight: its outputs up to `writtenBefore.at` written,
// its end not) is answered whole by the new version, after the old partial answer, unless the new one continues the
// same answer from the journal. Its outputs for that input, while it continues from the old's records (or, before its
// first call, while those records lie ahead: a start marker), may be the old ones again: they are held
// (`Session.held`) until that is known. A later owner of the new version holds its own answer past the one adopted in
// flight the same way (`Session.writtenOwn`), the digest of the last written telling it the same. They are the old ones (those placed at or before
// the old's last dropped, the rest written) once the new version has taken every record of that input's calls and
// yields past the old's last output, or asks past the input (or ends) so, with at least as many outputs. They are
// another answer (written whole, after the old's) once the journal diverges, or its outputs stop lining up with the
// old's (another number before a record, or before its first call past them, than the old yielded: `Journal.restart`;
// or another output where the old's last stands, told by its digest), or the new version asks past the input with
// fewer outputs or records left untaken (dropped then: no later call gets one). So a reader never gets one answer's
// head and another's tail, nor an answer without its end, whatever each version yields.
import { type Codec, encodeChecked } from '../common/codec';
import type { Outbox } from './outbox';
import { type OutputPlaces, type PlacedRecord, placedBy } from './output-places';
import type { OutputPlace, OutputRecord } from '../common/transport';
import { NO_OUTPUTS, digestText, outputsDigest } from '../common/stored';
import type { PartitionHost, RunFlags } from './partition-host';
import { type CheckpointCall, type Session, checkpointOf, serializeError } from './session';

export class SessionWrites<I, O> {
  constructor(
    private readonly worker: PartitionHost<I, O>,
    private readonly flags: Readonly<RunFlags>,
    private readonly outbox: Outbox<O>,
  ) {}

  /** Queues an output of the session, and after it the restart its journal decided, if any (`Journal.restart`). */
  #queue(s: Session<I, O>, output: OutputRecord): void {
    this.outbox.queueOutput(output);
    queueRestart(s, this.outbox);
  }

  /** Queues the session's next output (or, if the codec refuses it, its failure). */
  output(s: Session<I, O>, value: O): void {
    // (A step of a simulated run, which may stop the process past its bound: `PartitionHost.step`.)
    this.worker.step?.();
    if (this.flags.dropped || s.failed) return;
    const w = this.worker;
    const places = s.checkpoints?.attached === true ? s.checkpoints.places : null;
    places?.place(s.yieldsQueued + 1);
    let hold = false;
    let current: OutputPlace | undefined;
    if (s.writtenBefore !== null) {
      const old = s.writtenBefore.at;
      // An earlier owner wrote the output at this place (a migrated session's old version): it stands.
      if (places !== null && placedBy(places.current, old)) return;
      current = places?.current;
      // Of the input it was answering, continued from its records (or its own answer made again): held, while it may
      // still leave some of them. Past the old's last output with every record taken, the held ones were the old
      // answer continued.
      if (current !== undefined && current[0] === old[0]) {
        if (continuing(s, places as OutputPlaces)) {
          if (current[1] <= old[1] || (s.held?.left ?? 0) > 0 || s.checkpoints?.journal?.recordsLeft() !== 0) hold = true;
          else this.#keepOld(s);
        } else if (recordsAhead(s)) hold = true;
      }
      if (!hold) this.#writeHeld(s, current?.[0]);
    }
    let payload: Buffer | string;
    try {
      payload = encodeChecked(w.codec as Codec<O>, value, w.maxEventBytes, 'output of session', s.sid);
    } catch (encodeError) {
      // It fails at this output's yield: what its handler took after it goes to the key's next session.
      if (s.checkpoints?.attached === true) s.takenPast = s.checkpoints.failAt(s.yieldsQueued + 1);
      this.fail(s, encodeError);
      return;
    }
    const journal = s.checkpoints?.journal;
    // (Its input counted from the session's restore: a place's count starts again at each checkpoint.)
    const input = places === null ? -1 : places.fromInputs + places.current[0];
    const digest = places === null ? undefined : this.#digest(s, input, payload, journal?.journals === true);
    // At the old version's last output, held: the same outputs so far, or the new version answers otherwise.
    const old = s.writtenBefore;
    if (hold && old?.digest !== undefined && current?.[1] === old.at[1] && digestText(digest ?? 0) !== old.digest) {
      // (Held before its first call (`recordsAhead`), it continued nothing: written whole, as an answer not from the
      // journal is, with no report.)
      if (places !== null && continuing(s, places))
        journal?.restart(
          `its new version's outputs of that answer, up to its output ${current[1]}, are not the ones the old version wrote`,
        );
      this.#writeHeld(s, current[0]);
      hold = false;
    }
    const output: OutputRecord & PlacedRecord = {
      sid: s.sid,
      seq: 0,
      key: s.key,
      payload,
      at: undefined,
      digest,
      traceparent: s.scope?.traceparent,
    };
    places?.placeInto(output);
    if (hold) {
      const held = (s.held ??= { outputs: [], answeredAt: -1, left: 0 });
      held.outputs.push(output);
      if (s.yieldsQueued + 1 >= held.answeredAt && held.answeredAt >= 0) this.#settle(s);
      return;
    }
    (output as { seq: number }).seq = ++s.seq;
    this.#queue(s, output);
  }

  /**
   * The digest of the session's outputs for input `input` (its count) up to this one (`payload`), as stored beside its
   * mark; undefined for an input whose first output came before its handler journaled (`journals`): a new version
   * continuing an answer in flight must have made the same outputs for it, and only a handler that journals can.
   */
  #digest(s: Session<I, O>, input: number, payload: Buffer | string, journals: boolean): number | undefined {
    if (s.digestInput !== input) {
      s.digestInput = input;
      s.digest = journals ? NO_OUTPUTS : 0;
    }
    if (s.digest === 0) return undefined;
    return (s.digest = outputsDigest(s.digest, payload));
  }

  /**
   * Its handler asks past an input, having yielded `yielded` outputs. Past the input its old version was answering
   * (a migrated session's), or one where its journal diverged, the records it left untaken are another answer's:
   * dropped now, before its next call could take one. Past the first, the outputs held for it are settled once the
   * last of them is queued (now, if it is).
   */
  answered(s: Session<I, O>, yielded: number): void {
    const checkpoints = s.checkpoints;
    const journal = checkpoints?.journal;
    if (journal == null || checkpoints?.attached !== true) return;
    const inputs = journal.inputs();
    const place = inputs - checkpoints.places.fromInputs;
    const inFlight = s.writtenBefore !== null && place === s.writtenBefore.at[0];
    // (The input the old version was answering, its answer restarted before this ask (`writtenBefore` passed, its
    // outputs written whole after the old's): the records left of its calls are the old answer's all the same.)
    const restarted = !inFlight && journal.inFlightInput === inputs;
    // (Past a diverged input that an earlier owner answered further than, the records left may be of later inputs.)
    if (
      !inFlight &&
      !restarted &&
      (journal.divergedInput !== inputs || (s.writtenBefore !== null && s.writtenBefore.at[0] > place))
    )
      return;
    const left = journal.dropLeft();
    // (An input the old version answered is over: its outputs stand, and the new version's for it were dropped.)
    if (!inFlight || s.writtenBefore?.at[2] === true) return;
    const held = (s.held ??= { outputs: [], answeredAt: -1, left: 0 });
    held.answeredAt = yielded;
    held.left = left;
    if (s.yieldsQueued >= yielded) this.#settle(s);
  }

  /**
   * The input the old version was answering is answered (or the session ends): the records the new version left
   * untaken are the old answer's, stale from here on; the outputs held are dropped if they are the old ones again
   * (every record taken, as many outputs as the old wrote, continued to the end), else written after them.
   */
  #settle(s: Session<I, O>): void {
    const held = s.held;
    const checkpoints = s.checkpoints;
    if (held === null || s.writtenBefore === null || checkpoints?.attached !== true) return;
    held.answeredAt = -1;
    // (Dropped when its handler asked past the input; at its end without that ask, now.)
    const left = held.left + (checkpoints.journal?.dropLeft() ?? 0);
    const last = held.outputs.at(-1)?.at;
    const continued = continuing(s, checkpoints.places);
    if (left === 0 && last !== undefined && last[1] >= s.writtenBefore.at[1] && continued) {
      this.#keepOld(s);
      return;
    }
    // An answer continued from the journal that turns out another (it left records, or fewer outputs than the old
    // version wrote) is reported as every restart is; one not from the journal, or already reported, is not.
    if (continued)
      checkpoints.journal?.restart(
        left > 0
          ? `its new version left ${left} of the old version's records of that answer untaken`
          : `its new version yielded ${last?.[1] ?? 0} output(s) of that answer, where the old version had written ${s.writtenBefore.at[1]}`,
      );
    this.#writeHeld(s, s.writtenBefore.at[0]);
  }

  /**
   * The outputs held are the old answer continued: those at or before the old's last output are its outputs
   * (dropped), those after are the new ones that go on from them.
   */
  #keepOld(s: Session<I, O>): void {
    const held = s.held;
    const old = s.writtenBefore;
    s.held = null;
    passWrittenBefore(s);
    if (held === null || old === null) return;
    for (const output of held.outputs) {
      if ((output.at?.[1] ?? 0) <= old.at[1]) continue;
      (output as { seq: number }).seq = ++s.seq;
      this.#queue(s, output);
    }
  }

  /**
   * The outputs held are another answer than the old one: written now, after the old's, and the session goes on past
   * them. An answer to the input its adoption found in flight (`input`: the place of what is written now) goes after
   * the old version's outputs as they were then (`SessionOpening.after`): an owner replaying it after another wrote
   * it gives its outputs the same seqs (the log keeps each once).
   */
  #writeHeld(s: Session<I, O>, input?: number): void {
    const held = s.held;
    const old = s.writtenBefore;
    const after = s.opening.after;
    s.held = null;
    passWrittenBefore(s);
    if (
      old !== null &&
      after !== undefined &&
      input === after[1] &&
      old.at[0] === after[1] &&
      after[0] > s.startSeq &&
      after[0] <= old.written
    )
      s.seq = after[0];
    if (held === null) return;
    for (const output of held.outputs) {
      (output as { seq: number }).seq = ++s.seq;
      this.#queue(s, output);
    }
  }

  /** The session's outputs are over (it ended, or fails): its held outputs are settled first. */
  settleHeld(s: Session<I, O>): void {
    if (s.held !== null) this.#settle(s);
    if (s.held !== null) this.#writeHeld(s, s.writtenBefore?.at[0]);
  }

  /**
   * Queues the failure of a session that could not start as planned (its checkpoint unreadable, `migrate` failed):
   * after every output written (`written`: an earlier owner may have written some past its checkpoint; with the seq
   * after the checkpoint's, the commit would skip the failure as written before).
   */
  failOpening(s: Session<I, O>, error: unknown, written: number): void {
    s.seq = Math.max(s.seq, written);
    s.held = null;
    s.writtenBefore = null;
    this.fail(s, error);
  }

  /** Queues the session's failure (whatever was thrown, `undefined` included), after which it makes no more. */
  fail(s: Session<I, O>, error: unknown): void {
    if (this.flags.dropped || s.failed) return;
    this.end(s, error);
    s.failed = true;
    void s.stream.cancel(error);
  }

  /** Queues the error that ends the session's outputs (its failure, or the worker's end of its input). */
  end(s: Session<I, O>, error: unknown): void {
    this.settleHeld(s);
    passWrittenBefore(s);
    const failure = serializeError(error, this.worker.maxEventBytes);
    this.#queue(s, { sid: s.sid, seq: ++s.seq, key: s.key, error: failure, traceparent: s.scope?.traceparent });
  }

  /**
   * Queues the session's checkpoint calls whose outputs (those yielded before each) are all queued: a
   * checkpoint goes in the commit of those outputs, with the acks of the entries of the events taken before it.
   * One that could not be encoded fails the session there, as an output that cannot be encoded does.
   */
  checkpointsDue(s: Session<I, O>): void {
    const calls = s.checkpoints?.calls;
    if (calls === undefined) return;
    while (calls.length > 0 && calls[0].yielded <= s.yieldsQueued) {
      const call = calls.shift() as CheckpointCall;
      if (this.flags.dropped || s.failed) continue;
      if (call.error !== undefined) this.fail(s, call.error);
      else {
        // Not committed while its outputs are another owner's (`writtenBefore`): a later owner would start from it
        // with that owner's places counted from an older checkpoint.
        if (s.writtenBefore === null) {
          // The journal's records of the calls it covers are forgotten in its commit.
          const unjournal = s.checkpoints?.journal?.covered(call.calls);
          this.outbox.queue({ ...checkpointOf(s, call), unjournal });
          s.checkpoints?.places.checkpointed(call.inputs, call.yielded);
        }
        s.keep = call.state;
        s.keepVersion = s.opening.version;
      }
    }
  }
}

/**
 * Whether the session's journal continues, from the old version's records, the input its old version was answering
 * (it took a record there, and has not diverged since).
 */
function continuing<I, O>(s: Session<I, O>, places: OutputPlaces): boolean {
  const journal = s.checkpoints?.journal;
  // (Its own version's answer, made again: the same one if its outputs up to the last written are, told by its digest.)
  if (s.writtenOwn && s.writtenBefore?.digest !== undefined) return journal != null;
  return (
    journal != null &&
    s.writtenBefore !== null &&
    journal.continuedInput >= 0 &&
    s.writtenBefore.at[0] === journal.continuedInput - places.fromInputs
  );
}

/**
 * Before its first call of the input in flight: the old version's records of that input's calls lie ahead, neither
 * taken nor diverged from. Its outputs so far (a start marker) are held: its next call that takes a record continues
 * the old answer (they were the old ones again), one that does not makes them another answer's.
 */
function recordsAhead<I, O>(s: Session<I, O>): boolean {
  const journal = s.checkpoints?.journal;
  if (journal == null) return false;
  const input = journal.inputs();
  return journal.divergedInput !== input && journal.restartedInput !== input && journal.recordsLeft() > 0;
}

/** A migrated session's outputs go on past those an earlier owner wrote: its next seq follows theirs. */
export function passWrittenBefore<I, O>(s: Session<I, O>): void {
  if (s.writtenBefore === null) return;
  s.seq = Math.max(s.seq, s.writtenBefore.written);
  s.writtenBefore = null;
}

/**
 * The restart the session's journal decided (`Journal.restart`), reported with the commit of what was queued just
 * before: its next output, or its end. A commit fenced meanwhile reports nothing (the next owner decides again).
 */
export function queueRestart<I, O>(s: Session<I, O>, outbox: Outbox<O>): void {
  const restarted = s.checkpoints?.journal?.takeRestart();
  if (restarted != null) outbox.queueReport(restarted);
}
