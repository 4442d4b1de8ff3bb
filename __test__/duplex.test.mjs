// stream.duplex(): an object-mode Duplex for stream.pipeline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { streamFn, task } from 'velo-stream';
import { settle } from './helpers/util.mjs';

const square = streamFn(
  async function* square(events) {
    for await (const e of events) yield e * e;
  },
  { buffer: 4 },
);

function collector(delayMs = 0) {
  const out = [];
  const sink = new Writable({
    objectMode: true,
    highWaterMark: 1,
    write(chunk, _enc, cb) {
      out.push(chunk);
      delayMs ? setTimeout(cb, delayMs) : cb();
    },
  });
  return { out, sink };
}

test('pipeline(source, fn.open().duplex(), sink) delivers every output in order', async () => {
  const { out, sink } = collector();
  await pipeline(Readable.from(Array.from({ length: 1000 }, (_, i) => i)), square.open().duplex(), sink);
  assert.deepEqual(
    out,
    Array.from({ length: 1000 }, (_, i) => i * i),
  );
  assert.equal(square.stats().open, 0);
});

test('backpressure both ways: a slow sink holds the source back', async () => {
  let pulled = 0;
  const source = Readable.from(
    (function* () {
      for (let i = 0; i < 500; i++) {
        pulled++;
        yield i;
      }
    })(),
    { highWaterMark: 1 },
  );
  const { out, sink } = collector(2);
  const done = pipeline(source, square.open().duplex(), sink);
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(pulled - out.length < 60, `the source ran ${pulled - out.length} ahead of the sink`);
  await done;
  assert.equal(out.length, 500);
});

test('a handler error destroys the pipeline with that error; a failing sink cancels the stream', async () => {
  const boom = new Error('boom');
  const failing = streamFn(async function* (events) {
    for await (const e of events) {
      if (e === 3) throw boom;
      yield e;
    }
  });
  await assert.rejects(pipeline(Readable.from([1, 2, 3, 4]), failing.open().duplex(), collector().sink), (e) => e === boom);
  let finalized = false;
  const endless = streamFn(async function* () {
    try {
      for (let i = 0; ; i++) yield i;
    } finally {
      finalized = true;
    }
  });
  const sinkError = new Error('disk full');
  const sink = new Writable({ objectMode: true, write: (_c, _e, cb) => cb(sinkError) });
  await assert.rejects(pipeline(Readable.from([]), endless.open().duplex(), sink), (e) => e === sinkError);
  await settle();
  assert.ok(finalized, 'the handler was cancelled and its finally ran');
  assert.equal(endless.stats().open, 0);
});

test('a handler error into a sink that stopped writing (it never calls back) still rejects the pipeline with that error', async () => {
  // The error waits for the outputs before it to be written, but only while they move: a stuck sink, or a client
  // that stopped reading, held the failed pipeline (and the process) for good before.
  for (const highWaterMark of [1, 16]) {
    const boom = Object.assign(new RangeError('boom'), { code: 'E_BOOM' });
    const fn = streamFn(async function* (events) {
      for await (const e of events) {
        if (e === 'boom') throw boom;
        yield e;
      }
    });
    const got = [];
    const stuck = new Writable({ objectMode: true, highWaterMark, write: (chunk) => got.push(chunk) });
    await assert.rejects(
      pipeline(Readable.from(['a', 'b', 'boom', 'z']), fn.open().duplex(), stuck),
      (e) => e === boom,
      `highWaterMark ${highWaterMark}`,
    );
    assert.deepEqual(got, ['a'], 'the sink took the first output and stopped');
    await settle();
    assert.equal(fn.stats().open, 0);
  }
});

test('run() and feed() accept a Readable as their source', async () => {
  assert.deepEqual(await square.run(Readable.from([1, 2, 3])), [1, 4, 9]);
});

test('null and undefined outputs are skipped (an object-mode Readable cannot carry them); other falsy values pass', async () => {
  // The source cannot carry null either: the handler makes the outputs.
  const outputs = [1, null, undefined, 0, false, '', 2];
  const falsy = streamFn(async function* (indexes) {
    for await (const i of indexes) yield outputs[i];
  });
  const { out, sink } = collector();
  const stream = falsy.open();
  await pipeline(Readable.from(outputs.keys()), stream.duplex(), sink);
  assert.deepEqual(out, [1, 0, false, '', 2]);
  // The handler yielded them: they count as outputs, and the stream ended normally.
  assert.equal(stream.metrics.eventsOut, 7);
  assert.equal(stream.state, 'done');
});

/** An object-mode Readable that pushes `events`, then neither ends nor fails (a stalled upstream). */
function stalling(events) {
  const source = new Readable({ objectMode: true, read() {} });
  for (const e of events) source.push(e);
  return source;
}

test('a pipeline whose source stalls past the idle timeout rejects with SourceStalledError after the outputs before it; the source is destroyed', async () => {
  let after = 0;
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
      after++;
      yield 'done';
    },
    { idleTimeout: 50 },
  );
  const kinds = {
    'a handler': () => echo.open().duplex(),
    'a task stage': () =>
      task(async (e) => e, { idleTimeout: 50 })
        .open()
        .duplex(),
    'a pipe': () =>
      echo
        .pipe(
          streamFn(async function* (events) {
            for await (const e of events) yield e;
          }),
        )
        .open()
        .duplex(),
  };
  for (const [kind, duplex] of Object.entries(kinds)) {
    const source = stalling([1, 2]);
    const { out, sink } = collector();
    await assert.rejects(pipeline(source, duplex(), sink), { code: 'ERR_VELO_SOURCE_STALLED', status: 504 }, kind);
    assert.deepEqual(out, [1, 2], kind);
    assert.equal(source.destroyed, true, kind);
  }
  // The handler's input failed: the code after its loop never ran.
  assert.equal(after, 0);
  await settle();
  assert.equal(echo.stats().open, 0);
});

test("a duplex whose writable side ended idles out as a clean end, whatever its readable side's pace", async () => {
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
      yield 'done';
    },
    { idleTimeout: 50 },
  );
  const { out, sink } = collector(80);
  await pipeline(Readable.from([1, 2, 3]), echo.open().duplex(), sink);
  assert.deepEqual(out, [1, 2, 3, 'done']);
});
