// The one internal entry for the test suite (`import '#testing'`, a private
// package import: not reachable by users). Tests see the library through its
// public API and, for leak checks only, through these counters.
export { tableSize } from './core/native-stream';
export { idleWatched } from './core/addon';

import { addon } from './core/addon';
/** Streams holding native state on this thread (not yet retired nor freed by their finalizer). */
export const nativeStreams: () => number = addon.__nativeStreamsForTest;
/** A panic inside a native call (it must surface as a JS error, not a crash). */
export const panicForTest: () => void = addon.__panicForTest;

// The Redis log's seam, for the contract test that holds the in-memory log to the Redis one.
export { KeySpace, RedisLog, appendEvents } from './redis/redis-log';
export { MemoryLog, MemoryStore, SocketClosedUnexpectedlyError } from './redis/memory-log';
export { VirtualClock, runUntil } from './redis/virtual-clock';
export { sleepOn } from './redis/clock';
export { outputItem } from './redis/reader';
export { reportable } from './redis/reportable';
export { simBounds, simulate, takeoverWithin } from './redis/simulator';
export { heldBounds } from './redis/held-entries';
