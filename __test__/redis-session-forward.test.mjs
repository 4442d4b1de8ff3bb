// A session's output forwarding (js/redis/engine/session-forward.ts) frees its worker slot only once its handler has
// finished, a cancelled one's `finally` included, and watches that end once per session however many batches of
// its outputs wait for room in the outbox. Driven through a stand-in partition run (the forwarding's host).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { streamFn } from 'velo-stream';

const require = createRequire(import.meta.url);
const { SessionForward } = require('../dist/redis/engine/session-forward.js');
const { kDrain, kFinished, kWaitOutput } = require('../dist/core/protocol.js');

/** A partition run's part the forwarding uses: one live session, outputs kept, room in the outbox as `waitRoom` says. */
function hostOf(waitRoom) {
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
  const host = hostOf(() => undefined);
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
    [kWaitOutput]: () => (batches < BATCHES ? Promise.resolve() : new Promise(() => {})),
    get [kFinished]() {
      return finished;
    },
  };
  const host = hostOf(() => Promise.resolve());
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
