// The distributed tier, on every backend: events, timers and checkpoints over their bounds, the codec, the
// journal, versions and migrate, fencing, session limits, replays, resume cursors, and `onError`.

import { HTTP_ANSWERS } from './answers';
import { coded, describe } from './make';

/** An event or output larger than the configured limit (`maxEventBytes`), refused before it reaches Redis. */
export class EventTooLargeError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_EVENT_TOO_LARGE' as const;
  /** The encoded size, bytes. */
  readonly size: number;
  /** `maxEventBytes`. */
  readonly limit: number;
  /** `atLeast`: `size` is the fewest bytes it takes (found before it was all encoded). */
  constructor(what: string, size: number, limit: number, atLeast = false) {
    super(
      `The ${what} is ${atLeast ? 'at least ' : ''}${size} bytes encoded, more than the limit of ${limit} bytes (maxEventBytes)`,
    );
    this.name = 'EventTooLargeError';
    this.size = size;
    this.limit = limit;
  }
}

/**
 * Thrown by a `sessionWorker` session's `ctx.wakeAt()` when the session has `maxSessionTimers` timers that have not
 * fired: no timer is made. The same on every replay (the handler is deterministic over its inputs).
 */
export class TooManyTimersError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_TOO_MANY_TIMERS' as const;
  /** `maxSessionTimers`. */
  readonly limit: number;
  constructor(sid: string, limit: number) {
    super(
      `Session ${JSON.stringify(sid)} has ${limit} timers not taken by its handler, the limit (maxSessionTimers): ctx.wakeAt() made no timer`,
    );
    this.name = 'TooManyTimersError';
    this.limit = limit;
  }
}

/**
 * Thrown by a `sessionWorker` session's `ctx.wakeAt(time)` when `time` is after the session's age end (its first
 * entry's time plus `maxSessionAge`): the timer could never fire, so none is made. The age end is fixed at the
 * session's start, so the call throws the same on every replay.
 */
export class TimerPastAgeError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_TIMER_PAST_AGE' as const;
  /** `maxSessionAge`. */
  readonly limit: number;
  /** The timer's time asked for (ms, rounded up). */
  readonly time: number;
  constructor(sid: string, start: number, limit: number, time: number) {
    super(
      `Session ${JSON.stringify(sid)} began at ${start} and ends at ${start + limit + 1} by maxSessionAge (${limit} ms): ctx.wakeAt(${time}) would never fire, and made no timer`,
    );
    this.name = 'TimerPastAgeError';
    this.limit = limit;
    this.time = time;
  }
}

/** `ctx.checkpoint()`, `ctx.wakeAt()`, `ctx.cancelTimer()`, `ctx.run()` or `ctx.stream()` in a stage of a pipe that `sessionWorker` runs. */
export function pipeSessionCallError(call: string): TypeError & { code: 'ERR_VELO_PIPE_SESSION_CALL' } {
  return coded(
    new TypeError(
      `ctx.${call}() is not available in a stage of a pipe run by a session worker (sessionWorker): a pipe's stages have no checkpoint, durable timer or journal (run the stateful step as a function of its own)`,
    ),
    'ERR_VELO_PIPE_SESSION_CALL',
  );
}

/**
 * Thrown by a `sessionWorker` session's `ctx.checkpoint(state)` when the state's encoding is over
 * `maxCheckpointBytes`. The session fails at that point (this error is its last output, after those yielded
 * before the call), and nothing of the checkpoint is written.
 */
export class CheckpointTooLargeError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_CHECKPOINT_TOO_LARGE' as const;
  /** The encoded size, bytes. */
  readonly size: number;
  /** `maxCheckpointBytes`. */
  readonly limit: number;
  constructor(sid: string, size: number, limit: number) {
    super(
      `The checkpoint of session ${JSON.stringify(sid)} is ${size} bytes encoded, more than the limit of ${limit} bytes (maxCheckpointBytes): the session fails, nothing of it was written`,
    );
    this.name = 'CheckpointTooLargeError';
    this.size = size;
    this.limit = limit;
  }
}

/** The codec threw on an event or output (`what`), or gave neither a Buffer nor a string. */
export function encodeError(message: string, cause?: unknown): TypeError & { code: 'ERR_VELO_ENCODE' } {
  return coded(cause === undefined ? new TypeError(message) : new TypeError(message, { cause }), 'ERR_VELO_ENCODE');
}

/** The codec threw on an input entry or a stored output. */
export function decodeError(message: string, cause: unknown): TypeError & { code: 'ERR_VELO_DECODE' } {
  return coded(new TypeError(message, { cause }), 'ERR_VELO_DECODE');
}

/**
 * A replay asked a journaled call of another name than the one recorded at its place (`ERR_VELO_JOURNAL_DIVERGED`):
 * thrown into the handler at `ctx.run` or `ctx.stream`, nothing called.
 */
export class JournalDivergedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_JOURNAL_DIVERGED' as const;
  /** The call's place in the session's journal (1 for its first journaled call). */
  readonly call: number;
  /** The name recorded at that place. */
  readonly recorded: string;
  /** The name the replay asked there. */
  readonly asked: string;
  constructor(sid: string, call: number, recorded: string, asked: string) {
    super(
      `Journal diverged: session ${JSON.stringify(sid)}'s journaled call ${call} was recorded as ${JSON.stringify(recorded)}, and its replay asked ${JSON.stringify(asked)}. Journaled calls must come in the same order on every run over the same inputs.`,
    );
    this.name = 'JournalDivergedError';
    this.call = call;
    this.recorded = recorded;
    this.asked = asked;
  }
}

/**
 * A migrated session's answer in flight is written whole after the old version's partial one, because the new
 * version's outputs do not line up with the old version's journaled records (`ERR_VELO_ANSWER_RESTARTED`): reported
 * to the worker's `onError`, never thrown.
 */
export class AnswerRestartedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_ANSWER_RESTARTED' as const;
  /** The session: `<key>@<id of its first input entry>`. */
  readonly sid: string;
  /** `reason`: where the new version's outputs left the old version's (`its new version yielded ...`). */
  constructor(sid: string, reason: string) {
    super(
      `Answer restarted: session ${JSON.stringify(sid)} was adopted by migrate mid-answer, and ${reason}. Its outputs are not the old answer continued: its whole answer is written after the old version's partial one.`,
    );
    this.name = 'AnswerRestartedError';
    this.sid = sid;
  }
}

/** A session's journal would pass `maxJournalBytes` (`ERR_VELO_JOURNAL_TOO_LARGE`): thrown at the call, nothing recorded. */
export class JournalTooLargeError extends RangeError {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_JOURNAL_TOO_LARGE' as const;
  /** The journal's size with this record, bytes. */
  readonly size: number;
  /** `maxJournalBytes`. */
  readonly limit: number;
  /**
   * `record`: the record that would pass the limit, as the journal names it (`result of ctx.run("x") (journaled call
   * 2 of session "k@1-0", key "k@1-0/2")`, `chunk 3 of ctx.stream(...)`); without it, only session `sid` is named.
   */
  constructor(sid: string, size: number, limit: number, record?: string) {
    const what =
      record === undefined
        ? `The journal of session ${JSON.stringify(sid)} would be`
        : `The ${record} would make the journal of its session`;
    super(
      `${what} ${size} bytes, more than the limit of ${limit} bytes (maxJournalBytes): checkpoint more often, or raise the limit`,
    );
    this.name = 'JournalTooLargeError';
    this.size = size;
    this.limit = limit;
  }
}

/** A free partition refused to a worker for the versions of its live sessions (`ERR_VELO_VERSION_REFUSED`). */
export function versionRefusedError(
  partitions: readonly number[],
  refused: readonly string[],
  runs: readonly string[],
): Error & { code: 'ERR_VELO_VERSION_REFUSED'; partitions: readonly number[]; refused: readonly string[] } {
  const names = (list: readonly string[]) => list.map((v) => (v === '' ? '(none)' : JSON.stringify(v))).join(', ');
  const error = coded(
    new Error(
      `${partitions.length === 1 ? `Partition ${partitions[0]} waits` : `Partitions ${partitions.join(', ')} wait`} for a worker of version ${names(refused)}: live sessions there run it, and this worker runs ${names(runs)} without migrate. Keep a worker of that version running, or carry its handler in \`versions\` (or \`migrate\`).`,
    ),
    'ERR_VELO_VERSION_REFUSED',
  );
  return Object.assign(error, { partitions, refused });
}

/** Keys wait for a worker's session slots (`ERR_VELO_SESSION_SLOTS`): a warning, nothing failed. */
export function slotsFullError(
  slots: number,
  waitingKeys: number,
): Error & { code: 'ERR_VELO_SESSION_SLOTS'; slots: number; waitingKeys: number } {
  const error = coded(
    new Error(
      `More keys are live than this worker has session slots (maxConcurrent ${slots}): keys that need a new session wait for sessions to end, so their events are late (${waitingKeys} waiting when reported; more may follow: stats().slots.waitingKeys counts them now). Raise maxConcurrent, shorten idleTimeout, or add workers. (Reported when keys begin to wait, at most once a minute.)`,
    ),
    'ERR_VELO_SESSION_SLOTS',
  );
  return Object.assign(error, { slots, waitingKeys });
}

/** A key state kept by a version the worker neither runs nor adopts (`ERR_VELO_KEY_STATE_VERSION`). */
export function keyStateVersionError(message: string): Error & { code: 'ERR_VELO_KEY_STATE_VERSION' } {
  return coded(new Error(message), 'ERR_VELO_KEY_STATE_VERSION');
}

/** `drained()` of a version nothing runs or holds (`ERR_VELO_VERSION_UNKNOWN`). */
export function versionUnknownError(message: string): Error & { code: 'ERR_VELO_VERSION_UNKNOWN' } {
  return coded(new Error(message), 'ERR_VELO_VERSION_UNKNOWN');
}

/** `migrate` failed for a session (`ERR_VELO_MIGRATE`): the cause is what it threw. */
export function migrateError(message: string, cause: unknown): TypeError & { code: 'ERR_VELO_MIGRATE' } {
  return coded(new TypeError(message, { cause }), 'ERR_VELO_MIGRATE');
}

/** A write or read by a worker whose lease on the partition is gone: another worker owns it now. */
export class FencedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_FENCED' as const;
  /** The partition whose lease is gone. */
  readonly partition: number;
  constructor(partition: number, message: string) {
    super(`Partition ${partition}: ${message}`);
    this.name = 'FencedError';
    this.partition = partition;
  }
}

/**
 * Rejected by `send()` / `sendMany()` of a producer with `maxLag` while its partition's consumer-group lag
 * (entries not yet read by the partition's worker) has reached the bound. Nothing of the call was written.
 */
export class LagLimitError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_LAG_LIMIT' as const;
  /** The partition that is behind. */
  readonly partition: number;
  /** Its lag as the producer estimated it: the last measure plus what this producer appended since. */
  readonly lag: number;
  /** The producer's `maxLag`. */
  readonly limit: number;
  constructor(partition: number, lag: number, limit: number) {
    super(
      `Partition ${partition} is ${lag} entries behind (maxLag ${limit}): its worker is slow, stalled or absent. Nothing was written; retry later.`,
    );
    this.name = 'LagLimitError';
    this.partition = partition;
    this.lag = lag;
    this.limit = limit;
  }
}

/** Which cap ended a session: `maxSessionEvents` or `maxSessionAge`. */
export type SessionLimitCode = 'ERR_VELO_SESSION_EVENTS' | 'ERR_VELO_SESSION_AGE';

/**
 * The last output of a worker session that reached `maxSessionEvents` or `maxSessionAge` (as `sessionOutputs`
 * delivers it: `{ error: { name: 'SessionLimitError', message, code } }`). The key's next event opens a new session.
 */
export class SessionLimitError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code: SessionLimitCode;
  /** The cap reached: `maxSessionEvents`, or `maxSessionAge` in ms. */
  readonly limit: number;
  constructor(code: SessionLimitCode, limit: number, message: string) {
    super(message);
    this.name = 'SessionLimitError';
    this.code = code;
    this.limit = limit;
  }
}

/**
 * Where a Redis session ended (`ReplayDivergedError.ends`): why its input ended (`idle`, `age`, `events`: the
 * session rule; `decode`: an input its codec could not decode; `throw`: its handler threw, or an output or
 * checkpoint could not be encoded; `return`: its handler returned) and the last input it took (an entry id,
 * `t<n>` for its n-th timer; `''` only for a session restored from a snapshot of an earlier version that took
 * nothing after it).
 */
export interface SessionEnd {
  /** Why its input ended. */
  readonly reason: 'idle' | 'age' | 'events' | 'decode' | 'throw' | 'return';
  /** The last input it took: an entry id, `t<n>` for its n-th timer. */
  readonly last: string;
}

/** An output as a local consumer or a divergence report sees it: a value, or a handler's failure. */
export type OutputContent<O = unknown> =
  | {
      /** The output, decoded. */
      value: O;
    }
  | {
      /** A handler failure as stored. */
      error: {
        /** The error's `name`. */
        name: string;
        /** The error's `message`. */
        message: string;
        /** The error's `code`, when it had a string one. */
        code?: string;
      };
    };

/**
 * Reported to `onError` by a worker with `checkReplay` when a replayed session does not make the outputs its
 * earlier run committed: `kind: 'output'`, output `seq` differs from the committed one (both are given,
 * decoded); `kind: 'count'`, the session ended with fewer outputs than were committed (`seq` is the first one
 * it did not make again); `kind: 'boundary'`, a session that had ended was ended again after another last input
 * or for another reason (both ends in `ends`). What was committed first stays, for every reader: the check
 * changes nothing in Redis.
 */
export class ReplayDivergedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_REPLAY_DIVERGED' as const;
  /** `'output'`: an output differs; `'count'`: the session ended with fewer outputs; `'boundary'`: it ended elsewhere. */
  readonly kind: 'output' | 'count' | 'boundary';
  /** The session's partition. */
  readonly partition: number;
  /** The session's key. */
  readonly key: string;
  /** The session: `<key>@<id of its first input entry>`. */
  readonly sid: string;
  /** The output's seq (for `'count'`, the first one the replay did not make; for `'boundary'`, its last output, 0: none). */
  readonly seq: number;
  /** The committed output (undefined if its entry is gone from the output stream, or for `kind: 'count'`). */
  readonly committed: OutputContent | undefined;
  /** What the replay made instead (undefined for `kind: 'count'`). */
  readonly replayed: OutputContent | undefined;
  /** For `kind: 'boundary'`: where the session ended first (kept) and where the replay ended it. */
  readonly ends:
    | {
        /** Where it ended first: what stays. */
        readonly committed: SessionEnd;
        /** Where the replay ended it. */
        readonly replayed: SessionEnd;
      }
    | undefined;
  constructor(
    kind: 'output' | 'count' | 'boundary',
    where: { partition: number; key: string; sid: string; seq: number },
    message: string,
    committed?: OutputContent,
    replayed?: OutputContent,
    ends?: { committed: SessionEnd; replayed: SessionEnd },
  ) {
    super(message);
    this.name = 'ReplayDivergedError';
    this.kind = kind;
    this.partition = where.partition;
    this.key = where.key;
    this.sid = where.sid;
    this.seq = where.seq;
    this.committed = committed;
    this.replayed = replayed;
    this.ends = ends;
  }
}

/**
 * Reported to `onError` when a worker's `onOutput` threw or its promise rejected (`cause`). The output counts as
 * delivered: it is not offered again, and the worker goes on with the next one.
 */
export class OnOutputError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_ON_OUTPUT' as const;
  /** The output `onOutput` was called with. */
  readonly output: unknown;
  constructor(output: { sid: string; seq: number }, cause: unknown) {
    super(
      `onOutput failed for output ${output.seq} of session ${JSON.stringify(output.sid)}: ${(cause as Error)?.message ?? String(cause)}`,
      { cause },
    );
    this.name = 'OnOutputError';
    this.output = output;
  }
}

/**
 * Reported to `onError` when `close()` stopped waiting: the server did not answer (or a handler did not finish) before
 * the worker's leases ran out by its own clock. Its partitions were dropped, not released: their next owner takes
 * them once the leases have lapsed and replays their live sessions (outputs not committed are made again there).
 */
export class CloseTimeoutError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_CLOSE_TIMEOUT' as const;
  /** The partitions dropped. */
  readonly partitions: readonly number[];
  constructor(partitions: readonly number[], message: string) {
    super(message);
    this.name = 'CloseTimeoutError';
    this.partitions = partitions;
  }
}

/**
 * `send()` or `sendMany()` failed after something may have been sent: Redis refused an event (out of memory,
 * say), or a call got no answer (a connection lost). Events go to their partitions in separate calls, and
 * Redis does not undo a call's earlier writes, so some events may be in the log. `ids` says which, per event in
 * the order given: its entry id if it was written, `null` if Redis refused it (or one before it in its call),
 * `undefined` if that is unknown (its call failed without an answer from the script: a lost connection). Send again only the events that are `null`, or those `undefined` too if a duplicate is
 * acceptable.
 */
export class SendError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_SEND_FAILED' as const;
  /** Per event, in the order given: its entry id if written, `null` if not, `undefined` if unknown. */
  readonly ids: ReadonlyArray<string | null | undefined>;
  constructor(ids: ReadonlyArray<string | null | undefined>, message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'SendError';
    this.ids = ids;
  }
}

/** A session's cap of events (`maxSessionEvents`) reached. */
export function sessionEventsError(limit: number, message: string): SessionLimitError {
  return new SessionLimitError('ERR_VELO_SESSION_EVENTS', limit, message);
}

/** A session's cap of age (`maxSessionAge`, ms) reached. */
export function sessionAgeError(limit: number, message: string): SessionLimitError {
  return new SessionLimitError('ERR_VELO_SESSION_AGE', limit, message);
}

/**
 * A user's `onError` as velo-stream calls it (`process.emitWarning` if none): what it throws, or the promise it returns rejects with, neither reaches
 * the code that reported (a retry loop, a socket's event, a commit) nor ends the process. It goes to
 * `process.emitWarning` as an `ERR_VELO_ON_ERROR`, with the error `onError` was given (`reported`) and its own (`cause`).
 */
export function reporterOf(onError: ((error: unknown) => unknown) | undefined): (error: unknown) => void {
  if (onError === undefined) return (error) => process.emitWarning(error instanceof Error ? error : new Error(String(error)));
  /** Its `code` or `message` if a string (read in a try: a getter may throw), else how `describe` puts it. */
  const said = (value: unknown, field: 'code' | 'message'): string => {
    try {
      const text = (value as Record<string, unknown> | null)?.[field] ?? (value as Error | null)?.message;
      if (typeof text === 'string') return text;
    } catch {
      // (described below)
    }
    return describe(value);
  };
  const warn = (reported: unknown, cause: unknown): void => {
    const message = `onError failed while given ${said(reported, 'code')}: ${said(cause, 'message')}`;
    process.emitWarning(coded(new Error(message, { cause }), 'ERR_VELO_ON_ERROR', { reported }));
  };
  return (error) => {
    try {
      const pending = onError(error) as PromiseLike<unknown> | undefined;
      if (pending !== null && typeof pending === 'object' && typeof pending.then === 'function')
        pending.then(undefined, (cause: unknown) => warn(error, cause));
    } catch (cause) {
      warn(error, cause);
    }
  };
}

/** A partition's fencing epoch went back, or its outputs end before a reader's position: the server lost data. */
export function logResetError(partition: number, message: string): Error & { code: 'ERR_VELO_LOG_RESET'; partition: number } {
  return coded(new Error(message), 'ERR_VELO_LOG_RESET', { partition });
}

/** Why a resume cursor was refused (`ResumeCursorError.reason`). */
export type ResumeCursorReason = 'length' | 'syntax' | 'partitions' | 'future' | 'unknown';

/** The JSON body of a 400 answer to a refused resume cursor (`ResumeCursorError.toJSON()`). */
export interface ResumeCursorErrorJSON {
  /** What was wrong. */
  error: {
    /** The error's message. */
    message: string;
    /** `ERR_VELO_BAD_CURSOR`. */
    code: string;
    /** Why it was refused. */
    reason: ResumeCursorReason;
  };
}

/**
 * A resume cursor (an SSE `Last-Event-ID`, a `from` option) that no reader of these keys wrote: answer with
 * `status` (400) and `toJSON()`, as `keySse` and `keyNdjson` do.
 */
export class ResumeCursorError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_BAD_CURSOR.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_BAD_CURSOR' as const;
  /**
   * `length`: longer than a cursor of these keys can be; `syntax`: not `<partition>:<ms>-<seq>` pairs joined by
   * commas; `partitions`: naming other partitions than the keys' (a cursor of other keys); `future`: after the
   * newest output of its partition; `unknown`: inside the kept outputs, yet not the id of one.
   */
  readonly reason: ResumeCursorReason;
  constructor(reason: ResumeCursorReason, message: string) {
    super(message);
    this.name = 'ResumeCursorError';
    this.reason = reason;
  }
  /** The body of a 400 response. */
  toJSON(): ResumeCursorErrorJSON {
    return { error: { message: this.message, code: this.code, reason: this.reason } };
  }
}

/** The JSON body of a 410 answer to a cursor whose outputs were trimmed away (`ResumeTrimmedError.toJSON()`). */
export interface ResumeTrimmedErrorJSON {
  /** What was wrong. */
  error: {
    /** The error's message. */
    message: string;
    /** `ERR_VELO_RESUME_TRIMMED`. */
    code: string;
    /** The partition whose outputs were removed. */
    partition: number;
  };
}

/**
 * Outputs after a reader's position were removed from the log (or may have been): answer with `status` (410) and
 * `toJSON()`, as `keySse` and `keyNdjson` do before their first output.
 */
export class ResumeTrimmedError extends Error {
  /** The HTTP status to answer with. */
  readonly status = HTTP_ANSWERS.ERR_VELO_RESUME_TRIMMED.status;
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_RESUME_TRIMMED' as const;
  /** The partition whose output stream no longer holds the outputs after the position. */
  readonly partition: number;
  constructor(partition: number, message: string) {
    super(message);
    this.name = 'ResumeTrimmedError';
    this.partition = partition;
  }
  /** The body of a 410 response. */
  toJSON(): ResumeTrimmedErrorJSON {
    return { error: { message: this.message, code: this.code, partition: this.partition } };
  }
}

/** A call of a worker after its `close()`. */
export function workerClosedError(): Error & { code: 'ERR_VELO_CLOSED' } {
  return coded(new Error('The worker is closed'), 'ERR_VELO_CLOSED');
}
