// The log a distributed stream function runs on, as the worker, the producer
// and the output reader see it. Three logs implement it: Redis Streams
// (js/redis/log), Postgres tables (js/postgres/log) and memory (durable/memory),
// each held to one contract: K partitions of input, each owned by one worker at
// a time under a lease with a fencing token; every read, output write and ack
// by the owner is refused once its lease is gone; entries stay pending for the
// owner until acked, and a new owner gets them back in log order. Times named
// "the log's clock" are the backend server's (Redis' TIME, Postgres' clock).
import type { WorkerAdvert } from '../rules/versions';
import type { SessionEnd } from '../../errors';
import type { SessionLimits } from '../rules/session-rules';
import type { Debounce } from '../../core/debounce';

export type { SessionEnd } from '../../errors';

/** Ownership of one partition: `token` is unique per grant (it holds the fencing epoch). */
export interface Lease {
  readonly partition: number;
  readonly token: string;
}

/** A partition held by another lease: its holder (the worker id of its token) and the time its lease has left, ms (negative: no expiry). */
export interface Held {
  readonly holder: string;
  readonly left: number;
}

/** A partition refused to a worker: some live session of it runs on a version the worker does not run. */
export interface Refused {
  readonly refused: readonly string[];
}

/**
 * The live workers, the one (not the caller) whose registration runs out first, with its time left (ms), and what
 * each live worker runs (absent for a worker of a release that says nothing).
 */
export interface Heartbeat {
  readonly live: number;
  readonly next?: { readonly worker: string; readonly left: number };
  readonly adverts?: ReadonlyMap<string, WorkerAdvert>;
}

/**
 * What a session opened with, kept while it lives (once it wrote anything: an output, a checkpoint, a wake-up), so
 * that every later owner runs it the same: its handler's version (`''`: none set) and its caps.
 */
export interface SessionOpening {
  readonly sid: string;
  readonly version: string;
  readonly limits: SessionLimits;
  /**
   * A migrated session's (`migrate`): the version it was adopted from, which this opening replaces. Kept with it:
   * its outputs are then matched to those written before by place (`OutputRecord.at`), not by seq.
   */
  readonly replaces?: string;
  /**
   * A migrated session's, when its adoption found outputs written past where it starts from: the seq of the last
   * of them, and the place of the input they were answering (`OutputPlace`'s inputs). An answer to that input given
   * anew is written after that seq by every owner that replays the session from there (session-writes.ts), so that
   * one owner's answer, written again by the next, is not written twice.
   */
  readonly after?: readonly [seq: number, input: number];
  /**
   * How it started from its key's kept state (`keyState`), when not as it was: `'migrated'` (by `migrate`, the state
   * kept by another version), `'refused'` (without it: kept by a version its worker neither runs nor adopts). Kept
   * with the opening, so that a later owner replaying it starts it the same way.
   */
  readonly keyState?: 'migrated' | 'refused';
  /**
   * The `debounce` it opened with (null: none), which travels with it as its caps do: an owner with other options
   * replays its entries as they were grouped. Undefined: not recorded (an opening of an earlier release), the
   * owner's own.
   */
  readonly debounce?: Debounce | null;
}

/**
 * Where an output comes among its session's inputs: inputs taken since the session's latest checkpoint before it
 * was yielded, and its position among the outputs yielded since the last of them (since the checkpoint, for 0);
 * `answered`: its handler had asked for its next input by the time the output was committed (no output of the same
 * input comes after it).
 */
export type OutputPlace = readonly [inputs: number, position: number, answered?: true];

/**
 * A session's high-water mark: outputs written so far, and the place of the last one when it was recorded (with the
 * digest of its payload, when it has one: `OutputRecord.digest`).
 */
export interface OutputMark {
  readonly written: number;
  readonly at?: OutputPlace;
  readonly digest?: string;
}

/** The mark of outputs written past where a session starts from, their last one's place known. */
export type WrittenMark = OutputMark & { readonly at: OutputPlace };

/** One entry of a partition's input: an event for `key`, or a close marker for session `close`. */
export interface InputEntry {
  readonly id: string;
  readonly key: string;
  /**
   * The encoded event (absent for a close marker, or for an entry trimmed away while pending): text when the log
   * reads text for the worker's codec (`readsText`), else bytes. Decode it with `decodeStored`.
   */
  readonly payload?: Buffer | string;
  /** A close marker: the session id it ends. */
  readonly close?: string;
  /** Why the marker was written: `'age'` for `maxSessionAge` (absent for an idle close or a handler's own end). */
  readonly reason?: string;
  /** A timer's wake-up (`ctx.wakeAt`): `<sid> <timer id>`; its payload is the event delivered to that session. */
  readonly wake?: string;
  /** A wake-up's due time (Redis' clock, ms): the time its session is judged at (absent in older entries). */
  readonly due?: number;
  /** The producer's trace context (W3C), as written: unchecked (`tracing.ts` parses it). */
  readonly traceparent?: string;
  readonly tracestate?: string;
}

/** An output of session `sid`, its `seq`-th (from 1): `(sid, seq)` is its idempotency key. */
export interface OutputRecord {
  readonly sid: string;
  readonly seq: number;
  readonly key: string;
  /** The encoded output, or ... */
  readonly payload?: Buffer | string;
  /** ... the handler's failure, as JSON `{ name, message, code }`. */
  readonly error?: string;
  /** Its place (a session with hooks): kept with the session's mark when it is the last written. */
  readonly at?: OutputPlace;
  /**
   * The digest of the session's outputs for its input up to this one (`outputsDigest`; a session whose handler
   * journals), kept with its place: a new version that continues an answer in flight from the journal has yielded
   * the same outputs for it by there, or gives another answer. Stored as 8 hex digits (`digestText`).
   */
  readonly digest?: number;
  /** The session span's W3C `traceparent`, when the session is traced. */
  readonly traceparent?: string;
}

/** A live session's last checkpoint, as committed: what a new owner restores it from. */
export interface Snapshot {
  readonly sid: string;
  readonly key: string;
  /** Outputs the session had made up to the checkpoint: its next output is `seq + 1`. */
  readonly seq: number;
  /** Redis' time of the last event it had taken, ms (its idle deadline is `idleTimeout` after it); 0: none. */
  readonly lastTime: number;
  /** Events of the log it had got up to the checkpoint (for `maxSessionEvents`). */
  readonly events: number;
  /** The state, as the function's codec encoded it. */
  readonly state: Buffer | string;
  /** Timers the session had made (`ctx.wakeAt`) up to the checkpoint: its next gets id `timers + 1`. */
  readonly timers?: number;
  /** Those of them not known to have fired, as `[id, time, payload, key?]` (the payload by the codec; the key if made with one). */
  readonly pending?: readonly (readonly [number, number, Buffer | string, string?])[];
  /** The last input it had taken (`SessionEnd.last`), so that its end names it after a restore (absent in older snapshots). */
  readonly lastInput?: string;
  /** Journaled calls the session had made (`ctx.run`, `ctx.stream`) up to the checkpoint: its next is `calls + 1`. */
  readonly calls?: number;
  /** As read by a new owner: outputs of the session written so far (its high-water mark, at least `seq`). */
  readonly written?: number;
  /** As read by a new owner: the place of the last of them, when recorded (`OutputMark.at`). */
  readonly writtenAt?: OutputPlace;
  /** As read by a new owner: the digest of the last of them, when recorded (`OutputMark.digest`). */
  readonly writtenDigest?: string;
  /** As read by a new owner: why its header could not be read (corrupt); the session then fails at its restore. */
  readonly unreadable?: unknown;
}

/** A key's state, kept after its session ended (`keyState`): the last checkpoint of the session that ended last. */
export interface KeptState {
  readonly key: string;
  /** The session whose end kept it. */
  readonly sid: string;
  /** The state, as the function's codec encoded it. */
  readonly state: Buffer | string;
  /** The version of the session whose end kept it (`''` or absent: none set). */
  readonly version?: string;
}

/** A key's state as read back (`PartitionLog.keyState`). */
export interface StoredKeyState {
  /** The session whose end kept it. */
  readonly sid: string;
  /** The version of that session (`''`: none set, or kept by a release before versions were stored with it). */
  readonly version?: string;
  /** The state's bytes, by the function's codec. */
  readonly state: Buffer;
  /** Why its header could not be read (a corrupt value): nothing to start from. */
  readonly unreadable?: unknown;
}

/**
 * One record of a session's journal (`ctx.run`, `ctx.stream`): a call's result or error, a streamed call's chunk, or
 * its end. Written in the fenced commit that carries the outputs made after it (in its session's `JournalEntry`);
 * read by a new owner, whose replay of the session gets it back instead of calling again.
 */
export interface JournalRecord {
  /**
   * Its place in the session's journal: `<n>` for the result of the session's n-th journaled call (1, 2, ...),
   * `<n>.<i>` for chunk i (0, 1, ...) of a streamed call, `<n>.end` for that stream's end.
   */
  readonly at: string;
  /**
   * `'v'`: a value (a result, a chunk) by the codec; `'u'`: the value `undefined` (no payload); `'e'`: an error (a
   * `HandlerFailure`'s JSON); `'x'`: a stream's end.
   */
  readonly kind: 'v' | 'u' | 'e' | 'x';
  /** The call's name, as the handler gave it: a replay that asks another name at this place is told. */
  readonly name: string;
  readonly payload: Buffer | string;
  /** The payload's length in bytes, when its maker counted it (a string's UTF-8, counted once rather than again). */
  readonly bytes?: number;
  /**
   * Outputs the handler had yielded for its current input when it made this record (its call, or its pull of the
   * chunk or end; absent: 0): a new version that replays the records of an answer in flight continues the old
   * answer only if it yields as many before each.
   */
  readonly yielded?: number;
}

/**
 * A session's journal records of one commit, in the order they were made, stored as one (a hash field, a row) named
 * `<sid> <at>` by its first record's place: a commit writes one per session that journaled, however many calls it
 * made. Never empty. It is forgotten whole: by the checkpoint that covers its last call, or with its session's end.
 */
export interface JournalEntry {
  readonly sid: string;
  readonly records: readonly JournalRecord[];
}

/** What the owner of a partition commits in one fenced step: outputs, then checkpoints, then acks, then forgets ended sessions. */
export interface Commit {
  readonly outputs: OutputRecord[];
  /** The latest checkpoint of each session that made one since the last commit (at most one per `sid`). */
  readonly checkpoints?: readonly Snapshot[];
  readonly acks: string[];
  /** Sessions that ended. */
  readonly ended: readonly string[];
  /**
   * `keyState`: the states ended sessions keep for their keys (at most one per key: the latest), each written with
   * an expiry of `retention` ms, replacing what the key kept before.
   */
  readonly kept?: readonly KeptState[];
  /** With `kept`: how long each is kept, ms. */
  readonly retention?: number;
  /** What sessions of this commit that are not ended opened with, for those not written before (kept once per sid). */
  readonly opened?: readonly SessionOpening[];
  /**
   * Journal entries to keep, at most one per session (written before this commit's outputs: a record is never behind
   * what depends on it).
   */
  readonly journal?: readonly JournalEntry[];
  /**
   * Journal entries to forget, as `<sid> <at>` (`at`: its first record's place): those a checkpoint of this commit
   * covers, and those of sessions it ends. (After the writes: an entry written and forgotten in one commit is not kept.)
   */
  readonly unjournal?: readonly string[];
  /** With `check`: each ended session's last output seq (0: none), in the order of `ended`. */
  readonly endedSeqs?: readonly number[];
  /** With `check`: where each ended session ended (undefined: not recorded), in the order of `ended`. */
  readonly endedAt?: readonly (SessionEnd | undefined)[];
  /**
   * A number unique per commit within the lease (the worker sends one with every commit). The result then has
   * `ids` (for local delivery), and the commit is idempotent: a retry of a commit that was applied (its reply
   * lost) changes nothing and gets the ids the first call wrote. Without it, a retry of a commit that ended a
   * session would write that session's outputs again (its high-water mark went with it).
   */
  readonly serial?: number;
  /**
   * With `serial`: false leaves `ids` out of the result (empty), as nothing reads them without local delivery; the
   * commit is idempotent all the same. Default true.
   */
  readonly ids?: boolean;
  /**
   * For `checkReplay`: a digest of each output written is kept while its session lives, and an output written
   * before (by `(sid, seq)`) is compared with it; so is each ended session's seq with the last one written. Each
   * ended session's end (`endedAt`) is kept while its first entry is in the input (trimmed with it), and a later
   * end of the same sid is compared with it.
   */
  readonly check?: boolean;
}

/**
 * An output a replay made differently from the one written before (`index` into the commit's outputs), a session
 * that ended with fewer, or a session (`index` into the commit's `ended`) that ended elsewhere or for another reason.
 */
export type Divergence =
  | {
      readonly kind: 'output';
      readonly index: number;
      /** The stored output (absent if its entry is gone from the output stream). */
      readonly committed?: { readonly id: string; readonly payload?: Buffer; readonly error?: string };
    }
  | { readonly kind: 'count'; readonly sid: string; readonly committed: number; readonly replayed: number }
  | { readonly kind: 'boundary'; readonly index: number; readonly committed: SessionEnd };

/** What a commit did. */
export interface CommitResult {
  /** With `serial`: per output, the id of the entry written, or null if `(sid, seq)` was written before. Empty otherwise. */
  readonly ids: ReadonlyArray<string | null>;
  /** With `check`: what differs from the earlier run. Empty otherwise. */
  readonly diverged: readonly Divergence[];
}

/** The result of a read: entries, or none and the position after which a wake-up must look. */
export interface ReadResult {
  readonly entries: InputEntry[];
  readonly tail: string;
}

/** The partitioned log of one stream function. */
export interface PartitionLog {
  readonly partitions: number;
  /**
   * Registers the worker as live for `ttl` ms; resolves with the number of live workers and, if another is
   * registered, the one whose registration runs out first and the time it has left (ms). `extend` false: registers
   * it only if it is not registered (a registration keeps the expiry its last renewal gave it).
   */
  heartbeat(worker: string, ttl: number, extend?: boolean, advert?: WorkerAdvert): Promise<Heartbeat>;
  /** Removes the worker from the live set, with its advert. */
  leave(worker: string): Promise<void>;
  /**
   * Takes the partition if no one holds it and the worker `runs` the version of each of its live sessions (`'*'`:
   * any, a worker that migrates): a new lease (with the next epoch); or, held, who holds it until when; or,
   * refused, the versions it lacks. `rescue` (a worker past its fair share): only a partition refused to another
   * worker within the last `ttl` (as its lease would be), else refused with no version named.
   */
  acquire(
    partition: number,
    worker: string,
    ttl: number,
    runs?: readonly string[],
    rescue?: boolean,
  ): Promise<Lease | Held | Refused>;
  /** Extends the lease; false if it is no longer held. */
  renew(lease: Lease, ttl: number): Promise<boolean>;
  /** Gives the partition back (no-op if the lease is no longer held). */
  release(lease: Lease): Promise<void>;
  /**
   * Fenced read. `from` = an entry id: the owner's pending entries after it (replay); `'>'`: new entries,
   * which become pending. Rejects with `FencedError` if the lease is gone.
   */
  read(lease: Lease, from: string, count: number): Promise<ReadResult>;
  /**
   * The owner's pending entries of these ids, in the order given (unfenced: a read changes nothing, and what the
   * owner does with them is fenced). An entry no longer in the log comes back with no key and no payload.
   */
  entries(lease: Lease, ids: readonly string[]): Promise<InputEntry[]>;
  /**
   * Fenced: appends a close marker for session `sid` of `key` to the partition's input (`reason`: see InputEntry);
   * resolves with its entry id. A tick (key and sid `''`) names no session: it moves the log's clock.
   */
  markClose(lease: Lease, key: string, sid: string, reason?: string): Promise<string>;
  /** Fenced: removes input entries no session needs any more (older than every pending or undelivered one). Resolves with how many. */
  trim(lease: Lease): Promise<number>;
  /**
   * Fenced: trims the partition's output stream (`acked`: up to the oldest entry a consumer group has not acked;
   * `maxLen` > 0: to about its newest `maxLen` entries). Resolves with how many were removed.
   */
  trimOutputs(lease: Lease, acked: boolean, maxLen: number): Promise<number>;
  /**
   * Fenced: writes the wake-up of timer `id` of session `sid` into the input, once per `(sid, id)`. Resolves
   * with its entry id, `''` if it was written before, or the ms still to wait (Redis' clock is before `time`).
   */
  wake(
    lease: Lease,
    key: string,
    sid: string,
    id: number,
    time: number,
    payload: Buffer | string,
    opening?: SessionOpening,
  ): Promise<string | number>;
  /**
   * The state `key` kept after its last session (`keyState`), or null: none, or expired (unfenced: a read; what the
   * owner does with it is fenced).
   */
  keyState(partition: number, key: string): Promise<StoredKeyState | null>;
  /** The checkpoints of the partition's live sessions (unfenced: what the owner does with them is fenced). */
  snapshots(lease: Lease): Promise<Snapshot[]>;
  /** The journal entries of the partition's live sessions (unfenced: a read at a takeover). */
  journal(lease: Lease): Promise<JournalEntry[]>;
  /** What the partition's live sessions opened with (those that wrote anything), by sid (unfenced: a read). */
  openings(lease: Lease): Promise<Map<string, SessionOpening>>;
  /** The high-water marks of these live sessions, by sid (those with none left out; unfenced: a read). */
  marks(lease: Lease, sids: readonly string[]): Promise<Map<string, OutputMark>>;
  /** Fenced: writes outputs not written before (by `(sid, seq)`), checkpoints, acks entries, forgets ended sessions. */
  commit(lease: Lease, commit: Commit): Promise<CommitResult>;
  /** Age of the partition's oldest pending entry, ms by Redis' clock (0: none); unfenced, a figure for metrics. */
  pinned(partition: number): Promise<number>;
  /** Entries of the partition's input not yet delivered to its owner (unfenced: a read-only figure for metrics). */
  lag(partition: number): Promise<number>;
  /**
   * Waits until one of the partitions has entries after its position, or `ms` pass, or `interrupt()`.
   * Resolves with the partitions that have entries.
   */
  wait(positions: ReadonlyMap<number, string>, ms: number): Promise<number[]>;
  /** Ends a pending `wait()` early. */
  interrupt(): Promise<void>;
  /**
   * Frees the log's own connections (not the user's client). A log that counts its calls refuses new ones from here
   * on, and waits up to `wait` ms (default: as long as it takes) for those in flight.
   */
  close(wait?: number): Promise<void>;
}
