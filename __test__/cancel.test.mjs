// cancel(), break, asyncDispose and AbortSignal: every way of stopping a stream now.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamClosedError, streamFn } from 'velo-stream';
import { collect, deferred, echo, isSettled, settle, unhandledDuring } from './helpers/util.mjs';

function tracked(extra = async () => {}) {
  const log = [];
  const fn = streamFn(
    async function* (events, ctx) {
      log.push('start');
      ctx.signal.addEventListener('abort', () => log.push(`abort:${String(ctx.signal.reason)}`));
      try {
        for await (const e of events) {
          log.push(`got:${e}`);
          await extra(e);
          yield e;
        }
        log.push('input-ended');
      } finally {
        log.push('finally');
      }
    },
    { buffer: 2 },
  );
  return { fn, log };
}

test("cancel() frees the slot at once, aborts ctx.signal, fails the parked handler's read so only its finally runs", async () => {
  const { fn, log } = tracked();
  const s = fn.open();
  await s.send(1);
  await settle();
  assert.equal(fn.stats().open, 1);
  const done = s.cancel('stop');
  assert.equal(fn.stats().open, 0, 'slot freed synchronously');
  assert.equal(fn.stats().cancelled, 1);
  assert.equal(s.state, 'cancelled');
  await done;
  // (Its code after the loop takes the input as whole: it does not run.)
  assert.deepEqual(log, ['start', 'got:1', 'abort:stop', 'finally']);
});

test("a cancelled handler's read of its input throws StreamClosedError (cause: the reason), parked or read later, in a pipe too", async () => {
  const caught = [];
  const handler = (name) =>
    async function* (events, ctx) {
      try {
        for await (const e of events) {
          yield e;
          // (One of them is busy with an await of its own at the cancel, and reads after it.)
          if (name === 'busy') await new Promise((resolve) => setTimeout(resolve, 20));
        }
        caught.push(`${name}: ended`);
      } catch (error) {
        caught.push(`${name}: ${error.code} ${String(error.cause)} ${ctx.signal.aborted}`);
        throw error;
      }
    };
  for (const [name, reason] of [
    ['parked', 'stop'],
    ['busy', 'stop'],
  ]) {
    const fn = streamFn(handler(name));
    const s = fn.open();
    await s.send(1);
    assert.equal(await s.recv(), 1);
    await s.cancel(reason);
    assert.equal(s.state, 'cancelled');
    assert.deepEqual(fn.stats(), { open: 0, opened: 1, completed: 0, failed: 0, cancelled: 1, rejected: 0 });
  }
  const first = streamFn(handler('first'));
  const last = streamFn(handler('last'));
  const pipe = first.pipe(last).open();
  await pipe.send(1);
  assert.equal(await pipe.recv(), 1);
  await pipe.cancel('gone');
  assert.equal(pipe.state, 'cancelled');
  assert.deepEqual(caught.sort(), [
    'busy: ERR_VELO_STREAM_CLOSED stop true',
    'first: ERR_VELO_STREAM_CLOSED gone true',
    'last: ERR_VELO_STREAM_CLOSED gone true',
    'parked: ERR_VELO_STREAM_CLOSED stop true',
  ]);
});

test('pending and later sends reject; buffered events and outputs are dropped; reads finish', async () => {
  const gate = deferred();
  const { fn, log } = tracked(() => gate.promise);
  const s = fn.open();
  await s.send(1); // received by the handler, which then waits on the gate
  await s.send(2); // buffered
  await s.send(3); // buffered: the buffer (2) is full
  const pending = s.send(4);
  await settle();
  assert.equal(await isSettled(pending), false);
  const reading = s.recv();
  const iterating = collect(s);
  const cancelled = s.cancel();
  await assert.rejects(pending, StreamClosedError);
  await assert.rejects(s.send(5), StreamClosedError);
  await assert.rejects(reading, StreamClosedError);
  assert.deepEqual(await iterating, []);
  gate.resolve(); // the handler was parked on its own await
  await cancelled;
  assert.ok(!log.includes('got:2') && !log.includes('got:3'), 'buffered events dropped');
  assert.ok(!log.includes('got:4'), 'waiting sends dropped');
  assert.equal(log.at(-1), 'finally');
  await assert.rejects(s.recv(), StreamClosedError);
  assert.deepEqual(await collect(s), []);
  // (An iteration ends rather than rejects: the state tells a cut answer from a whole one.)
  assert.equal(s.state, 'cancelled');
});

test('cancel() is idempotent and resolves when the handler has returned', async () => {
  const gate = deferred();
  let returned = false;
  const fn = streamFn(async function* (events) {
    try {
      for await (const e of events) yield e;
    } finally {
      await gate.promise;
      returned = true;
    }
  });
  const s = fn.open();
  await settle();
  const a = s.cancel();
  const b = s.cancel();
  assert.equal(await isSettled(a), false);
  gate.resolve();
  await Promise.all([a, b]);
  assert.ok(returned);
  await s.cancel();
  assert.equal(fn.stats().cancelled, 1);
});

test('an error thrown by the handler after cancellation is swallowed', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
    throw new Error('late');
  });
  const seen = await unhandledDuring(async () => {
    const s = fn.open();
    await s.send(1);
    await s.cancel();
    assert.equal(s.state, 'cancelled');
  });
  assert.deepEqual(seen, []);
  assert.equal(fn.stats().failed, 0);
});

test('a handler paused at a full output is released by cancel and its finally runs', async () => {
  let finalized = false;
  const fn = streamFn(
    async function* () {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        finalized = true;
      }
    },
    { buffer: 2 },
  );
  const s = fn.open();
  await settle();
  await s.cancel();
  assert.ok(finalized);
});

test('breaking out of for await cancels the stream and runs the handler finally', async () => {
  const { fn, log } = tracked();
  const s = fn.open();
  for (const e of [1, 2]) await s.send(e);
  for await (const v of s) {
    assert.equal(v, 1);
    break;
  }
  assert.equal(s.state, 'cancelled');
  assert.equal(log.at(-1), 'finally', 'finally ran before the loop exited');
  assert.equal(fn.stats().open, 0);
});

test('iterator return() and throw() cancel too', async () => {
  const { fn } = tracked();
  const s1 = fn.open();
  await s1[Symbol.asyncIterator]().return();
  assert.equal(s1.state, 'cancelled');
  const s2 = fn.open();
  const oops = new Error('oops');
  await assert.rejects(s2[Symbol.asyncIterator]().throw(oops), (e) => e === oops);
  assert.equal(s2.state, 'cancelled');
});

test('Symbol.asyncDispose cancels (await using)', async () => {
  const { fn, log } = tracked();
  const s = fn.open();
  await s.send(1);
  await s[Symbol.asyncDispose]();
  assert.equal(s.state, 'cancelled');
  assert.equal(log.at(-1), 'finally');
});

test('aborting opts.signal cancels with its reason; an already-aborted signal cancels at once', async () => {
  const { fn, log } = tracked();
  const ac = new AbortController();
  const s = fn.open({ signal: ac.signal });
  await s.send(1);
  ac.abort('user left');
  await settle();
  assert.equal(s.state, 'cancelled');
  assert.ok(log.includes('abort:user left'));
  const pre = fn.open({ signal: AbortSignal.abort('early') });
  await settle();
  assert.equal(pre.state, 'cancelled');
  assert.equal(fn.stats().open, 0);
});

test('a signal is watched while the handler runs: aborted once it returned, the outputs left are still read; cancel() drops them', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) {
      yield e;
      yield e + 1;
    }
  });
  const ac = new AbortController();
  const s = fn.open({ signal: ac.signal });
  await s.send(1);
  s.end();
  await settle();
  assert.equal(s.state, 'ending');
  ac.abort(new Error('too late'));
  await settle();
  assert.equal(s.state, 'ending');
  assert.deepEqual(await collect(s), [1, 2]);
  assert.equal(s.state, 'done');
  const other = fn.open({ signal: new AbortController().signal });
  await other.send(1);
  other.end();
  await settle();
  await other.cancel();
  assert.equal(other.state, 'cancelled');
  assert.deepEqual(await collect(other), []);
});

test('run() and feed() reject with the signal reason, also when aborted before the call', async () => {
  const reason = new Error('abort reason');
  const slow = streamFn(async function* (events) {
    for await (const e of events) {
      await new Promise((r) => setTimeout(r, 1));
      yield e;
    }
  });
  await assert.rejects(slow.run([1, 2], { signal: AbortSignal.abort(reason) }), (e) => e === reason);
  const ac = new AbortController();
  const running = slow.run(
    Array.from({ length: 1000 }, (_, i) => i),
    { signal: ac.signal },
  );
  setTimeout(() => ac.abort(reason), 5);
  await assert.rejects(running, (e) => e === reason);
  const ac2 = new AbortController();
  const s = slow.open({ signal: ac2.signal });
  const feeding = collect(s.feed([1, 2, 3, 4, 5, 6, 7, 8]));
  setTimeout(() => ac2.abort(reason), 3);
  await assert.rejects(feeding, (e) => e === reason);
  const s2 = slow.open({ signal: AbortSignal.abort(reason) });
  await assert.rejects(collect(s2.feed([1])), (e) => e === reason);
  await settle();
  assert.equal(slow.stats().open, 0);
});

test('cancel, end and abort in every state, twice, concurrently with pending sends and reads', async () => {
  const fn = streamFn(echo, { buffer: 1 });
  for (const order of [
    ['end', 'cancel'],
    ['cancel', 'end'],
    ['cancel', 'cancel'],
    ['end', 'end'],
  ]) {
    const ac = new AbortController();
    const s = fn.open({ signal: ac.signal });
    const sends = [1, 2, 3].map((e) => s.send(e));
    const reads = [s.recv(), s.recv()];
    for (const op of order) op === 'end' ? s.end() : void s.cancel();
    ac.abort();
    await Promise.allSettled([...sends, ...reads]);
    await s.cancel();
    await settle();
    assert.ok(['done', 'cancelled', 'ending'].includes(s.state), s.state);
  }
  await settle();
  assert.equal(fn.stats().open, 0);
});

test('a cancelled stream after done stays done; cancel on a failed stream keeps it failed', async () => {
  const fn = streamFn(echo);
  const s = fn.open();
  s.end();
  await collect(s);
  await s.cancel();
  assert.equal(s.state, 'done');
  const bad = streamFn(async function* () {
    throw new Error('x');
  }).open();
  await settle();
  await bad.cancel();
  assert.equal(bad.state, 'failed');
});
