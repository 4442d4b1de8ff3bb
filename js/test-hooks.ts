// The one internal entry for the test suite (`import '#testing'`, a private
// package import: not reachable by users). Tests see the library through its
// public API and, for leak checks only, through these counters.
export { tableSize } from './core/native-stream';
export { idleWatched } from './addon/addon';
// A stream's state word, and the table of the combinations it may hold (stream-states.test.mjs).
export { stateOf } from './core/stream';
export { FACT_BITS, STATE_BITS, STATE_TABLE, illegalState } from './core/stream-state';

import { addon } from './addon/addon';
/** Streams holding native state on this thread (not yet retired nor freed by their finalizer). */
export const nativeStreams: () => number = addon.__nativeStreamsForTest;
/** A panic inside a native call (it must surface as a JS error, not a crash). */
export const panicForTest: () => void = addon.__panicForTest;

// The Redis log's seam, for the contract test that holds the in-memory log to the Redis one.
export { KeySpace, RedisLog, appendEvents } from './redis/log/redis-log';
export { MemoryLog, SocketClosedUnexpectedlyError } from './durable/memory/memory-log';
export { MemoryStore } from './durable/memory/memory-store';
export { VirtualClock, runUntil } from './durable/testing/virtual-clock';
export { ProcessClock } from './durable/testing/sim-process';
export { sleepOn } from './durable/common/clock';
export { outputItem } from './durable/common/outputs';
export { reportable } from './durable/common/reportable';
export { simBounds, simulate, takeoverWithin } from './durable/testing/simulator';
export { heldBounds } from './durable/engine/held-entries';
// The Postgres log, for the contract test that holds it to the Redis and in-memory ones.
export { PgLog, appendEventsManyPg, appendEventsPg, endsPg, outputEntriesPg, preparePg } from './postgres/log/pg-log';
// A transaction of velo-stream on Postgres, for its statements as sent when the first is not velo-stream's own.
export { transaction } from './postgres/log/sql';
export { isConnectionError } from './postgres/clients/retry';
// A partition's run and what its host needs, for the tests that drive the engine on a log (Postgres, in-memory).
export { PartitionRun } from './durable/engine/partition-run';
export { newCounters } from './durable/engine/partition-host';
export { LocalDelivery } from './durable/engine/local-delivery';
export { StartGate } from './durable/engine/start-gate';
export { OpeningSlice } from './durable/engine/opening-slice';
export { MAX_RETRY_MS, MIN_GAP_MS, Outage, REPORT_EVERY_MS, RETRY_MS } from './durable/engine/outage';
export { jsonCodec } from './durable/common/codec';
export { realClock } from './durable/common/clock';
// A session's journal alone, for the tests of what it answers from records a log gave back (unreadable ones too).
export { Journal } from './durable/engine/journal';
