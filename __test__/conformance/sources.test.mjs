// Contract: what a stream does with its source and its signal at the edges, for every cell (cells.mjs).
// - Many streams sharing one AbortSignal (a server's, a request's) add one listener to it, not one each, so Node
//   never warns of a leak; the abort still cancels every one, and streams that finish take the listener away.
// - A value that cannot even be looked at (a revoked Proxy) is a bad argument: the coded ERR_INVALID_ARG_TYPE.
// - A source whose Symbol.asyncIterator getter throws has failed: feed() cancels the stream and its iteration
//   rejects with that error (as for a source whose next() throws); run() rejects with it.
// - A stream takes one feed at a time: a second feed's iteration, started while the first still reads its source,
//   rejects with ERR_INVALID_STATE and reads nothing; the first feed goes on, every one of its events delivered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { setImmediate as turn } from 'node:timers/promises';
import { cells } from './cells.mjs';

const STREAMS = 12;

/** Warnings emitted while `f` runs (and a turn after: Node emits them on the next tick). */
async function warningsOf(f) {
  const seen = [];
  const onWarning = (w) => seen.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  try {
    await f();
    await turn();
  } finally {
    process.off('warning', onWarning);
  }
  return seen;
}

for (const cell of cells()) {
  test(`${cell.name}: ${STREAMS} streams on one signal: one listener, no warning, the abort cancels each, finished streams take it away`, async () => {
    const fn = cell.make();
    const ac = new AbortController();
    let streams = [];
    const warnings = await warningsOf(async () => {
      streams = Array.from({ length: STREAMS }, () => fn.open({ signal: ac.signal }));
      for (const s of streams) await s.send({ i: 1 });
      for (const s of streams) assert.deepEqual(await s.recv(), { i: 1 });
      assert.equal(getEventListeners(ac.signal, 'abort').length, 1, 'one listener for every stream on the signal');
      const reason = new Error('aborted');
      ac.abort(reason);
      for (const s of streams) await assert.rejects(s.recv(), (e) => e === reason || e.cause === reason || e.code === 'ERR_VELO_STREAM_CLOSED');
      for (const s of streams) assert.equal(s.state, 'cancelled');
    });
    assert.deepEqual(warnings, []);

    // Streams that finish on their own leave nothing on a signal that lives on.
    const lasting = new AbortController();
    const done = await warningsOf(async () => {
      const outs = await Promise.all(Array.from({ length: STREAMS }, (_, i) => fn.run([{ i }], { signal: lasting.signal })));
      assert.deepEqual(outs, Array.from({ length: STREAMS }, (_, i) => [{ i }]));
      const open = Array.from({ length: 3 }, () => fn.open({ signal: lasting.signal }));
      assert.equal(getEventListeners(lasting.signal, 'abort').length, 1);
      for (const s of open) await s.cancel();
      // (A pipe detaches once every stage has finished.)
      for (let i = 0; i < 50 && getEventListeners(lasting.signal, 'abort').length > 0; i++) await turn();
      assert.equal(getEventListeners(lasting.signal, 'abort').length, 0, 'no listener left once every stream finished');
    });
    assert.deepEqual(done, []);
  });

  test(`${cell.name}: a revoked Proxy as the source is a bad argument (ERR_INVALID_ARG_TYPE), for feed() and run()`, async () => {
    const fn = cell.make();
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    const s = fn.open();
    try {
      assert.throws(() => s.feed(proxy), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /revoked Proxy/ });
      await assert.rejects(fn.run(proxy), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    } finally {
      await s.cancel();
    }
  });

  test(`${cell.name}: a source whose Symbol.asyncIterator getter throws ends the stream with that error`, async () => {
    const fn = cell.make();
    const broke = new Error('the getter broke');
    const source = {
      get [Symbol.asyncIterator]() {
        throw broke;
      },
    };
    const s = fn.open();
    const out = s.feed(source);
    await assert.rejects(out.next(), (e) => e === broke);
    await assert.rejects(s.send({ i: 1 }), { code: 'ERR_VELO_STREAM_CLOSED' });
    assert.equal(s.state, 'cancelled');
    await assert.rejects(fn.run(source), (e) => e === broke);
  });

  test(`${cell.name}: a second feed() while the first still reads its source is refused (ERR_INVALID_STATE); the first loses nothing`, async () => {
    const fn = cell.make();
    const events = Array.from({ length: 10 }, (_, i) => ({ i }));
    const expected = await fn.run(events);
    async function* first() {
      for (const e of events) {
        await null;
        yield e;
      }
    }
    let looked = 0;
    const second = {
      get [Symbol.asyncIterator]() {
        looked++;
        return async function* () {
          yield { i: 100 };
        };
      },
    };
    const s = fn.open();
    const a = s.feed(first());
    const got = [];
    const reading = (async () => {
      for await (const out of a) got.push(out);
    })();
    // Looked at once by feed() (is it a source?), never read.
    const b = s.feed(second);
    await assert.rejects(b.next(), { name: 'TypeError', code: 'ERR_INVALID_STATE', message: /one feed\(\) at a time/ });
    assert.deepEqual(await b.next(), { value: undefined, done: true });
    await reading;
    assert.deepEqual(got, expected);
    assert.ok(looked <= 1, 'the refused source is not read');
    assert.equal(s.state, 'done');
    // Once the first source is done the input is ended: a later feed is refused as a send would be.
    await assert.rejects(s.feed([{ i: 1 }]).next(), { code: 'ERR_VELO_STREAM_CLOSED' });
  });
}
