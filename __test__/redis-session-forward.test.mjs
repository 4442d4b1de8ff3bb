// A session's output forwarding (js/durable/engine/session-forward.ts) frees its worker slot only once its handler has
// finished, a cancelled one's `finally` included, and watches that end once per session however many batches of
// its outputs wait for room in the outbox. Driven through a stand-in partition run (the forwarding's host).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { streamFn } from 'velo-stream';

const require = createRequire(import.meta.url);
const { SessionForward } = require('../dist/durable/engine/session-forward.js');
const { kDrain, kFinished, kReadTo } = require('../dist/core/protocol.js');

/**
 * A partition run's part the forwarding uses: one live session, outputs kept, room in the outbox as `room()` says
 * (true: room now; a promise: room once it settles).
 */
function hostOf(room) {
  const waitRoom = (waiter) => {
    const now = room();
    if (now === true) return false;
    void now.then(() => waiter.roomFreed());
    return true;
  };
  const host = {
    outputs: [],
    worker: { live: 1, report: (error) => assert.fail(`reported: ${error}`) },
    writing: { output: (_s, value) => host.outputs.push(value), fail() {}, checkpointsDue() {} },
    outbox: { waitRoom },
    budget: { waiting: false, freed() {} },
    over: (s) => host.overs.push(s),
    overs: [],
  };
  return host;
}

const session = (stream) => ({ stream, checkpoints: null, yieldsQueued: 0, slotFreed: false, forwardDone: false });
const turn = () => new Promise((resolve) => setImmediate(resolve));

test("a cancelled session's slot stays taken until its handler's finally has run", async () => {
  let cleaned;
  const cleanup = new Promise((resolve) => (cleaned = resolve));
  let cleanupDone = false;
  const fn = streamFn(async function* (events) {
    try {
      for await (const e of events) yield e;
    } finally {
      await cleanup;
      cleanupDone = true;
    }
  });
  const stream = fn.open();
  const host = hostOf(() => true);
  const s = session(stream);
  new SessionForward(host).start(s);
  await stream.send(1);
  for (let i = 0; i < 3; i++) await turn();
  assert.deepEqual(host.outputs, [1]);
  void stream.cancel(new Error('session failed'));
  for (let i = 0; i < 5; i++) await turn();
  assert.equal(cleanupDone, false);
  assert.equal(host.worker.live, 1, 'the slot is still taken while the handler cleans up');
  assert.equal(s.slotFreed, false);
  cleaned();
  await stream[kFinished];
  for (let i = 0; i < 3; i++) await turn();
  assert.equal(cleanupDone, true);
  assert.equal(host.worker.live, 0);
  assert.deepEqual(host.overs, [s]);
});

test("a session whose outputs wait for room batch after batch watches its handler's end once", async () => {
  const BATCHES = 1000;
  let thens = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const then = finished.then;
  finished.then = function (...args) {
    thens++;
    return then.apply(this, args);
  };
  let batches = 0;
  let over;
  const allOut = new Promise((resolve) => (over = resolve));
  const stream = {
    [kDrain](out) {
      if (batches < BATCHES) out.push(++batches);
      if (batches === BATCHES) over();
      return false;
    },
    // (A wake-up read: answered at once while batches remain, never after.)
    [kReadTo](reader) {
      if (batches < BATCHES) reader.resolve(true);
    },
    get [kFinished]() {
      return finished;
    },
  };
  // Each batch finds the outbox full, and room once it has waited for it.
  let waited = false;
  const host = hostOf(() => (waited ? !(waited = false) : ((waited = true), Promise.resolve())));
  const s = session(stream);
  new SessionForward(host).start(s);
  await allOut;
  await turn();
  assert.equal(host.outputs.length, BATCHES);
  assert.equal(thens, 1, 'one reaction to the end for the session, not one per batch');
  assert.equal(host.worker.live, 1);
  finish();
  await turn();
  assert.equal(host.worker.live, 0);
});

test('a session waits for its next outputs with one reader of its own, reused, and no promise per wait', async () => {
  const WAITS = 50;
  const readers = new Set();
  let pending = null;
  let drains = 0;
  const stream = {
    [kDrain](out) {
      drains++;
      out.push(drains);
      return drains === WAITS;
    },
    // (Answered later, from the stream, as a handler's yield does: the forwarding goes on in a microtask of its own.)
    [kReadTo](reader) {
      readers.add(reader);
      pending = reader;
    },
    [kFinished]: Promise.resolve(),
  };
  const host = hostOf(() => true);
  const s = session(stream);
  new SessionForward(host).start(s);
  while (drains < WAITS) {
    assert.notEqual(pending, null);
    const reader = pending;
    pending = null;
    reader.resolve(true);
    assert.equal(host.outputs.length, drains, 'not forwarded from inside the stream');
    await turn();
  }
  for (let i = 0; i < 3; i++) await turn();
  assert.equal(host.outputs.length, WAITS);
  assert.equal(readers.size, 1, 'one reader for all its waits');
  assert.deepEqual(host.overs, [s]);
});

test('outputs stay in the stream while the outbox has no room: none is drained before room is made', async () => {
  let drains = 0;
  const stream = {
    [kDrain](out) {
      drains++;
      out.push(drains);
      return false;
    },
    [kReadTo]() {},
    [kFinished]: new Promise(() => {}),
  };
  let freeRoom;
  const room = new Promise((resolve) => (freeRoom = resolve));
  let full = true;
  const host = hostOf(() => (full ? room : true));
  new SessionForward(host).start(session(stream));
  for (let i = 0; i < 3; i++) await turn();
  assert.equal(drains, 0, 'the outbox is full: its outputs wait in its stream (its handler stops at a full buffer)');
  full = false;
  freeRoom();
  for (let i = 0; i < 3; i++) await turn();
  assert.equal(drains, 1);
  assert.deepEqual(host.outputs, [1]);
});
