// The hand-written baselines of the task-stage benchmarks (bench/baselines.mjs)
// do what a careful user's would: every ratio against them assumes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { batchMap, mapOrdered, mapUnordered } from '../bench/baselines.mjs';
import { collect, unhandledDuring as unhandledAfter } from './helpers/util.mjs';

const range = (n) => Array.from({ length: n }, (_, i) => i);
const ticks = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** An async source that counts its pulls and records whether it was closed. */
function countingSource(items) {
  const state = { pulled: 0, closed: false };
  state.source = (async function* () {
    try {
      for (const item of items) {
        state.pulled++;
        yield item;
      }
    } finally {
      state.closed = true;
    }
  })();
  return state;
}

/** The unhandled rejections while `body` runs, and for 30 ms after (calls still settling). */
const unhandledDuring = (body) =>
  unhandledAfter(async () => {
    await body();
    await sleep(30);
  });

for (const [name, makeSource] of [
  ['an array', (items) => items],
  ['an async generator', (items) => countingSource(items).source],
]) {
  test(`mapOrdered over ${name}: outputs in input order although calls finish out of order`, async () => {
    const finished = [];
    const out = await collect(
      mapOrdered(
        makeSource(range(40)),
        async (x) => {
          await sleep((x * 7) % 5);
          finished.push(x);
          return x * 10;
        },
        8,
      ),
    );
    assert.deepEqual(
      out,
      range(40).map((x) => x * 10),
    );
    assert.notDeepEqual(finished, range(40), 'the delays make calls finish out of input order');
  });
}

test('mapOrdered: sync results, sync throws and a sync source work as async ones do', async () => {
  assert.deepEqual(await collect(mapOrdered(range(5), (x) => x + 1, 2)), [1, 2, 3, 4, 5]);
  const boom = new Error('sync throw');
  const out = [];
  await assert.rejects(
    (async () => {
      const throwAt3 = (x) => {
        if (x === 3) throw boom;
        return x;
      };
      for await (const v of mapOrdered(range(5), throwAt3, 2)) out.push(v);
    })(),
    (e) => e === boom,
  );
  assert.deepEqual(out, [0, 1, 2]);
});

for (const [name, map] of [
  ['mapOrdered', mapOrdered],
  ['mapUnordered', mapUnordered],
]) {
  test(`${name}: never more than concurrency calls started and not yet delivered, and the bound is reached`, async () => {
    const concurrency = 5;
    let started = 0;
    let delivered = 0;
    let most = 0;
    for await (const _ of map(
      range(60),
      async (x) => {
        started++;
        most = Math.max(most, started - delivered);
        await sleep(x % 3);
        return x;
      },
      concurrency,
    )) {
      delivered++;
      if (delivered % 7 === 0) await sleep(2); // a slow reader now and then
    }
    assert.equal(delivered, 60);
    assert.equal(most, concurrency);
  });

  test(`${name}: does not pull the source while full (backpressure)`, async () => {
    const concurrency = 4;
    const state = countingSource(range(100));
    const it = map(state.source, async (x) => x, concurrency)[Symbol.asyncIterator]();
    assert.equal((await it.next()).done, false);
    await ticks(10);
    // One result taken: the ring was filled (4 pulls) and one slot freed but not yet refilled.
    assert.equal(state.pulled, concurrency);
    await it.next();
    await ticks(10);
    assert.equal(state.pulled, concurrency + 1);
    await it.return();
    assert.equal(state.closed, true);
  });

  test(`${name}: bad arguments fail with a code`, async () => {
    await assert.rejects(map([1], 'not a function', 2).next(), { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(map([1], (x) => x, 0).next(), { code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(map([1], (x) => x, 1.5).next(), { code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(map(42, (x) => x, 2).next(), { code: 'ERR_INVALID_ARG_TYPE' });
  });

  test(`${name}: break closes the source and leaves no rejection unhandled`, async () => {
    const state = countingSource(range(100));
    const unhandled = await unhandledDuring(async () => {
      for await (const v of map(
        state.source,
        async (x) => {
          await sleep(x === 0 ? 0 : 5);
          if (x > 0) throw new Error(`late ${x}`);
          return x;
        },
        8,
      )) {
        assert.equal(v, 0);
        break;
      }
    });
    assert.equal(state.closed, true);
    assert.deepEqual(unhandled, []);
  });
}

test('mapOrdered: a rejection is thrown in input order, earlier results first, other rejections handled', async () => {
  const state = countingSource(range(20));
  const out = [];
  let thrown;
  const unhandled = await unhandledDuring(async () => {
    try {
      for await (const v of mapOrdered(
        state.source,
        async (x) => {
          // Item 6 fails first in time, item 3 first in input order.
          await sleep(x === 3 ? 20 : x === 6 ? 0 : 2);
          if (x === 3 || x === 6 || x === 9) throw new Error(`item ${x}`);
          return x;
        },
        8,
      ))
        out.push(v);
    } catch (e) {
      thrown = e;
    }
  });
  assert.equal(thrown?.message, 'item 3');
  assert.deepEqual(out, [0, 1, 2]);
  assert.equal(state.closed, true);
  assert.deepEqual(unhandled, []);
});

test('mapUnordered: outputs in completion order, each once', async () => {
  const finished = [];
  const out = await collect(
    mapUnordered(
      range(10),
      async (x) => {
        await sleep((10 - x) * 3);
        finished.push(x);
        return x;
      },
      10,
    ),
  );
  assert.deepEqual(out, finished);
  assert.deepEqual(
    [...out].sort((a, b) => a - b),
    range(10),
  );
  assert.notDeepEqual(out, range(10));
});

test('mapUnordered: the first rejection in time is thrown, the others handled, the source closed', async () => {
  const state = countingSource(range(20));
  let thrown;
  const unhandled = await unhandledDuring(async () => {
    try {
      for await (const _ of mapUnordered(
        state.source,
        async (x) => {
          await sleep(x === 3 ? 20 : x === 6 ? 0 : 5);
          if (x === 3 || x === 6) throw new Error(`item ${x}`);
          return x;
        },
        8,
      ));
    } catch (e) {
      thrown = e;
    }
  });
  assert.equal(thrown?.message, 'item 6');
  assert.equal(state.closed, true);
  assert.deepEqual(unhandled, []);
});

for (const [name, makeSource] of [
  ['an array', (items) => items],
  ['an async generator', (items) => countingSource(items).source],
]) {
  test(`batchMap over ${name}: groups of maxSize in input order, one call each, the final partial group included`, async () => {
    const calls = [];
    const out = await collect(
      batchMap(
        makeSource(range(250)),
        async (items) => {
          calls.push(items);
          return items.length;
        },
        100,
      ),
    );
    assert.deepEqual(out, [100, 100, 50]);
    assert.deepEqual(calls.flat(), range(250));
    const exact = await collect(batchMap(makeSource(range(200)), async (items) => items.length, 100));
    assert.deepEqual(exact, [100, 100], 'no empty group at the end');
    assert.deepEqual(await collect(batchMap(makeSource([]), async (items) => items.length, 100)), []);
  });
}

test('batchMap: an error fails the stage and closes the source; bad arguments fail with a code', async () => {
  const state = countingSource(range(1000));
  const out = [];
  await assert.rejects(
    (async () => {
      for await (const v of batchMap(
        state.source,
        async (items) => {
          if (items[0] === 20) throw new Error('batch 3');
          return items[0];
        },
        10,
      ))
        out.push(v);
    })(),
    { message: 'batch 3' },
  );
  assert.deepEqual(out, [0, 10]);
  assert.equal(state.closed, true);
  assert.ok(state.pulled <= 31, `pulled ${state.pulled}`);
  await assert.rejects(batchMap([1], null, 2).next(), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(batchMap([1], (x) => x, 0).next(), { code: 'ERR_OUT_OF_RANGE' });
});

test('worker-thread baselines: a pinned worker and Piscina give the handler outputs, in order; a round trip gets its own answer', async () => {
  const { PinnedWorker, runPinned, runPiscina } = await import('../bench/baselines.mjs');
  const { Piscina } = await import('piscina');
  const input = range(5000);
  const averages = await runPinned('average', input, 64);
  assert.equal(averages.length, 5000);
  assert.equal(averages[4999], 4999 / 2);
  const pool = new Piscina({ filename: new URL('../bench/workers/tasks.mjs', import.meta.url).href, maxThreads: 2 });
  assert.deepEqual(await runPiscina(pool, 'average', range(300), 16), range(300));
  await pool.destroy();
  const w = new PinnedWorker('echo', 1);
  assert.equal(await w.roundTrip('x'), 'x');
  assert.equal(await w.roundTrip('y'), 'y');
  w.end();
  // (Read only after the round trips: each takes its own answer.)
  assert.deepEqual(await collect(w.outputs()), []);
});

// The floor (g): each promise it keeps, as velo-stream keeps it (bench/baselines.mjs).
const echo = async function* (events) {
  for await (const e of events) yield e;
};

test('floor: admission against maxConcurrent; a finished stream gives its slot back', async () => {
  const { FloorFn } = await import('../bench/baselines.mjs');
  const fn = new FloorFn(echo, { maxConcurrent: 2 });
  const a = fn.open();
  fn.open();
  assert.throws(() => fn.open(), { code: 'ERR_FLOOR_STREAM_LIMIT' });
  a.end();
  assert.deepEqual(await collect(a), []);
  const c = fn.open();
  await c.send(1);
  c.end();
  assert.deepEqual(await collect(c), [1]);
  assert.equal(fn.totals.opened, 3);
});

test('floor: a full input makes the sender wait until the handler takes an event', async () => {
  const { FloorFn, RESOLVED } = await import('../bench/baselines.mjs');
  let go;
  const gate = new Promise((resolve) => (go = resolve));
  const fn = new FloorFn(
    async function* (events) {
      await gate;
      yield* echo(events);
    },
    { capacity: 2 },
  );
  const s = fn.open();
  assert.equal(s.send(1), RESOLVED);
  assert.equal(s.send(2), RESOLVED);
  let third = false;
  const sent = s.send(3).then(() => (third = true));
  await ticks();
  assert.equal(third, false, 'the third send waits for room');
  assert.equal(s.bufferedIn, 2);
  go();
  await sent;
  s.end();
  assert.deepEqual(await collect(s), [1, 2, 3]);
});

test('floor: nobody reading pauses the handler at its yield once capacity outputs wait', async () => {
  const { FloorFn } = await import('../bench/baselines.mjs');
  let made = 0;
  const fn = new FloorFn(
    async function* () {
      for (;;) yield ++made;
    },
    { capacity: 4 },
  );
  const s = fn.open();
  await ticks(10);
  assert.equal(made, 4, 'four outputs wait, the handler held at the fourth yield');
  assert.equal(s.bufferedOut, 4);
  assert.equal((await s.next()).value, 1);
  await ticks(10);
  assert.equal(made, 5, 'a read makes room for one more');
  await s.cancel();
});

test('floor: a cancel runs the handler finally, waiting for input nobody sends or at its yield; pending reads end', async () => {
  const { FloorFn } = await import('../bench/baselines.mjs');
  const finallies = [];
  const fn = new FloorFn(
    async function* (events) {
      try {
        yield* echo(events);
        for (;;) yield 'after';
      } finally {
        finallies.push('ran');
      }
    },
    { capacity: 1 },
  );
  const waiting = fn.open();
  const read = waiting.next();
  await ticks();
  await waiting.cancel();
  assert.deepEqual(await read, { done: true, value: undefined }, 'the pending read ended');
  assert.deepEqual(finallies, ['ran'], 'parked on its input');
  const full = fn.open();
  full.end();
  await ticks();
  assert.equal(full.paused, true);
  await full.cancel();
  assert.deepEqual(finallies, ['ran', 'ran'], 'parked at its yield');
  assert.equal(fn.totals.cancelled, 2);
  assert.equal(fn.active, 0);
});

test('floor: an idle input ends as end() does, never before idleMs, with one shared timer for every stream', async () => {
  const { FloorFn } = await import('../bench/baselines.mjs');
  const ended = [];
  const fn = new FloorFn(
    async function* (events) {
      yield* echo(events);
      ended.push(performance.now());
      yield 'last';
    },
    { idleMs: 60 },
  );
  const timers = [];
  const { setInterval: realInterval, setTimeout: realTimeout } = globalThis;
  globalThis.setInterval = (...args) => timers.push(args) && realInterval(...args);
  globalThis.setTimeout = (...args) => timers.push(args) && realTimeout(...args);
  let streams;
  try {
    streams = Array.from({ length: 20 }, () => fn.open());
  } finally {
    Object.assign(globalThis, { setInterval: realInterval, setTimeout: realTimeout });
  }
  assert.equal(timers.length, 1, 'one timer for 20 streams');
  await sleep(30);
  const lastSend = performance.now();
  await streams[0].send('late');
  const outs = await Promise.all(streams.map((s) => collect(s)));
  assert.deepEqual(outs[0], ['late', 'last'], 'its final yield is delivered');
  assert.equal(ended.length, 20);
  assert.ok(ended[ended.length - 1] - lastSend >= 60, 'the stream sent to last idled out no earlier than idleMs after its send');
  assert.equal(fn.totals.completed, 20);
});

test('floor: a pending read keeps the process alive until the idle deadline ends its stream', async () => {
  const { spawnSync } = await import('node:child_process');
  const script = `
    import { FloorFn } from ${JSON.stringify(new URL('../bench/baselines.mjs', import.meta.url).href)};
    const fn = new FloorFn(async function* (events) { for await (const e of events) yield e; }, { idleMs: 100 });
    for await (const _ of fn.open());
    console.log('settled');`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(child.stdout.trim(), 'settled', child.stderr);
  assert.equal(child.status, 0);
});

test('floor: counts and queue waits per stream and per function; a handler error comes after the outputs before it', async () => {
  const { FloorFn } = await import('../bench/baselines.mjs');
  let go;
  const gate = new Promise((resolve) => (go = resolve));
  const fn = new FloorFn(async function* (events) {
    for await (const e of events) {
      if (e === 'boom') throw new Error('boom');
      if (e === 1) await gate;
      yield e;
    }
  });
  const s = fn.open();
  await s.send(1); // handed to the waiting handler: a wait of 0
  await s.send(2); // buffered while the handler waits on the gate
  await s.send(3);
  await sleep(5);
  go();
  assert.deepEqual([(await s.next()).value, (await s.next()).value, (await s.next()).value], [1, 2, 3]);
  const m = s.metrics();
  assert.equal(m.eventsIn, 3);
  assert.equal(m.eventsOut, 3);
  assert.equal(m.waits[0], 1, 'the handed-over event waited 0');
  assert.equal(
    m.waits.reduce((a, b) => a + b),
    3,
  );
  assert.ok(m.waits.slice(12).reduce((a, b) => a + b) === 2, 'the buffered ones waited the gate (>= 2 ms)');
  await s.send('boom');
  await assert.rejects(s.next(), { message: 'boom' });
  assert.deepEqual(await s.next(), { done: true, value: undefined });
  assert.equal(fn.totals.failed, 1);
  assert.equal(fn.totals.eventsIn, 4);
  assert.equal(
    fn.totals.waits.reduce((a, b) => a + b),
    4,
  );
  const t = fn.open();
  await t.send(1);
  await t.send('boom');
  await ticks();
  assert.equal((await t.next()).value, 1, 'the output before the error first');
  await assert.rejects(t.next(), { message: 'boom' });
});
