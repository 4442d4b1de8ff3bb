// Pull fusion, input side (js/core/pull.ts): a generator handler fed by an async source pulls each event from it
// when it waits with nothing buffered. The edges of that chain: cancel while the pull waits for ever, the handler
// leaving early, a source with events ready (kReadNow), the bound (nothing read ahead), and collection of an
// abandoned stream whose pull waits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { streamFn } from 'velo-stream';
import { countedSource } from './helpers/util.mjs';

const kReadNow = Symbol.for('velo-stream.readNow');
const NOT_NOW = Symbol.for('velo-stream.notNow');

/** A source of 0, 1, ... (`count` of them, then it waits for ever), counting what was asked and closed. */
function counted(count = Infinity) {
  return countedSource(count, { then: 'hang' });
}

test('cancel while the handler waits on a source that never answers: the read settles and the handler finally runs', async () => {
  let finalized = false;
  const fn = streamFn(async function* (events) {
    try {
      for await (const e of events) yield e;
    } finally {
      finalized = true;
    }
  });
  const { source, state } = counted(2);
  const s = fn.open();
  const feed = s.feed(source);
  assert.equal((await feed.next()).value, 0);
  assert.equal((await feed.next()).value, 1);
  const pending = feed.next();
  await turn();
  assert.equal(finalized, false);
  await s.cancel('stop');
  assert.deepEqual(await pending, { done: true, value: undefined });
  assert.equal(finalized, true, "the handler's finally ran");
  assert.equal(s.state, 'cancelled');
  assert.equal(state.closed, 1, 'the source was closed');
  assert.equal(fn.stats().open, 0);
});

test('the handler leaving its loop early closes the source before the consumer reads the rest', async () => {
  const fn = streamFn(async function* (events) {
    const got = [];
    for await (const e of events) {
      got.push(e);
      if (got.length === 3) break;
    }
    yield* got;
  });
  const { source, state } = counted();
  const s = fn.open();
  const feed = s.feed(source);
  assert.deepEqual(await feed.next(), { value: 0, done: false });
  for (let i = 0; i < 5; i++) await turn();
  assert.equal(state.closed, 1, 'closed once the handler finished, outputs still unread');
  assert.equal(state.asked, 3, 'nothing read past what the handler took');
  assert.deepEqual(await feed.next(), { value: 1, done: false });
  assert.deepEqual(await feed.next(), { value: 2, done: false });
  assert.deepEqual(await feed.next(), { value: undefined, done: true });
  assert.equal(s.state, 'done');
});

test('a source read one event at a time as the handler asks: never more than the one in hand', async () => {
  let taken = 0;
  let maxAhead = 0;
  const { source, state } = counted(200);
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        taken++;
        maxAhead = Math.max(maxAhead, state.asked - taken);
        if (e === 199) return;
        yield e;
      }
    },
    { buffer: 4 },
  );
  let n = 0;
  for await (const _ of fn.open().feed(source)) {
    n++;
    if (n % 10 === 0) await turn();
  }
  assert.equal(n, 199);
  assert.ok(maxAhead <= 1, `the source was read ${maxAhead} ahead of the handler`);
});

test('events a source has ready (kReadNow) go to the handler in order and are counted', async () => {
  // Three chunks of four events; the first of each comes from next(), the rest are ready with it.
  const chunks = [
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9, 10, 11],
  ];
  let held = [];
  let c = 0;
  const it = {
    async next() {
      await turn();
      if (c === chunks.length) return { value: undefined, done: true };
      held = chunks[c++].slice();
      return { value: held.shift(), done: false };
    },
    [kReadNow]() {
      return held.length > 0 ? held.shift() : NOT_NOW;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e * 10;
  });
  const s = fn.open();
  const out = [];
  for await (const v of s.feed(it)) out.push(v);
  assert.deepEqual(
    out,
    chunks.flat().map((e) => e * 10),
  );
  assert.equal(s.metrics.eventsIn, 12);
  assert.equal(s.metrics.eventsOut, 12);
  assert.equal(fn.stats().completed, 1);
});

test('an abandoned feed whose source never answers is collected, its slot freed', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 0, maxConcurrent: 20 },
  );
  for (let round = 0; round < 3; round++) {
    await (async () => {
      for (let i = 0; i < 10; i++) {
        const feed = fn.open().feed(counted(1).source);
        assert.equal((await feed.next()).value, 0);
        // Left here: the handler waits on a pull that never settles.
      }
    })();
    for (let i = 0; i < 200 && fn.stats().open > 0; i++) {
      globalThis.gc();
      await turn();
      await sleep(20);
    }
    assert.equal(fn.stats().open, 0, `round ${round}: ${JSON.stringify(fn.stats())}`);
  }
  assert.equal(fn.stats().cancelled, 30);
});

test('a pipe stage that stops taking events (it returned) cancels the stage before it, which it pulled from', async () => {
  let firstFinalized = false;
  const burst = streamFn(
    async function* (events) {
      try {
        for await (const e of events) for (let i = 0; i < 1000; i++) yield e * 1000 + i;
      } finally {
        firstFinalized = true;
      }
    },
    { buffer: 4 },
  );
  const firstThree = streamFn(async function* (events) {
    const got = [];
    for await (const e of events) {
      got.push(e);
      if (got.length === 3) break;
    }
    yield* got;
  });
  const p = burst.pipe(firstThree);
  assert.deepEqual(await p.run([1]), [1000, 1001, 1002]);
  assert.equal(firstFinalized, true, 'the first stage was stopped');
  assert.equal(burst.stats().cancelled, 1);
});

// The idle clock of a pulled source: the source is asked only when the handler waits for input, so time the
// handler spends working (or paused at a full output buffer) is not the source's silence. Each case: events ready
// at once, a handler or reader slower per event than the idle timeout; every event must come (an idle end would
// cut the input short and the stream would still complete normally).
const ready = async function* (n) {
  for (let i = 0; i < n; i++) yield i;
};

test('a busy handler, slower per event than the idle timeout, takes every event of a pulled source', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        await sleep(120);
        yield e;
      }
    },
    { idleTimeout: 60 },
  );
  assert.deepEqual(await fn.run(ready(5)), [0, 1, 2, 3, 4]);
  assert.equal(fn.stats().completed, 1);
});

test('a slow reader (the handler paused at its full output buffer) gets every event of a pulled source', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 60, buffer: 1 },
  );
  const out = [];
  for await (const v of fn.open().feed(ready(6))) {
    out.push(v);
    await sleep(120);
  }
  assert.deepEqual(out, [0, 1, 2, 3, 4, 5]);
});

test('a pipe whose second stage is slower per event than the idle timeout gets every event', async () => {
  // (The first stage's buffer of 1 fills at once: it then waits at its yield, its source not asked.)
  const pass = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 60, buffer: 1 },
  );
  const slow = streamFn(
    async function* (events) {
      for await (const e of events) {
        await sleep(120);
        yield e;
      }
    },
    { idleTimeout: 60 },
  );
  assert.deepEqual(await pass.pipe(slow).run(ready(5)), [0, 1, 2, 3, 4]);
});

test('the clock held while the handler worked runs again from its next ask: a source silent past the timeout then stalls', async () => {
  let resume;
  async function* source() {
    yield 0;
    yield 1;
    // Silent for ever once the handler asks for the third event.
    await new Promise((resolve) => (resume = resolve));
    yield 2;
  }
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        if (e === 0) await sleep(150);
        yield e;
      }
      yield 'ended';
    },
    { idleTimeout: 60 },
  );
  const out = [];
  await assert.rejects(
    async () => {
      for await (const v of fn.open().feed(source())) out.push(v);
    },
    { code: 'ERR_VELO_SOURCE_STALLED' },
  );
  // Every event before the stall went through; the handler's loop threw, so no 'ended'.
  assert.deepEqual(out, [0, 1]);
  resume?.();
});

test('a source result whose done is truthy but not true ends the source, as for await ends it', async () => {
  let asked = 0;
  const source = {
    [Symbol.asyncIterator]() {
      return { next: async () => (++asked <= 2 ? { value: asked, done: false } : { value: 'after the end', done: 'yes' }) };
    },
  };
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  assert.deepEqual(await fn.run(source), [1, 2]);
  assert.equal(asked, 3);
});

for (const field of ['done', 'value']) {
  test(`a source result whose ${field} getter throws fails the run with that error (no unhandled rejection)`, async () => {
    const error = new Error(`${field} getter`);
    const unhandled = [];
    const onUnhandled = (reason) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let asked = 0;
      const source = {
        [Symbol.asyncIterator]() {
          return {
            next: async () => {
              if (++asked === 1) return { value: 0, done: false };
              return {
                get done() {
                  if (field === 'done') throw error;
                  return false;
                },
                get value() {
                  throw error;
                },
              };
            },
          };
        },
      };
      let finalized = false;
      const fn = streamFn(async function* (events) {
        try {
          for await (const e of events) yield e;
        } finally {
          finalized = true;
        }
      });
      await assert.rejects(fn.run(source), (e) => e === error);
      await turn();
      assert.deepEqual(unhandled, []);
      assert.equal(finalized, true);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
}

for (const close of ['throws', 'is not a function']) {
  for (const kind of ['generator', 'task']) {
    test(`${kind}: cancel() while the source waits, whose return() ${close}, settles the read and closes the stream`, async () => {
      const source = {
        [Symbol.asyncIterator]() {
          let i = 0;
          return {
            next: () => (i < 2 ? Promise.resolve({ value: i++, done: false }) : new Promise(() => {})),
            return:
              close === 'throws'
                ? () => {
                    throw new Error('return() failed');
                  }
                : 5,
          };
        },
      };
      const { task } = await import('velo-stream');
      const fn =
        kind === 'generator'
          ? streamFn(async function* (events) {
              for await (const e of events) yield e;
            })
          : task(async (x) => x);
      const s = fn.open();
      const feed = s.feed(source);
      assert.equal((await feed.next()).value, 0);
      assert.equal((await feed.next()).value, 1);
      const pending = feed.next();
      await turn();
      const cancelled = feed.cancel();
      assert.ok(cancelled instanceof Promise);
      await cancelled;
      assert.deepEqual(await pending, { value: undefined, done: true });
      assert.equal(s.state, 'cancelled');
      assert.equal(fn.stats().open, 0);
    });
  }
}

test('an abandoned feed whose handler waits at its yield (its pulled source has events) is collected well before its idle timeout', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 60_000, buffer: 1, maxConcurrent: 20 },
  );
  await (async () => {
    for (let i = 0; i < 10; i++) {
      const feed = fn.open().feed(counted().source);
      assert.equal((await feed.next()).value, 0);
      // Left here: the handler fills its buffer of 1 and waits at its yield, its source not asked.
    }
  })();
  for (let i = 0; i < 200 && fn.stats().open > 0; i++) {
    globalThis.gc();
    await turn();
    await sleep(20);
  }
  assert.equal(fn.stats().open, 0, JSON.stringify(fn.stats()));
  assert.equal(fn.stats().cancelled, 10);
});
