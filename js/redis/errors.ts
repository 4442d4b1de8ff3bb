// Errors of the bounds a distributed stream function keeps: the producer's lag
// bound and the workers' session caps.

/**
 * Rejected by `send()` / `sendMany()` of a producer with `maxLag` while its partition's consumer-group lag
 * (entries not yet read by the partition's worker) has reached the bound. Nothing of the call was written.
 */
export class LagLimitError extends Error {
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
  readonly code: SessionLimitCode;
  readonly limit: number;
  constructor(code: SessionLimitCode, limit: number, message: string) {
    super(message);
    this.name = 'SessionLimitError';
    this.code = code;
    this.limit = limit;
  }
}
