// Errors of the bounds a distributed stream function keeps: the producer's lag
// bound and the workers' session caps.

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
 * The last output of a worker session that reached `maxSessionEvents` or `maxSessionAge` (as `redisOutputs`
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
 * it did not make again). What was committed first stays, for every reader: the check changes nothing in Redis.
 */
export class ReplayDivergedError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_REPLAY_DIVERGED' as const;
  /** `'output'`: an output differs; `'count'`: the session ended with fewer outputs. */
  readonly kind: 'output' | 'count';
  /** The session's partition. */
  readonly partition: number;
  /** The session's key. */
  readonly key: string;
  /** The session: `<key>@<id of its first input entry>`. */
  readonly sid: string;
  /** The output's seq (for `'count'`, the first one the replay did not make). */
  readonly seq: number;
  /** The committed output (undefined if its entry is gone from the output stream, or for `kind: 'count'`). */
  readonly committed: OutputContent | undefined;
  /** What the replay made instead (undefined for `kind: 'count'`). */
  readonly replayed: OutputContent | undefined;
  constructor(
    kind: 'output' | 'count',
    where: { partition: number; key: string; sid: string; seq: number },
    message: string,
    committed?: OutputContent,
    replayed?: OutputContent,
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
 * Reported to `onError` when `close()` stopped waiting: Redis did not answer (or a handler did not finish) before
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

/** node-redis' errors of a connection (by class name: the client is the user's, and its package is not imported). */
const CONNECTION_ERRORS = new Set([
  'ConnectionTimeoutError',
  'SocketTimeoutError',
  'ClientClosedError',
  'ClientOfflineError',
  'DisconnectsClientError',
  'SocketClosedUnexpectedlyError',
  'ReconnectStrategyError',
  'TimeoutError',
]);
/** Socket errors of Node's own. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND']);

/**
 * Reported to `onError` when a connection to Redis failed (refused, reset, timed out, closed) or the server is still
 * loading its data after a restart (`LOADING`): the client's error
 * is its `cause`. The worker goes on: its calls are retried, and the client reconnects by its own settings.
 */
export class RedisConnectionError extends Error {
  /** The error's stable code: compare it rather than the class across copies of the module. */
  readonly code = 'ERR_VELO_REDIS_CONNECTION' as const;
  constructor(cause: unknown) {
    super(`A connection to Redis failed: ${String((cause as { message?: unknown } | null)?.message ?? cause)}`, { cause });
    this.name = 'RedisConnectionError';
  }
}

/** The error as it goes to `onError`: a connection error of the client wrapped in a RedisConnectionError. */
export function reportable(error: unknown): unknown {
  const e = error as { constructor?: { name?: unknown }; code?: unknown } | null;
  if (e === null || typeof e !== 'object') return error;
  const byClass = typeof e.constructor?.name === 'string' && CONNECTION_ERRORS.has(e.constructor.name);
  const byCode = typeof e.code === 'string' && SOCKET_CODES.has(e.code);
  // A server that restarted answers LOADING until its data is read back: not there yet, as a lost connection.
  const loading = String((e as { message?: unknown }).message).startsWith('LOADING');
  return byClass || byCode || loading ? new RedisConnectionError(error) : error;
}

/**
 * Thrown by a `redisWorker` session's `ctx.checkpoint(state)` when the state's encoding is over
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
