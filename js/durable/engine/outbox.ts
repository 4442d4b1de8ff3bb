// A partition's outbox: its sessions' outputs, acks, checkpoints and ends, committed to the log in order, in
// fenced batches (a session's acks never before its outputs), retried until they succeed or the lease is gone;
// committed outputs go to local delivery; what `checkReplay` finds is reported.
import { type Codec, decodeStored } from '../common/codec';
import { type OutputContent, ReplayDivergedError, decodeError } from '../../errors';
import type { LocalDelivery } from './local-delivery';
import type { PartitionHost } from './partition-host';
import type { HandlerFailure, OutputItem } from '../common/outputs';
import type {
  Commit,
  CommitResult,
  Divergence,
  JournalEntry,
  KeptState,
  Lease,
  OutputRecord,
  SessionEnd,
  SessionOpening,
  Snapshot,
} from '../common/transport';

/** Outputs and acks waiting for a commit, held per partition before the outbox makes sessions wait. */
const OUTBOX_LIMIT = 1024;
/** Outputs per fenced commit call. */
const COMMIT_BATCH = 512;

/** What the outbox commits besides outputs: acks, with a session's end or checkpoint. */
export interface AcksItem {
  readonly acks: string[];
  readonly ended?: string;
  readonly lastSeq?: number;
  readonly endedAt?: SessionEnd;
  readonly checkpoint?: Snapshot;
  readonly keep?: KeptState;
  /**
   * With `ended`: the session's wake-up writes still in flight. The commit that ends it waits for them, so that none
   * applies after its end on a log that applies concurrent calls in any order.
   */
  readonly after?: Promise<unknown>;
  /** Journal entries to forget (`<sid> <at>`): those its checkpoint covers, or all of its ended session's. */
  readonly unjournal?: readonly string[];
}

/**
 * A session's journal entry, queued with its first record (before the outputs that depend on it); the records made
 * after it join it until a commit takes it (`take`: it is closed from then on).
 */
export interface QueuedJournal {
  take(): JournalEntry;
  /** The commit that took it succeeded. */
  written(): void;
}

/** A session's journal entry in the queue. */
export interface JournalItem {
  readonly journal: QueuedJournal;
}

/** An error for the worker's `onError`, told once the commit that takes it (and everything queued before it) lands. */
export interface ReportItem {
  readonly report: unknown;
}

/** An output (queued as its record), acks, a journal record, or a report. */
export type OutboxItem = OutputRecord | AcksItem | JournalItem | ReportItem;

/**
 * The openings of the partition's sessions not written yet (versions): each goes with its session's first commit that
 * writes something for it and does not end it, and is forgotten once a commit wrote it or ended its session.
 */
export interface Openings {
  pending(sid: string): SessionOpening | undefined;
  written(sids: Iterable<string>): void;
}

/** A session waiting for room in the outbox (`waitRoom`). */
export interface RoomWaiter {
  roomFreed(): void;
}

/** What the outbox uses of its worker. */
export type OutboxHost<O> = Pick<
  PartitionHost<never, O>,
  'log' | 'clock' | 'delivery' | 'codec' | 'counters' | 'checkReplay' | 'report' | 'retryWait' | 'keyState' | 'startGate'
>;

function decodedOutput<O>(codec: Codec<O>, o: OutputRecord): OutputContent<O> {
  if (o.error !== undefined) return { error: JSON.parse(o.error) as HandlerFailure };
  const payload = o.payload ?? '';
  return { value: decodeStored(codec, payload) };
}

/** An end in words: "by return after entry 1-0". */
function endText(end: SessionEnd): string {
  const after =
    end.last === ''
      ? 'with no input taken since its restore'
      : end.last.startsWith('t')
        ? `after its timer ${end.last.slice(1)}`
        : `after entry ${end.last}`;
  return `by ${end.reason} ${after}`;
}

export class Outbox<O> {
  readonly #items: OutboxItem[] = [];
  #outputsQueued = 0;
  #flushing: Promise<void> | null = null;
  /** Commits made under this lease (their `serial`). */
  #serial = 0;
  readonly #room: RoomWaiter[] = [];
  /** Set when the partition was lost: what is queued is thrown away. */
  #discard = false;

  readonly #worker: OutboxHost<O>;
  readonly #lease: Lease;
  /** True if the error ended the partition's ownership (else it was reported, and the commit is retried). */
  readonly #failed: (error: unknown) => boolean;
  /** Told of the key states a commit wrote (`keyState`), once it succeeded. */
  readonly #onKept: ((kept: readonly KeptState[]) => void) | undefined;
  readonly #openings: Openings | undefined;

  constructor(
    worker: OutboxHost<O>,
    lease: Lease,
    failed: (error: unknown) => boolean,
    onKept?: (kept: readonly KeptState[]) => void,
    openings?: Openings,
  ) {
    this.#worker = worker;
    this.#lease = lease;
    this.#failed = failed;
    this.#onKept = onKept;
    this.#openings = openings;
  }

  /**
   * The openings a commit of these outputs, checkpoints, journal entries and ends writes: its sessions' not written
   * yet, unless ended. A journal entry is a write of its opening's version too: its records sit at that version's
   * places, and under a stored opening of another version a later owner would replay them with that version's
   * handler, whose later calls would take them.
   */
  #opened(
    outputs: readonly OutputRecord[],
    checkpoints: Iterable<string>,
    journal: readonly JournalEntry[],
    ended: readonly string[],
  ): SessionOpening[] {
    const openings = this.#openings;
    if (openings === undefined) return [];
    const gone = new Set(ended);
    const found = new Map<string, SessionOpening>();
    const look = (sid: string): void => {
      if (gone.has(sid) || found.has(sid)) return;
      const opening = openings.pending(sid);
      if (opening !== undefined) found.set(sid, opening);
    };
    for (const o of outputs) look(o.sid);
    for (const sid of checkpoints) look(sid);
    for (const entry of journal) look(entry.sid);
    return [...found.values()];
  }

  /** Queues acks (with a session's end or checkpoint): committed in order with the outputs, in batches. */
  queue(item: AcksItem): void {
    if (this.#discard) return;
    this.#items.push(item);
    this.#flushing ??= this.#flush();
  }

  /** Queues a session's journal entry: committed in order, in the batch of the outputs made after its records or before. */
  queueJournal(entry: QueuedJournal): void {
    if (this.#discard) return;
    this.#items.push({ journal: entry });
    this.#flushing ??= this.#flush();
  }

  /**
   * Queues a report, told once everything queued before it is committed by this owner (never if its lease is lost
   * first). Queued right after an output, it goes in that output's commit (a batch ends only before an output).
   */
  queueReport(error: unknown): void {
    if (this.#discard) return;
    this.#items.push({ report: error });
    this.#flushing ??= this.#flush();
  }

  /** Queues an output: committed in order, in batches. */
  queueOutput(output: OutputRecord): void {
    if (this.#discard) return;
    this.#items.push(output);
    this.#outputsQueued++;
    this.#flushing ??= this.#flush();
  }

  /**
   * Undefined while the queue has room for more outputs; else resolves once it has. The partition reads no more
   * meanwhile: its handlers would run ahead of the commits, and what waits for them (entries taken, outputs made)
   * would grow with every stream's buffer.
   */
  room(): Promise<void> | undefined {
    if (this.#outputsQueued < OUTBOX_LIMIT) return undefined;
    return new Promise((resolve) => this.#room.push({ roomFreed: resolve }));
  }

  /** False if the queue has room for more outputs; else true, and `waiter` is told once it has (a session waits). */
  waitRoom(waiter: RoomWaiter): boolean {
    if (this.#outputsQueued < OUTBOX_LIMIT) return false;
    this.#room.push(waiter);
    return true;
  }

  async #flush(): Promise<void> {
    // Let a batch gather: everything queued in this turn goes in one call.
    await new Promise<void>((resolve) => this.#worker.clock.setImmediate(resolve));
    const w = this.#worker;
    const delivery = w.delivery;
    // With local delivery, a batch never needs more room than the whole queue has.
    const batch = delivery === null ? COMMIT_BATCH : Math.min(COMMIT_BATCH, delivery.limit);
    while (this.#items.length > 0 && !this.#discard) {
      // Room in the local queue first, for the outputs the batch takes: a slow onOutput holds the commits (and so
      // the sessions), and a commit carries no more outputs than the queue has room for.
      const want = Math.min(batch, this.#outputsQueued);
      const room = delivery === null ? want : await delivery.reserve(want);
      if (this.#discard) {
        delivery?.unreserve(room);
        break;
      }
      const outputs: OutputRecord[] = [];
      const acks: string[] = [];
      const ended: string[] = [];
      const endedSeqs: number[] = [];
      const endedAt: (SessionEnd | undefined)[] = [];
      // The latest checkpoint of each session: an earlier one in the same commit would be replaced at once.
      const checkpoints = new Map<string, Snapshot>();
      // The state each key keeps (`keyState`): of two sessions of a key ending in one commit, the later one's.
      const kept = new Map<string, KeptState>();
      const after: Promise<unknown>[] = [];
      const journal: JournalEntry[] = [];
      const journaled: QueuedJournal[] = [];
      const unjournal: string[] = [];
      const reports: unknown[] = [];
      let taken = 0;
      // A prefix of the queue, in order: a session's acks never go before its outputs.
      for (const item of this.#items) {
        if ('report' in item) reports.push(item.report);
        else if ('journal' in item) {
          journal.push(item.journal.take());
          journaled.push(item.journal);
        } else if (!('acks' in item)) {
          if (outputs.length === room) break;
          outputs.push(item);
        } else {
          if (item.unjournal !== undefined) for (const field of item.unjournal) unjournal.push(field);
          // (A loop, not a spread: a long session's end acks more entries than a call takes arguments.)
          for (const id of item.acks) acks.push(id);
          if (item.checkpoint !== undefined) checkpoints.set(item.checkpoint.sid, item.checkpoint);
          if (item.keep !== undefined) kept.set(item.keep.key, item.keep);
          if (item.after !== undefined) after.push(item.after);
          if (item.ended !== undefined) {
            ended.push(item.ended);
            endedSeqs.push(item.lastSeq ?? 0);
            endedAt.push(item.endedAt);
          }
        }
        taken++;
      }
      // (None goes back as things are: outputs are only added to the queue while the room is awaited.)
      if (outputs.length < room) delivery?.unreserve(room - outputs.length);
      if (after.length > 0) await Promise.all(after);
      // The same commit (the same serial) until it succeeds: a retry after a lost reply is recognised and changes
      // nothing. Without local delivery too: a commit that ended a session dropped its high-water mark, so its
      // outputs, sent again, would be written again.
      const opened = this.#opened(outputs, checkpoints.keys(), journal, ended);
      const commit = {
        outputs,
        checkpoints: [...checkpoints.values()],
        opened,
        acks,
        ended,
        endedSeqs,
        endedAt: w.checkReplay ? endedAt : undefined,
        ...(kept.size === 0 ? {} : { kept: [...kept.values()], retention: w.keyState?.retention }),
        ...(journal.length === 0 ? {} : { journal }),
        ...(unjournal.length === 0 ? {} : { unjournal }),
        serial: ++this.#serial,
        // Only local delivery reads the ids written: without it, the script builds no list of them.
        ids: delivery !== null,
        check: w.checkReplay,
      };
      let result: CommitResult | null = null;
      while (result === null && !this.#discard) {
        try {
          result = await w.log.commit(this.#lease, commit);
        } catch (error) {
          if (this.#failed(error)) break;
          await this.#worker.retryWait();
        }
      }
      if (result === null) {
        delivery?.unreserve(outputs.length);
        break;
      }
      for (const entry of journaled) entry.written();
      for (const error of reports) w.report(error);
      w.startGate.open();
      w.counters.outputs += outputs.length;
      w.counters.checkpoints += checkpoints.size;
      if (opened.length > 0 || ended.length > 0) this.#openings?.written([...opened.map((o) => o.sid), ...ended]);
      if (kept.size > 0) {
        w.counters.keptStates += kept.size;
        this.#onKept?.([...kept.values()]);
      }
      // Committed: delivered locally even if the partition was lost meanwhile.
      if (delivery !== null) this.#handOver(delivery, outputs, result.ids);
      if (result.diverged.length > 0) this.#diverged(outputs, commit, result.diverged);
      if (this.#discard) break;
      this.#items.splice(0, taken);
      this.#outputsQueued -= outputs.length;
      while (this.#outputsQueued < OUTBOX_LIMIT && this.#room.length > 0) this.#room.shift()?.roomFreed();
    }
    this.#flushing = null;
    for (const waiter of this.#room.splice(0)) waiter.roomFreed();
  }

  /** Hands the outputs this commit wrote to the local queue (their room was reserved); the others' room goes back. */
  #handOver(delivery: LocalDelivery<O>, outputs: OutputRecord[], ids: ReadonlyArray<string | null>): void {
    const items: OutputItem<O>[] = [];
    const codec = this.#worker.codec as Codec<O>;
    for (let i = 0; i < outputs.length; i++) {
      const id = ids[i];
      if (id === null || id === undefined) continue;
      const o = outputs[i];
      const base: { id: string; partition: number; key: string; sid: string; seq: number; traceparent?: string } = {
        id,
        partition: this.#lease.partition,
        key: o.key,
        sid: o.sid,
        seq: o.seq,
      };
      if (o.traceparent !== undefined) base.traceparent = o.traceparent;
      let content: OutputContent<O>;
      try {
        content = decodedOutput(codec, o);
      } catch (error) {
        this.#worker.report(decodeError(`The codec could not decode output ${o.seq} of session ${JSON.stringify(o.sid)}`, error));
        continue;
      }
      items.push({ ...base, ...content });
    }
    delivery.unreserve(outputs.length - items.length);
    delivery.push(items);
  }

  /** Reports what checkReplay found. */
  #diverged(outputs: OutputRecord[], commit: Commit, found: readonly Divergence[]): void {
    const w = this.#worker;
    const codec = w.codec as Codec<O>;
    const content = (o: OutputRecord): OutputContent | undefined => {
      try {
        return decodedOutput(codec, o);
      } catch {
        return undefined;
      }
    };
    for (const d of found) {
      w.counters.diverged++;
      if (d.kind === 'output') {
        const o = outputs[d.index];
        const committed = d.committed === undefined ? undefined : content({ ...o, ...d.committed });
        w.report(
          new ReplayDivergedError(
            'output',
            { partition: this.#lease.partition, key: o.key, sid: o.sid, seq: o.seq },
            `Replay diverged: output ${o.seq} of session ${JSON.stringify(o.sid)} (partition ${this.#lease.partition}) differs from the one written before the takeover, as entry ${d.committed?.id ?? '(gone)'}. Handlers must be deterministic over their inputs (no Date.now(), Math.random() or outside state); readers keep the output written first.`,
            committed,
            content(o),
          ),
        );
      } else if (d.kind === 'boundary') {
        const sid = commit.ended[d.index];
        const replayed = commit.endedAt?.[d.index] as SessionEnd;
        w.report(
          new ReplayDivergedError(
            'boundary',
            {
              partition: this.#lease.partition,
              key: sid.slice(0, sid.lastIndexOf('@')),
              sid,
              seq: commit.endedSeqs?.[d.index] ?? 0,
            },
            `Replay diverged: session ${JSON.stringify(sid)} (partition ${this.#lease.partition}) ended ${endText(replayed)}, but it ended ${endText(d.committed)} before. Handlers must be deterministic over their inputs (no Date.now(), Math.random() or outside state); the end recorded first is kept.`,
            undefined,
            undefined,
            { committed: d.committed, replayed },
          ),
        );
      } else {
        const key = d.sid.slice(0, d.sid.lastIndexOf('@'));
        w.report(
          new ReplayDivergedError(
            'count',
            { partition: this.#lease.partition, key, sid: d.sid, seq: d.replayed + 1 },
            `Replay diverged: session ${JSON.stringify(d.sid)} (partition ${this.#lease.partition}) ended with ${d.replayed} outputs, but ${d.committed} were written before the takeover. Handlers must be deterministic over their inputs (no Date.now(), Math.random() or outside state); readers keep the outputs written first.`,
          ),
        );
      }
    }
  }

  /** Resolves once everything queued is committed (or can no longer be). */
  async flushed(): Promise<void> {
    while (this.#flushing !== null) await this.#flushing;
  }

  /** The partition was lost: throws away what is queued, and commits nothing more. */
  discard(): void {
    this.#discard = true;
    this.#items.length = 0;
    this.#outputsQueued = 0;
    for (const waiter of this.#room.splice(0)) waiter.roomFreed();
  }
}
