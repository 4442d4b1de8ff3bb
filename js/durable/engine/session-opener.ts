// A partition run's sessions as they open: from the records the last owner left (checkpoints, openings, marks of
// migrated sessions), read once at the takeover and kept here until each key's session opens again, and from the
// release this worker runs. `planOpening` and `openingState` (opening.ts) decide; `open` carries the decision out
// up to a session ready to run: its hooks, its stream, its permit, what its opening must commit. `PartitionRun`
// then runs it (its slot, its inputs, its outputs, its timers).
import { DEBOUNCE_TIMER_KEY } from './debounce-input';
import { kOpen, type StreamKind } from '../../core/protocol';
import { FencedError } from '../../errors';
import { Session, type SessionRun } from './session';
import {
  type KeptInput,
  type OpeningInputs,
  type OpeningRelease,
  migratedCheckpoint,
  startCheckpoint,
  openingRelease,
  openingState,
  planOpening,
} from './opening';
import { sessionHooks, traceSession } from './session-hooks';
import { sessionScope } from '../common/trace-context';
import type { AcksItem, Openings, QueuedJournal } from './outbox';
import type { PartitionHost, RunFlags } from './partition-host';
import type { JournalEntry, Lease, OutputMark, SessionOpening, Snapshot } from '../common/transport';
import type { Journal } from './journal';
import type { Grant } from './session-permits';
import type { SessionStarts } from './session-starts';
import { snapshotMark } from '../common/stored';

/** What opening a session needs of its partition's run. */
export interface OpenerHost<I, O> {
  readonly worker: PartitionHost<I, O>;
  readonly partition: number;
  readonly flags: Readonly<RunFlags>;
  /** What the sessions' hooks tell the run. */
  readonly sessionRun: SessionRun<I, O>;
  /** The permits of `limiter.session` asked for keys' next sessions. */
  readonly starts: SessionStarts;
  /** Queues a write on the partition's outbox (a migrated state's checkpoint, ahead of the session's outputs). */
  queue(item: AcksItem): void;
  /** Queues a session's journal entry on the partition's outbox (in order with its outputs). */
  queueJournal(entry: QueuedJournal): void;
  /** An error that may end the partition's ownership (`PartitionRun.#failed`). */
  failed(error: unknown): boolean;
}

/** A session made by `open`, and what broke its opening (its checkpoint unreadable, `migrate` failed), if anything. */
export interface Opened<I, O> {
  readonly session: Session<I, O>;
  /** Its failure, queued once it runs (after outputs its earlier owner wrote, `written`). */
  readonly broken: unknown;
  readonly written: number;
}

export class SessionOpener<I, O> {
  /** Checkpoints of sessions the last owner left, per key, until their session is opened again. */
  readonly snapshots = new Map<string, Snapshot>();
  /** What the partition's live sessions opened with, as the last owner left it (versions), by sid. */
  #openings = new Map<string, SessionOpening>();
  /** The marks of sessions without a checkpoint that are or will be migrated, as read at the takeover, by sid. */
  #marks = new Map<string, OutputMark>();
  /** The journals of the partition's live sessions, as the last owner left them, by sid (until each opens again). */
  #journals = new Map<string, JournalEntry[]>();
  /** The openings of this run's sessions not written yet, by sid (`Openings`). */
  readonly #unwritten = new Map<string, SessionOpening>();
  /** The outbox's view of them: it commits each with its session's first outputs. */
  readonly ledger: Openings = {
    pending: (sid) => this.#unwritten.get(sid),
    written: (sids) => {
      for (const sid of sids) this.#unwritten.delete(sid);
    },
  };
  /** The release this worker runs, as its sessions' openings see it (`planOpening`). */
  readonly #release: OpeningRelease;

  constructor(readonly host: OpenerHost<I, O>) {
    this.#release = openingRelease(host.worker);
  }

  /**
   * Reads what the last owner left: its sessions' checkpoints and openings, and the marks of those with no
   * checkpoint that are or will be migrated (their outputs are matched by place). Both read before either is kept:
   * no session is restored (a slot may free while the openings are read) before the partition's openings are known,
   * or it would open on this worker's version and caps.
   */
  async load(lease: Lease): Promise<void> {
    const log = this.host.worker.log;
    const snapshots = await log.snapshots(lease);
    // (The journal beside the openings: no round trip more for a takeover.)
    const [openings, journal] = await Promise.all([log.openings(lease), log.journal(lease)]);
    const checkpointed = new Set(snapshots.map((snapshot) => snapshot.sid));
    const placed = [...openings.values()]
      .filter((o) => !checkpointed.has(o.sid) && (o.replaces !== undefined || !this.#release.runsVersion(o.version)))
      .map((o) => o.sid);
    this.#marks = placed.length === 0 ? new Map<string, OutputMark>() : await log.marks(lease, placed);
    this.#openings = openings;
    this.#journals = new Map();
    for (const entry of journal) {
      const list = this.#journals.get(entry.sid);
      if (list === undefined) this.#journals.set(entry.sid, [entry]);
      else list.push(entry);
    }
    for (const snapshot of snapshots) this.snapshots.set(snapshot.key, snapshot);
  }

  /** Adds the versions of the sessions the last owner left that have not opened again yet. */
  versions(found: Set<string>): void {
    for (const o of this.#openings.values()) found.add(o.version);
  }

  /**
   * The key's session, ready to run: a key with a snapshot the last owner left gets its session back from it (its
   * sid, seq and state), else a new one of `sid`. `kept`: the state a new session starts from (`keyState`: its key's,
   * kept after its last session), or null. Undefined if the function's stream could not open (its slots are full),
   * or if the session runs a version no worker of this release runs (the partition is lost: another owner wrote it).
   */
  open(key: string, sid: string, grant: Grant | null, kept: KeptInput | null): Opened<I, O> | undefined {
    const { worker: w, starts } = this.host;
    const snapshot = this.snapshots.get(key);
    const mark = snapshot === undefined ? this.#marks.get(sid) : snapshotMark(snapshot);
    const inputs: OpeningInputs = { key, sid, snapshot, openings: this.#openings, kept, release: this.#release, mark };
    const plan = planOpening(inputs);
    if (plan.foreign) {
      this.host.failed(
        new FencedError(
          this.host.partition,
          `a session runs version ${JSON.stringify(plan.opening.version)}, which this worker does not run: another owner wrote it`,
        ),
      );
      return undefined;
    }
    const started = w.clock.now();
    const { restored, keep, keepVersion, broken, keptUnreadable, fromKey, migrated } = openingState(
      plan,
      inputs,
      w.codec,
      w.migrate,
      (timerKey) => timerKey === DEBOUNCE_TIMER_KEY,
      w.maxCheckpointBytes,
    );
    w.openingSlice.spent(w.clock.now() - started);
    sid = plan.sid;
    const { opening, stored } = plan;
    if (keptUnreadable !== undefined) w.report(keptUnreadable);
    // Its opening is written with its first commit, unless it broke: an opening that adopts a checkpoint stands for the
    // converted state committed with it (a later owner restores the checkpoint as the opening's version). One whose
    // `migrate` failed has none: the stored opening stays, and a later owner decides again (and fails it again).
    if (plan.write && broken === undefined) this.#unwritten.set(sid, opening);
    this.#openings.delete(sid);
    this.#marks.delete(sid);
    const fn = w.fnFor(opening.version);
    const limits = opening.limits;
    // (The debounce it opened with; an opening of an earlier release does not say: the worker's.)
    const debounce = opening.debounce === undefined ? w.debounce : opening.debounce;
    const journal = this.#journals.get(sid);
    this.#journals.delete(sid);
    const { rule, checkpoints } = sessionHooks(
      w,
      sid,
      limits,
      debounce,
      restored,
      broken === undefined ? snapshot : undefined,
      journal,
    );
    // (Not once the run is dropped: its sessions' outputs are not written either, and the next owner replays them.)
    (checkpoints.journal as Journal).queue = (entry) => {
      if (!this.host.flags.dropped) this.host.queueJournal(entry);
    };
    let stream: StreamKind<I, O>;
    // Traced (a tracer provider is registered): the session's span is a root span, linked to its events' producers.
    const scope = sessionScope();
    try {
      stream =
        scope === undefined
          ? fn[kOpen](undefined, false, checkpoints)
          : scope.open(() => fn[kOpen](undefined, false, checkpoints));
    } catch (error) {
      this.#unwritten.delete(sid);
      if (stored !== undefined) this.#openings.set(sid, stored);
      if ((error as { code?: unknown })?.code === 'ERR_VELO_STREAM_LIMIT') return undefined;
      throw error;
    }
    const traced = scope?.session !== undefined ? scope : undefined;
    const s = new Session<I, O>(key, sid, stream, rule, opening, {
      checkpoints,
      // (A checkpoint before its first input, its key's state converted, stands for the start: it keeps its first.)
      restored: snapshot !== undefined && snapshot.events > 0,
      seq: snapshot?.seq ?? 0,
      keep,
      keepVersion,
      writtenBefore: plan.writtenBefore,
      writtenOwn: plan.writtenOwn,
      run: this.host.sessionRun,
      scope: traced,
      // Its `limiter.session` permits: held until it ends (`PartitionRun.#over`).
      permit: grant,
      stepped: (w.permits?.step.length ?? 0) > 0 && checkpoints.attached,
    });
    w.opened?.(
      sid,
      opening.version,
      stored === undefined,
      plan.keyState === null ? null : { use: plan.keyState, kept: kept?.version ?? '' },
    );
    if (fromKey) w.counters.keyStateStarts++;
    // (Counted where this worker adopts it, its opening new: a later owner that finds the adoption committed reuses
    // the stored opening, which still names the version it replaced, and does not count it again.)
    if (plan.write && opening.replaces !== undefined && broken === undefined) w.counters.migrated++;
    // Adopted from its checkpoint, or its key's state converted: the converted state is its checkpoint from now on,
    // committed with its opening (in one commit, ahead of its outputs), so no later owner runs this version on the old
    // state, or converts it again.
    if (migrated !== undefined)
      this.host.queue(snapshot !== undefined ? migratedCheckpoint(snapshot, migrated) : startCheckpoint(sid, key, migrated));
    if (grant !== null) starts.opened(key);
    if (traced !== undefined) {
      const restoring = snapshot !== undefined;
      traceSession(traced, stream, this.host.partition, restoring || !this.host.flags.replayDone, restoring, grant);
    }
    if (snapshot !== undefined) {
      this.snapshots.delete(key);
      w.counters.restored++;
    }
    return { session: s, broken, written: snapshot?.written ?? 0 };
  }
}
