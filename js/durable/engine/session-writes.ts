// What a session of the partition's run writes, queued on its outbox in the order its handler made it: its outputs
// (each with its place among the session's inputs), its failure, and its checkpoints once the outputs yielded before
// each are queued. A migrated session's outputs that an earlier owner wrote (`Session.writtenBefore`) are dropped.
import { type Codec, encodeChecked } from '../common/codec';
import type { Outbox } from './outbox';
import { type PlacedRecord, placedBy } from './output-places';
import type { OutputRecord } from '../common/transport';
import type { PartitionHost, RunFlags } from './partition-host';
import { type CheckpointCall, type Session, checkpointOf, serializeError } from './session';

export class SessionWrites<I, O> {
  constructor(
    private readonly worker: PartitionHost<I, O>,
    private readonly flags: Readonly<RunFlags>,
    private readonly outbox: Outbox<O>,
  ) {}

  /** Queues the session's next output (or, if the codec refuses it, its failure). */
  output(s: Session<I, O>, value: O): void {
    // (A step of a simulated run, which may stop the process past its bound: `PartitionHost.step`.)
    this.worker.step?.();
    if (this.flags.dropped || s.failed) return;
    const w = this.worker;
    const places = s.checkpoints?.attached === true ? s.checkpoints.places : null;
    places?.place(s.yieldsQueued + 1);
    if (s.writtenBefore !== null) {
      // An earlier owner wrote the output at this place (a migrated session's old version): it stands.
      // (Of the input its journal continued: the old answer, continued from the records rather than given anew.)
      const journal = s.checkpoints?.journal;
      const continued =
        journal != null &&
        journal.continuedInput >= 0 &&
        places !== null &&
        places.current[0] === journal.continuedInput - places.fromInputs;
      if (places !== null && placedBy(places.current, s.writtenBefore.at, continued)) return;
      passWrittenBefore(s);
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
    const output: OutputRecord & PlacedRecord = {
      sid: s.sid,
      seq: ++s.seq,
      key: s.key,
      payload,
      at: undefined,
      traceparent: s.scope?.traceparent,
    };
    places?.placeInto(output);
    this.outbox.queueOutput(output);
  }

  /**
   * Queues the failure of a session that could not start as planned (its checkpoint unreadable, `migrate` failed):
   * after every output written (`written`: an earlier owner may have written some past its checkpoint; with the seq
   * after the checkpoint's, the commit would skip the failure as written before).
   */
  failOpening(s: Session<I, O>, error: unknown, written: number): void {
    s.seq = Math.max(s.seq, written);
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
    passWrittenBefore(s);
    const failure = serializeError(error, this.worker.maxEventBytes);
    this.outbox.queueOutput({ sid: s.sid, seq: ++s.seq, key: s.key, error: failure, traceparent: s.scope?.traceparent });
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

/** A migrated session's outputs go on past those an earlier owner wrote: its next seq follows theirs. */
export function passWrittenBefore<I, O>(s: Session<I, O>): void {
  if (s.writtenBefore === null) return;
  s.seq = Math.max(s.seq, s.writtenBefore.written);
  s.writtenBefore = null;
}
