// Idle timeout: the input ends as by end(); the process is never kept alive by an idle stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { StreamClosedError, streamFn } from 'velo-stream';
import { run } from './helpers/child.mjs';
import { collect, deferred, echo } from './helpers/util.mjs';

test('an idle stream ends its input; the handler finishes normally and its final yields are delivered', async () => {
  const log = [];
  const fn = streamFn(
    async function* (events) {
      try {
        let n = 0;
        for await (const e of events) {
          n++;
          yield e;
        }
        yield `summary:${n}`;
      } finally {
        log.push('finally');
      }
    },
    { idleTimeout: 30 },
  );
  const s = fn.open();
  await s.send('a');
  await s.send('b');
  assert.deepEqual(await collect(s), ['a', 'b', 'summary:2'], 'the read waits for the idle timeout, then gets everything');
  assert.deepEqual(log, ['finally']);
  assert.equal(s.state, 'done');
  assert.equal(fn.stats().completed, 1);
  await assert.rejects(s.send('late'), StreamClosedError);
});

test('each send moves the idle deadline', async () => {
  const fn = streamFn(echo, { idleTimeout: 60 });
  const s = fn.open();
  for (let i = 0; i < 6; i++) {
    await s.send(i);
    await new Promise((r) => setTimeout(r, 20)); // 120 ms in all, never 60 ms without a send
  }
  assert.equal(s.state, 'open');
  assert.deepEqual(await collect(s), [0, 1, 2, 3, 4, 5]);
});

// A send handed straight to a waiting handler is reported to the core later
// (js/core/stream.ts, "handoffs counted later"), at the latest on the next
// turn's check phase. An idle deadline can be looked at before that, in the
// poll phase of the same turn: the report must come first, with the send's
// time.
// The same for a send to a busy handler (one not waiting for input): any
// scheme that gives such sends to the core later (in batches, say) must keep
// this, and the next test.
for (const busy of [false, true]) {
  test(`a send ${busy ? 'to a busy handler' : 'handed over'} just before the idle deadline keeps the stream open, even when the deadline is looked at in the same turn`, async () => {
    const timeout = 200;
    let attempts = 0;
    for (;;) {
      attempts++;
      const gate = deferred();
      const handler = busy
        ? async function* (events) {
            await gate.promise; // busy until released
            for await (const e of events) yield e;
          }
        : echo;
      const fn = streamFn(handler, { idleTimeout: timeout });
      const s = fn.open();
      const opened = performance.now();
      await new Promise((r) => setTimeout(r, timeout / 2));
      if (s.state !== 'open') {
        // (This machine was too slow to send before the deadline.)
        assert.ok(attempts < 3, 'sent before the deadline in one of three attempts');
        continue;
      }
      const sentAt = performance.now();
      await s.send('late');
      // Past the deadline armed at open (but within a timeout of the send) before
      // this turn ends, so that the deadline is looked at before the check phase.
      while (performance.now() - opened < timeout + 20);
      if (performance.now() - sentAt >= timeout) {
        assert.ok(attempts < 3, 'busy-waited less than a timeout after the send in one of three attempts');
        gate.resolve();
        await s.cancel();
        continue;
      }
      await new Promise((r) => setTimeout(r, 10));
      assert.equal(s.state, 'open', 'the send restarted the idle clock');
      gate.resolve();
      assert.equal(await s.recv(), 'late');
      assert.deepEqual(await collect(s), [], 'and it still idles out a timeout after the send');
      return;
    }
  });
}

test('the idle clock restarts at a send to a busy handler, not when the event reaches the core', async () => {
  const timeout = 300;
  for (let attempt = 1; ; attempt++) {
    const fn = streamFn(
      async function* (events) {
        for await (const e of events) await new Promise((r) => setTimeout(r, 5)); // busy after each event
      },
      { idleTimeout: timeout },
    );
    const s = fn.open();
    await s.send('first'); // handed over: the handler is busy from here
    const sentAt = performance.now();
    void s.send('last');
    while (performance.now() - sentAt < timeout - 10); // the sender's own turn goes on
    // Half a timeout past the deadline of the send, well before the deadline
    // of the moment the event reached the core (at the end of that turn).
    while (performance.now() - sentAt < timeout * 1.5) await new Promise((r) => setTimeout(r, 10));
    const lookedAt = performance.now() - sentAt;
    if (lookedAt >= timeout * 1.9) {
      // (This machine was too slow to tell.)
      assert.ok(attempt < 3, 'looked at in time in one of three attempts');
      await s.cancel();
      continue;
    }
    assert.notEqual(s.state, 'open', `idled out a timeout after the last send (looked at ${Math.round(lookedAt)} ms after it)`);
    return;
  }
});

// A send handed straight to a waiting handler is not timed on its own: the
// stream is stamped once the synchronous run it was made in ends (js/core/stream.ts,
// `stampLater`). A clock read once per run or per turn, at its start or at its
// first handoff, would restart the idle clock before a handoff made after
// synchronous work in that run, and the stream would idle out early.
test('a handed-over send after synchronous work in the same run restarts the idle clock no earlier than the send', async () => {
  const timeout = 200;
  const work = 150;
  for (let attempt = 1; ; attempt++) {
    const fn = streamFn(echo, { idleTimeout: timeout });
    const s = fn.open();
    await s.send('first'); // handed over, counted in JavaScript
    assert.equal(await s.recv(), 'first');
    await new Promise((r) => setTimeout(r, 10)); // a run of its own from here
    await s.send('early'); // handed over and counted in JavaScript
    assert.equal(await s.recv(), 'early');
    const workStart = performance.now();
    while (performance.now() - workStart < work); // the same run goes on
    const sentAt = performance.now();
    await s.send('late');
    assert.equal(await s.recv(), 'late');
    // Past the deadline of the run's start (or of 'early'), well before the late send's.
    await new Promise((r) => setTimeout(r, timeout - work + 40));
    const lookedAt = performance.now() - sentAt;
    if (lookedAt >= timeout - 20) {
      // (This machine was too slow to tell.)
      assert.ok(attempt < 3, 'looked at in time in one of three attempts');
      await s.cancel();
      continue;
    }
    assert.equal(s.state, 'open', `still open ${Math.round(lookedAt)} ms after the last send`);
    assert.deepEqual(await collect(s), [], 'and it idles out after that');
    return;
  }
});

test('a send waiting for room pauses the idle clock', async () => {
  let release;
  const gate = new Promise((r) => (release = r));
  const fn = streamFn(
    async function* (events) {
      await gate;
      for await (const e of events) yield e;
    },
    { buffer: 1, idleTimeout: 20 },
  );
  const s = fn.open();
  await s.send(1);
  const waiting = s.send(2);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(s.state, 'open', 'not ended while a send waits');
  release();
  await waiting;
  assert.deepEqual(await collect(s), [1, 2]);
});

test('idleTimeout 0 never ends a stream', async () => {
  const fn = streamFn(echo, { idleTimeout: 0 });
  const s = fn.open();
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(s.state, 'open');
  await s.cancel();
});

const child = fileURLToPath(new URL('./helpers/idle-child.mjs', import.meta.url));

/** Runs a scenario; asserts (./helpers/child.mjs) it ends by itself, exit code 0, clean stderr. */
function runChild(scenario) {
  return run([child, scenario], { timeout: 20_000 });
}

test('a process with an open idle stream exits on its own', async () => {
  const r = await runChild('idle-open');
  assert.match(r.stdout, /opened/);
  assert.doesNotMatch(r.stdout, /idle-ended/, 'exited without waiting for the 10 s idle timeout');
});

test('a pending read keeps the process alive until the idle timeout ends the stream', async () => {
  const r = await runChild('pending-read');
  assert.match(r.stdout, /outputs: a,b,end/);
});

test('a pending send does not keep the process alive; the stream is still open at exit', async () => {
  const r = await runChild('pending-send');
  assert.match(r.stdout, /exit with state open, waits 1/);
});
