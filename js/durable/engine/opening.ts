// Opening a session, decided apart from carrying it out: which sid, version and caps it runs on, and what state it
// starts from (its checkpoint, migrated or not, its key's kept state, or none), as functions of the stored records
// and the release the worker runs. `planOpening` is pure; `openingState` runs the codec and `migrate` over the
// plan and returns what came of them. `SessionOpener` carries the result out (hooks, stream, counters, permits), and
// `PartitionRun` runs the session it makes (its slot, timers, commits).
import { CheckpointTooLargeError, decodeError, keyStateVersionError, migrateError } from '../../errors';
import { type Codec, decodeStored } from '../common/codec';
import type { OutputMark, SessionOpening, Snapshot, WrittenMark } from '../common/transport';
import type { SessionLimits } from '../rules/session-rules';
import type { Debounce } from '../../core/debounce';
import type { PartitionHost } from './partition-host';

/** The release a worker runs, as an opening sees it. */
export interface OpeningRelease {
  /** The version new sessions open on (`''`: none set). */
  readonly version: string;
  /** The caps a new session opens with. */
  readonly limits: SessionLimits;
  /** Whether it runs sessions of `version` (`''`: any worker does). */
  runsVersion(version: string): boolean;
  /** It adopts sessions of versions it does not run (`migrate`). */
  readonly migrates: boolean;
  /** The `debounce` a new session opens with (null: none). */
  readonly debounce: Debounce | null;
}

/** The release `worker` runs, as its sessions' openings see it. */
export function openingRelease(
  worker: Pick<
    PartitionHost<never, unknown>,
    'version' | 'fn' | 'maxSessionAge' | 'maxSessionEvents' | 'maxSessionTimers' | 'runsVersion' | 'migrate' | 'debounce'
  >,
): OpeningRelease {
  return {
    version: worker.version,
    // The caps a new session opens with (one that opened elsewhere keeps its own).
    limits: {
      idleTimeout: worker.fn.config.idleTimeout,
      maxSessionAge: worker.maxSessionAge,
      maxSessionEvents: worker.maxSessionEvents,
      maxSessionTimers: worker.maxSessionTimers,
    },
    runsVersion: (version) => worker.runsVersion(version),
    migrates: worker.migrate !== null,
    debounce: worker.debounce,
  };
}

/** A key's kept state (`keyState`), as read: what a new session of the key starts from. */
export interface KeptInput {
  readonly state: Buffer | string;
  readonly unreadable?: unknown;
  /** The version of the session whose end kept it (`''` or absent: none set). */
  readonly version?: string;
}

/** What a session's opening is decided from: the stored records of its key, and the worker's release. */
export interface OpeningInputs {
  readonly key: string;
  /** The sid a new session would get (`<key>@<first entry id>`). */
  readonly sid: string;
  /** The checkpoint the last owner left for the key's live session, if any: the session is that one, restored. */
  readonly snapshot: Snapshot | undefined;
  /** The partition's stored openings (versions), by sid, as read before any of its sessions is restored. */
  readonly openings: ReadonlyMap<string, SessionOpening>;
  /** The key's kept state (`keyState`) for a new session, or null. */
  readonly kept: KeptInput | null;
  /**
   * The mark of the session's sid (outputs written, and the place of the last): the snapshot's, else as read with
   * the partition's openings for a session that is or was migrated; undefined if unknown or none.
   */
  readonly mark?: OutputMark;
  readonly release: OpeningRelease;
}

/** How a session opens. */
export interface OpeningPlan {
  readonly sid: string;
  /** What it runs on: its version and caps. */
  readonly opening: SessionOpening;
  /** The opening stored for it before (an earlier owner wrote it), if any. */
  readonly stored: SessionOpening | undefined;
  /** Its opening is not the stored one (new, or migrated): written with its first commit. */
  readonly write: boolean;
  /** Its state: from its checkpoint, from its key's kept state, or none. */
  readonly from: 'checkpoint' | 'key' | 'none';
  /** Adopted from another version (`migrate`): that version; null otherwise. */
  readonly migrateFrom: string | null;
  /**
   * A session migrated now or before, whose earlier owner wrote outputs past where it starts from (its checkpoint,
   * or its first event): those, matched by place, are not written again; null otherwise (matched by seq).
   */
  readonly writtenBefore: WrittenMark | null;
  /** The last of those is this version's own answer (`ownPast`), which its replay makes again. */
  readonly writtenOwn: boolean;
  /**
   * How it starts from its key's kept state, if it has one (null: none): as it is, converted by `migrate` (kept by
   * a version the release does not run), or not at all (`'refused'`: kept by a version the release neither runs nor
   * adopts: a newer one, after a rollback or beside a release that does not carry the old). A session an earlier owner
   * wrote for starts as its stored opening says.
   */
  readonly keyState: 'as-is' | 'migrate' | 'refused' | null;
  /**
   * Its stored version is one the release neither runs nor adopts: the lease script refuses such a worker the
   * partition, so this one has lost it (a stale owner reading what its successor wrote). Nothing opens.
   */
  readonly foreign: boolean;
}

/**
 * How a session opens: a key with a checkpoint gets its session back (its sid), else a new one. It runs on what it
 * opened with if an earlier owner stored that, else on the release's version and caps. A stored version the release
 * does not run is there only for a worker that migrates (the lease was refused otherwise): the session goes on, on
 * the release's version with the caps it opened with, adopted from its checkpoint by `migrate` if it has one.
 */
export function planOpening(i: OpeningInputs): OpeningPlan {
  const sid = i.snapshot?.sid ?? i.sid;
  const stored = i.openings.get(sid);
  const from = i.snapshot !== undefined ? 'checkpoint' : i.kept !== null ? 'key' : 'none';
  // Adopted now (`migrate`): a session replayed from its first event started from its key's state, which is converted
  // as a new session's would be, unless it started without it.
  const adopted = stored !== undefined && !i.release.runsVersion(stored.version) && i.release.migrates;
  const keyState =
    from !== 'key'
      ? null
      : stored === undefined || (adopted && stored.keyState !== 'refused')
        ? keptUse(i)
        : storedKeyState(stored, i.release);
  const recorded = keyState === 'migrate' ? 'migrated' : keyState === 'refused' ? 'refused' : undefined;
  const plan = (opening: SessionOpening, write: boolean, migrateFrom: string | null, foreign = false): OpeningPlan => ({
    sid,
    opening,
    stored,
    write,
    from,
    migrateFrom,
    foreign,
    writtenBefore: opening.replaces === undefined ? null : opening === stored ? adoptedPast(stored, i) : writtenPast(i),
    writtenOwn: opening === stored && ownPast(stored, i),
    keyState,
  });
  const withKeyState = (o: SessionOpening): SessionOpening => (recorded === undefined ? o : { ...o, keyState: recorded });
  if (stored === undefined)
    return plan(
      withKeyState({ sid, version: i.release.version, limits: i.release.limits, debounce: i.release.debounce }),
      true,
      null,
    );
  if (i.release.runsVersion(stored.version)) return plan(stored, false, null);
  if (!i.release.migrates) return plan(stored, false, null, true);
  const past = writtenPast(i);
  const opening = withKeyState({
    sid,
    version: i.release.version,
    limits: stored.limits,
    replaces: stored.version,
    ...(past === null ? {} : { after: [past.written, past.at[0]] as const }),
    ...(stored.debounce === undefined ? {} : { debounce: stored.debounce }),
  });
  return plan(opening, true, from === 'checkpoint' ? stored.version : null);
}

/** How a new session starts from its key's kept state: as it is if the release runs the version that kept it. */
function keptUse(i: OpeningInputs): 'as-is' | 'migrate' | 'refused' {
  const version = i.kept?.version ?? '';
  if (version === '' || i.release.runsVersion(version)) return 'as-is';
  return i.release.migrates ? 'migrate' : 'refused';
}

/**
 * How a session an earlier owner wrote for started from its key's state, as its stored opening says. One converted by
 * `migrate` has that state as its first checkpoint, unless a wake-up stored its opening before: converted again only
 * by a release of its version (another's `migrate` makes another shape), else started without.
 */
function storedKeyState(stored: SessionOpening, release: OpeningRelease): 'as-is' | 'migrate' | 'refused' {
  if (stored.keyState === 'refused') return 'refused';
  if (stored.keyState !== 'migrated') return 'as-is';
  return release.migrates && release.version === stored.version ? 'migrate' : 'refused';
}

/** The outputs written past where a session starts from (its checkpoint's seq, else 0), when their place is known. */
function writtenPast(i: OpeningInputs): WrittenMark | null {
  const mark = i.mark;
  if (mark?.at === undefined || mark.written <= (i.snapshot?.seq ?? 0)) return null;
  return mark.digest === undefined
    ? { written: mark.written, at: mark.at }
    : { written: mark.written, at: mark.at, digest: mark.digest };
}

/**
 * The outputs past where a session an earlier owner adopted (`stored`: its opening replaces the old version) starts
 * from, matched by place: none if its adoption found none of the old version's past its start (`after`), or it starts
 * past them. Then every output past its start is this version's own, matched by seq as any replay's.
 */
function adoptedPast(stored: SessionOpening, i: OpeningInputs): WrittenMark | null {
  const after = stored.after;
  if (after === undefined || after[0] <= (i.snapshot?.seq ?? 0)) return null;
  return writtenPast(i);
}

/**
 * Whether the last of those (`adoptedPast`) is of an input past the one the old version was answering at the
 * adoption: an answer of this version's own, which its replay makes again (matched by its digest: session-writes.ts).
 */
function ownPast(stored: SessionOpening, i: OpeningInputs): boolean {
  const after = stored.after;
  const at = i.mark?.at;
  return stored.replaces !== undefined && after !== undefined && at !== undefined && at[0] > after[1];
}

/** What came of a plan's state: what the handler starts from, what its end keeps for its key, and failures. */
export interface OpeningState {
  /** The state the handler starts from (`ctx.restored`), decoded. */
  readonly restored: unknown;
  /** What its end keeps for its key (`keyState`) unless it checkpoints: the state it starts from, encoded. */
  readonly keep: Buffer | string | undefined;
  /** The version whose shape `keep` has: the one that kept it (a key's state taken as it is), else the session's. */
  readonly keepVersion: string;
  /** Why the session cannot start as planned (its checkpoint unreadable, `migrate` failed): it fails at once. */
  readonly broken: unknown;
  /** The key's kept state could not be decoded: the session starts without it (reported, not its failure). */
  readonly keptUnreadable: unknown;
  /** It starts from its key's kept state. */
  readonly fromKey: boolean;
  /**
   * Adopted from its checkpoint by `migrate`, or its key's state converted by it: the converted state, encoded, which
   * is committed as its checkpoint with the commit that writes its opening (a later owner must never see the new
   * version over the old state, nor convert it again with another release's `migrate`).
   */
  readonly migrated: Buffer | string | undefined;
}

/**
 * The state a plan starts from, through the codec (and `migrate`, when it adopts a session): every failure is
 * returned, none thrown. `skipTimer(key)`: timers whose payloads are not the handler's (debounce's own).
 */
export function openingState(
  plan: OpeningPlan,
  i: OpeningInputs,
  codec: Codec<unknown>,
  migrate: ((state: unknown, fromVersion: string) => unknown) | null,
  skipTimer: (key: string | undefined) => boolean,
  maxBytes = Infinity,
): OpeningState {
  const snapshot = i.snapshot;
  let restored: unknown;
  let broken: unknown;
  let keep: Buffer | string | undefined;
  let keptUnreadable: unknown;
  let fromKey = false;
  let keyMigrated: Buffer | string | undefined;
  if (snapshot !== undefined) {
    try {
      if (snapshot.unreadable !== undefined) throw snapshot.unreadable as Error;
      restored = decodeStored(codec, snapshot.state);
      // Its timers' payloads are part of it: one that cannot be decoded makes the whole unreadable.
      for (const [, , payload, key] of snapshot.pending ?? []) if (!skipTimer(key)) decodeStored(codec, payload);
      keep = snapshot.state;
    } catch (error) {
      broken = decodeError(`The codec could not decode the checkpoint of session ${JSON.stringify(plan.sid)}`, error);
    }
  } else if (i.kept !== null && plan.keyState === 'refused') {
    const version = i.kept.version ?? '';
    keptUnreadable = keyStateVersionError(
      `The state kept for key ${JSON.stringify(i.key)} was kept by version ${JSON.stringify(version)}, which this worker neither runs nor adopts (migrate): session ${JSON.stringify(plan.sid)} starts without it`,
    );
  } else if (i.kept !== null) {
    try {
      if (i.kept.unreadable !== undefined) throw i.kept.unreadable as Error;
      restored = decodeStored(codec, i.kept.state);
      if (plan.keyState === 'migrate') {
        const from = i.kept.version ?? '';
        const adopt = `migrate() could not convert the state kept for key ${JSON.stringify(i.key)} by version ${JSON.stringify(from)}`;
        const converted = convert(migrate as NonNullable<typeof migrate>, restored, from, adopt);
        if ('error' in converted) throw converted.error;
        try {
          keep = withinLimit(codec.encode(converted.state), plan.sid, maxBytes);
          restored = decodeStored(codec, keep);
        } catch (error) {
          // (What migrate returned: its error, as for an adopted session's.)
          throw error instanceof CheckpointTooLargeError
            ? error
            : migrateError(`${adopt}: the codec could not carry the state it returned`, error);
        }
        keyMigrated = keep;
      } else keep = i.kept.state;
      fromKey = true;
    } catch (error) {
      restored = undefined;
      keep = undefined;
      keyMigrated = undefined;
      const code = (error as { code?: unknown })?.code;
      keptUnreadable =
        code === 'ERR_VELO_MIGRATE' || code === 'ERR_VELO_CHECKPOINT_TOO_LARGE'
          ? error
          : decodeError(
              `The codec could not decode the state kept for key ${JSON.stringify(i.key)}: session ${JSON.stringify(plan.sid)} starts without it`,
              error,
            );
    }
  }
  let migrated = keyMigrated;
  if (plan.migrateFrom !== null && broken === undefined) {
    const from = plan.migrateFrom;
    const adopt = `migrate() could not adopt session ${JSON.stringify(plan.sid)} from version ${JSON.stringify(from)}`;
    const converted = convert(migrate as NonNullable<typeof migrate>, restored, from, adopt);
    if ('error' in converted) broken = converted.error;
    else {
      try {
        // The handler starts from what a later owner would decode: the state through the codec.
        migrated = withinLimit(codec.encode(converted.state), plan.sid, maxBytes);
        restored = decodeStored(codec, migrated);
        keep = migrated;
      } catch (error) {
        broken =
          error instanceof CheckpointTooLargeError
            ? error
            : migrateError(`${adopt}: the codec could not carry the state it returned`, error);
        migrated = undefined;
        restored = undefined;
      }
    }
  }
  // A key's state taken as it is keeps the shape of the version that kept it; so does a checkpoint `migrate` could
  // not convert (the session fails at its opening: its key keeps the old version's state, for the next to convert).
  const keepVersion =
    fromKey && plan.keyState === 'as-is'
      ? (i.kept?.version ?? '')
      : plan.migrateFrom !== null && migrated === undefined && keep !== undefined
        ? plan.migrateFrom
        : plan.opening.version;
  return { restored, keep, keepVersion, broken, keptUnreadable, fromKey, migrated };
}

/** A state `migrate` returned, encoded, if it fits `maxCheckpointBytes` (it is committed as a checkpoint). */
function withinLimit(bytes: Buffer | string, sid: string, limit: number): Buffer | string {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
  if (size > limit) throw new CheckpointTooLargeError(sid, size, limit);
  return bytes;
}

/** `migrate(state, from)`, synchronous and readable, or why not. */
function convert(
  migrate: (state: unknown, fromVersion: string) => unknown,
  state: unknown,
  from: string,
  adopt: string,
): { state: unknown } | { error: unknown } {
  let result: unknown;
  try {
    result = migrate(state, from);
  } catch (error) {
    return { error: migrateError(`${adopt}: it threw`, error) };
  }
  let thenable: boolean;
  try {
    thenable = typeof (result as { then?: unknown } | null)?.then === 'function';
  } catch (error) {
    // (A `then` getter that throws, a revoked Proxy: not a state the codec could carry either.)
    return { error: migrateError(`${adopt}: the state it returned could not be read`, error) };
  }
  if (thenable) {
    // (Its outcome is not waited for: a rejection of it is not an unhandled one.)
    Promise.resolve(result).catch(() => {});
    return {
      error: migrateError(`${adopt}: it returned a promise (migrate must return the state itself, synchronously)`, undefined),
    };
  }
  return { state: result };
}

/** The commit item of a session whose key's state `migrate` converted: a checkpoint before its first input. */
export function startCheckpoint(sid: string, key: string, state: Buffer | string): { acks: string[]; checkpoint: Snapshot } {
  return { acks: [], checkpoint: { sid, key, seq: 0, lastTime: 0, events: 0, state } };
}

/** The commit item of a session adopted by `migrate`: its checkpoint as it was, with the converted state. */
export function migratedCheckpoint(snapshot: Snapshot, state: Buffer | string): { acks: string[]; checkpoint: Snapshot } {
  return {
    acks: [],
    checkpoint: {
      sid: snapshot.sid,
      key: snapshot.key,
      seq: snapshot.seq,
      lastTime: snapshot.lastTime,
      events: snapshot.events,
      state,
      ...(snapshot.timers === undefined ? {} : { timers: snapshot.timers }),
      ...(snapshot.pending === undefined ? {} : { pending: snapshot.pending }),
      ...(snapshot.lastInput === undefined ? {} : { lastInput: snapshot.lastInput }),
      ...(snapshot.calls === undefined ? {} : { calls: snapshot.calls }),
    },
  };
}
