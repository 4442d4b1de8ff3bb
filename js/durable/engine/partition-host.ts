// What a partition's run needs of its worker (`PartitionHost`), and the worker's counters it adds to.
import type { Debounce } from '../../core/debounce';
import type { Openable } from '../../core/protocol';
import type { StreamFn } from '../../types';
import type { Clock } from '../common/clock';
import type { Codec } from '../common/codec';
import type { LocalDelivery } from './local-delivery';
import type { OpeningSlice } from './opening-slice';
import type { PartitionLog } from '../common/transport';
import type { WorkerPermits } from './session-permits';
import type { SlotReport } from './slot-watch';
import type { StartGate } from './start-gate';

/** A partition's run's state that its parts read (the run alone writes it). */
export interface RunFlags {
  /** The pump must stop reading. */
  stopping: boolean;
  /** This worker stops serving the partition: sessions make no more outputs, and none is acked. */
  dropped: boolean;
  /** The replay of the last owner's pending entries is done (no tick before: the log decides there). */
  replayDone: boolean;
  /** Redis' time of the latest entry read from the partition, ms: how far the log's clock has gone. */
  logTime: number;
  /**
   * Entries may wait past those dispatched: a read's entries are being dispatched, or the last read came back full.
   * False once a read came back short and its entries were dispatched (the pump had caught up with the log then).
   */
  behind: boolean;
}

/** A partition's run as its worker sees it when the run calls back (`lose`, `idle`). */
export interface RunHandle {
  readonly partition: number;
  readonly stopping: boolean;
}

/** The worker's settings, resolved once and fixed for its life: what its partitions' runs read and never write. */
export interface PartitionSettings<I, O> {
  readonly fn: StreamFn<I, O> & Openable<I, O>;
  /** The version new sessions open on (`''`: none set). */
  readonly version: string;
  /** `migrate`: adopts a session of a version it does not run from its checkpoint, or null. */
  readonly migrate: ((state: unknown, fromVersion: string) => unknown) | null;
  readonly log: PartitionLog;
  /** Time and timers (production: `realClock`; a simulation: a virtual clock). */
  readonly clock: Clock;
  readonly ttl: number;
  readonly readCount: number;
  readonly codec: Codec<unknown>;
  readonly maxEventBytes: number;
  readonly maxSessionEvents: number;
  readonly maxSessionAge: number;
  /** Largest encoded checkpoint state (with its pending timers), bytes. */
  readonly maxCheckpointBytes: number;
  /** Largest journal a session keeps, bytes (`maxJournalBytes`). */
  readonly maxJournalBytes: number;
  /** Most timers of a session not taken yet (`session-rules.ts`). */
  readonly maxSessionTimers: number;
  readonly checkReplay: boolean;
  /** Local delivery (`onOutput`), or null. */
  readonly delivery: LocalDelivery<O> | null;
  /** The limiters its sessions and steps take permits of (`limiter`), or null. */
  readonly permits: WorkerPermits | null;
  /** Debounce per key (`debounce`), or null. */
  readonly debounce: Debounce | null;
  /** Per-key state beyond a session (`keyState`), or null. */
  readonly keyState: { readonly retention: number } | null;
}

/**
 * What a partition's run uses of its worker: the settings, the worker's counters and shared state (each field with
 * one writer, named), and the few calls a run makes back.
 */
export interface PartitionHost<I, O> extends PartitionSettings<I, O> {
  /** The function a session of `version` runs: its own if this worker runs it, else (`''`, or none) `fn`. */
  fnFor(version: string): StreamFn<I, O> & Openable<I, O>;
  /** Whether it runs sessions of `version` (`''`: any worker does). */
  runsVersion(version: string): boolean;
  /** Counted by the runs and their parts; read by `stats()` and the metrics. */
  readonly counters: WorkerCounters;
  /** Live sessions of the worker, all partitions: written by the runs (`PartitionRun`) alone, at a session's open and finish. */
  live: number;
  /** Redis' clock less this machine's, ms (ticks are set from it): written by `OwnerWrites` alone. */
  clockOffset: number;
  /** This partition's share of `maxBufferedEvents`. */
  share(): number;
  /** Keys waiting for a session slot, all partitions (`stats().slots`); the simulator has none. */
  readonly slots?: SlotReport;
  /** Its first partitions served first (`start-gate.ts`): runs enter before their first statement. */
  readonly startGate: StartGate;
  /** Time its openings (all partitions) took since the event loop's last turn (`opening.ts`): written by the openers. */
  readonly openingSlice: OpeningSlice;
  report(error: unknown): void;
  /** After a failed call, before its retry: RETRY_MS, longer while the backend cannot be reached (`Outage`). */
  retryWait(): Promise<void>;
  /** The partition was lost (fenced, or its lease ran out). */
  lose(run: RunHandle): void;
  /** Resolves when the partition's log may have more after `tail`. */
  idle(run: RunHandle, tail: string): Promise<void>;
  wakeIdle(partition: number): void;
  /** A session of this worker ended: held entries of every partition may now get a slot. */
  notifySessionEnded(): void;
  /**
   * A handler took an input or yielded an output. The worker has none; the simulator counts its steps here, and
   * past its bound stops the process (the run is then `dropped`): the only way to stop a handler that loops at one
   * time in promise jobs alone.
   */
  step?(): void;
  /**
   * A session opened on `version`, `fresh`: with nothing stored for it (its opening decided anew, by this worker's
   * release); `keyState`: how it starts from its key's kept state (of `kept` version), if it has one. The worker has
   * none; the simulator records them.
   */
  opened?(
    sid: string,
    version: string,
    fresh: boolean,
    keyState: { readonly use: 'as-is' | 'migrate' | 'refused'; readonly kept: string } | null,
  ): void;
}

/** The worker's counters (`WorkerStats` reads them). */
export interface WorkerCounters {
  acquired: number;
  lost: number;
  fenced: number;
  released: number;
  trimmed: number;
  trimmedOutputs: number;
  replayed: number;
  replayedSessions: number;
  outputs: number;
  errors: number;
  capped: number;
  /** Ticks written (`PartitionRun.#tick`). */
  ticks: number;
  handedOn: number;
  diverged: number;
  /** Checkpoints committed (the latest of a session per commit). */
  checkpoints: number;
  /** Sessions started from a checkpoint. */
  restored: number;
  /** Timers' wake-ups written into the input (`ctx.wakeAt`). */
  wakeups: number;
  /** Events `debounce` dropped (`debounce-input.ts`). */
  debounced: number;
  /** `keyState`: states kept for keys by the commits that ended their sessions. */
  keptStates: number;
  /** `keyState`: sessions that started from their key's kept state. */
  keyStateStarts: number;
  /** Versions: partitions this worker did not take, as a live session there runs a version it does not run. */
  refusedVersions: number;
  /** Versions: sessions this worker adopted from another version's checkpoint (`migrate`). */
  migrated: number;
}

/** A worker's counters, all 0. */
export function newCounters(): WorkerCounters {
  return {
    acquired: 0,
    lost: 0,
    fenced: 0,
    released: 0,
    trimmed: 0,
    trimmedOutputs: 0,
    replayed: 0,
    replayedSessions: 0,
    outputs: 0,
    errors: 0,
    capped: 0,
    ticks: 0,
    handedOn: 0,
    diverged: 0,
    checkpoints: 0,
    restored: 0,
    wakeups: 0,
    debounced: 0,
    keptStates: 0,
    keyStateStarts: 0,
    refusedVersions: 0,
    migrated: 0,
  };
}
