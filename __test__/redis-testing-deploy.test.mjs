// velo-stream/testing's rolling deploys and seeded key state: a user's test runs two releases of a handler, a deploy
// with `migrate`, a crash after it, and a key that starts from a seeded state, all on the virtual clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { testWorker } from 'velo-stream/testing';

// v1 keeps { total }, v2 keeps { sum, n }: each checkpoints after every event, and says which version made an output.
const v1 = streamFn(
  async function* (events, ctx) {
    let total = ctx.restored?.total ?? 0;
    for await (const e of events) {
      total += e;
      yield { v: 'v1', total };
      ctx.checkpoint({ total });
    }
  },
  { idleTimeout: 60_000 },
);
const v2 = (every) =>
  streamFn(
    async function* (events, ctx) {
      let { sum, n } = ctx.restored ?? { sum: 0, n: 0 };
      if (typeof sum !== 'number') throw new Error(`v2 restored ${JSON.stringify(ctx.restored)}`);
      for await (const e of events) {
        sum += e;
        n++;
        yield { v: 'v2', total: sum };
        if (n % every === 0) ctx.checkpoint({ sum, n });
      }
    },
    { idleTimeout: 60_000 },
  );

test('a deploy that migrates: v2 adopts the live v1 session from its checkpoint, keeps its total across a crash before its own first checkpoint, and v1 hands over', async () => {
  const tw = testWorker(v1, { version: 'v1', leaseTtl: 3000 });
  tw.send('cart', 5);
  tw.send('cart', 7);
  await tw.advance(100);
  // v2 checkpoints only every 100 events: a later owner must still restore the converted state, not v1's.
  tw.deploy(v2(100), { version: 'v2', migrate: (state) => ({ sum: state.total, n: 0 }) });
  await tw.advance(5000);
  tw.send('cart', 1);
  await tw.advance(100);
  tw.crash();
  await tw.advance(10_000);
  tw.send('cart', 2);
  await tw.advance(100);
  const values = tw.outputs().map((o) => o.value);
  assert.deepEqual(values, [
    { v: 'v1', total: 5 },
    { v: 'v1', total: 12 },
    { v: 'v2', total: 13 },
    { v: 'v2', total: 15 },
  ]);
  assert.deepEqual(
    tw.errors().filter((e) => e?.code !== 'ERR_VELO_REDIS_CONNECTION' && e?.code !== 'ERR_VELO_FENCED'),
    [],
  );
  await tw.stop('v1');
  await tw.close();
});

test('a deploy that migrates a session whose old version wrote past its checkpoint: each event answered once, whatever each version yields per event', async () => {
  // v1 checkpoints every third event; v2 answers each event with two outputs. v1 has written the outputs of events 4
  // and 5 after its checkpoint when v2 adopts the session: v2 runs them again to rebuild its state, writes nothing
  // for them, and answers event 6 with both of its outputs (by seq, it would write event 5's twice and lose one).
  const v1every3 = streamFn(
    async function* (events, ctx) {
      let total = ctx.restored?.total ?? 0;
      let n = ctx.restored?.n ?? 0;
      for await (const e of events) {
        total += e;
        n++;
        yield { v: 'v1', total };
        if (n % 3 === 0) ctx.checkpoint({ total, n });
      }
    },
    { idleTimeout: 60_000 },
  );
  const twice = streamFn(
    async function* (events, ctx) {
      let sum = ctx.restored.sum;
      for await (const e of events) {
        sum += e;
        yield { v: 'v2', total: sum };
        yield { v: 'v2', total: sum, again: true };
      }
    },
    { idleTimeout: 60_000 },
  );
  for (const crashFirst of [false, true]) {
    const tw = testWorker(v1every3, { version: 'v1', leaseTtl: 3000 });
    for (const e of [1, 2, 3, 4, 5]) tw.send('cart', e);
    await tw.advance(100);
    // A crash of v1 (kill -9) or a graceful hand-over: either way its last write was not its checkpoint.
    if (crashFirst) tw.crash();
    tw.deploy(twice, { version: 'v2', migrate: (state) => ({ sum: state.total }) });
    await tw.advance(5000);
    tw.send('cart', 6);
    await tw.advance(100);
    const outputs = tw.outputs();
    assert.deepEqual(
      outputs.map((o) => o.value),
      [1, 3, 6, 10, 15]
        .map((total) => ({ v: 'v1', total }))
        .concat([
          { v: 'v2', total: 21 },
          { v: 'v2', total: 21, again: true },
        ]),
      `crash first: ${crashFirst}`,
    );
    assert.deepEqual(
      outputs.map((o) => o.seq),
      [1, 2, 3, 4, 5, 6, 7],
    );
    await tw.stop('v1');
    await tw.close();
  }
});

test('a deploy that carries the old version: the live v1 session ends on v1, new sessions open on v2', async () => {
  const tw = testWorker(v1, { version: 'v1' });
  tw.send('a', 1);
  await tw.advance(100);
  tw.deploy(v2(1), { version: 'v2', versions: { v1 } });
  await tw.advance(5000);
  tw.send('a', 2);
  tw.send('b', 3);
  await tw.settle();
  const of = (key) =>
    tw
      .outputs()
      .filter((o) => o.key === key)
      .map((o) => o.value);
  assert.deepEqual(of('a'), [
    { v: 'v1', total: 1 },
    { v: 'v1', total: 3 },
  ]);
  assert.deepEqual(of('b'), [{ v: 'v2', total: 3 }]);
  await tw.close();
});

test('key state across releases: a key starts from a state kept by a version its worker runs (or migrates); a rollback that runs neither starts it without, reported', async () => {
  const counter = (v) =>
    streamFn(
      async function* (events, ctx) {
        let n = ctx.restored?.n ?? 0;
        const from = ctx.restored?.v ?? null;
        for await (const e of events) {
          n += e;
          yield { v, n, from };
          ctx.checkpoint({ v, n });
        }
      },
      { idleTimeout: 1000 },
    );
  const tw = testWorker(counter('v1'), { version: 'v1', keyState: { retention: 600_000 }, leaseTtl: 3000 });
  const last = () => tw.outputs().at(-1).value;
  tw.send('k', 1);
  await tw.advance(3000);
  // v2 carries v1: it reads v1's state (and converts it in its handler, as the docs advise).
  tw.deploy(counter('v2'), { version: 'v2', versions: { v1: counter('v1') } });
  await tw.advance(5000);
  await tw.stop('v1');
  tw.send('k', 2);
  await tw.advance(3000);
  assert.deepEqual(last(), { v: 'v2', n: 3, from: 'v1' });
  // A rollback to v1's code under a new name, not carrying v2: it must not hand v2's state to a handler that
  // cannot read it. The session starts without it, and onError says why.
  tw.deploy(counter('v1'), { version: 'v1-again' });
  await tw.advance(5000);
  await tw.stop('v2');
  await tw.advance(5000);
  tw.send('k', 4);
  await tw.advance(3000);
  assert.deepEqual(last(), { v: 'v1', n: 4, from: null });
  assert.deepEqual(
    tw
      .errors()
      .filter((e) => e?.code === 'ERR_VELO_KEY_STATE_VERSION')
      .map((e) => e.message.match(/by version "(\w+)"/)?.[1]),
    ['v2'],
  );
  // A release with migrate converts a state kept by a version it does not run.
  tw.deploy(counter('v3'), { version: 'v3', migrate: (state, from) => ({ ...state, n: state.n * 10, v: `${from}>v3` }) });
  await tw.advance(5000);
  await tw.stop('v1-again');
  await tw.advance(5000);
  tw.send('k', 5);
  await tw.advance(3000);
  assert.deepEqual(last(), { v: 'v3', n: 45, from: 'v1-again>v3' });
  await tw.close();
});

test('deploy() and stop() refuse what they cannot run, with stable codes', async () => {
  const plain = testWorker(v1);
  assert.throws(() => plain.deploy(v2(1), { version: 'v2' }), { code: 'ERR_INVALID_STATE' });
  await plain.close();
  const tw = testWorker(v1, { version: 'v1' });
  assert.throws(() => tw.deploy(v2(1), { version: '__proto__' }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => tw.deploy(v2(1), null), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => tw.deploy({}, { version: 'v2' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => tw.deploy(v2(1), { version: 'v2' }, 0), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => tw.stop('v9'), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => tw.deploy(v2(1), { version: 'v2', migrat: (s) => s }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /unknown release option "migrat"/,
  });
  // An async migrate can only return promises: refused when the release is given, as redisWorker() refuses it.
  assert.throws(() => tw.deploy(v2(1), { version: 'v2', migrate: async (state) => state }), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: /synchronously/,
  });
  assert.throws(() => testWorker(v1, { version: 'v1', migrate: async (state) => state }), { code: 'ERR_INVALID_ARG_TYPE' });
  await tw.close();
});

test("seedState(): a key's next session starts from the seeded state; without keyState it is refused", async () => {
  const counter = streamFn(
    async function* (events, ctx) {
      let n = ctx.restored?.n ?? 0;
      for await (const e of events) {
        n += e;
        yield n;
        ctx.checkpoint({ n });
      }
    },
    { idleTimeout: 1000 },
  );
  const tw = testWorker(counter, { keyState: { retention: 60_000 } });
  tw.seedState('k', { n: 40 });
  assert.deepEqual(tw.readState('k')?.state, { n: 40 });
  tw.send('k', 2);
  await tw.settle();
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [42],
  );
  assert.throws(() => tw.seedState('k', { n: 1 }, 0), { code: 'ERR_OUT_OF_RANGE' });
  await tw.close();
  const plain = testWorker(counter);
  assert.throws(() => plain.seedState('k', { n: 1 }), { code: 'ERR_INVALID_STATE' });
  await plain.close();
});

test("deploy() with a release's debounce: sessions it opens are debounced, a session opened before keeps none; hostile values refused", async () => {
  // Each event is answered with the events seen so far: a debounced session sees only the last of a burst.
  const seen = (v) =>
    streamFn(
      async function* (events) {
        const got = [];
        for await (const e of events) {
          got.push(e);
          yield { v, got: [...got] };
        }
      },
      { idleTimeout: 60_000 },
    );
  const tw = testWorker(seen('v1'), { version: 'v1', leaseTtl: 3000 });
  tw.send('old', 1);
  await tw.advance(100);
  tw.deploy(seen('v2'), { version: 'v2', versions: { v1: seen('v1') }, debounce: { wait: 50 } });
  await tw.advance(5000);
  await tw.stop('v1');
  // 'old' opened before the deploy, without debounce: the new owner delivers each of its events.
  tw.send('old', 2);
  tw.send('old', 3);
  // 'new' opens on v2 with debounce: a burst of three is one event, the last.
  tw.send('new', 1);
  tw.send('new', 2);
  tw.send('new', 3);
  await tw.advance(1000);
  const by = (key) =>
    tw
      .sessions()
      .filter((s) => s.sid.startsWith(`${key}@`))
      .flatMap((s) => s.outputs.map((o) => o.value));
  assert.deepEqual(by('old'), [
    { v: 'v1', got: [1] },
    { v: 'v1', got: [1, 2] },
    { v: 'v1', got: [1, 2, 3] },
  ]);
  assert.deepEqual(by('new'), [{ v: 'v2', got: [3] }]);
  for (const debounce of [{ wait: 0 }, { wait: 50, edge: 'middle' }, { wait: 50, every: 1 }, 5])
    assert.throws(() => tw.deploy(seen('v3'), { version: 'v3', debounce }), {
      code: /ERR_INVALID_ARG_(VALUE|TYPE)|ERR_OUT_OF_RANGE/,
    });
  await tw.close();
});

test('stop(version) stops every release deployed with that version, also one deployed twice', async () => {
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 60_000 },
  );
  const w = testWorker(echo, { version: 'v1', leaseTtl: 3000 });
  try {
    w.deploy(echo, { version: 'v2' });
    w.deploy(echo, { version: 'v2' });
    await w.advance(5000);
    await w.stop('v1');
    await w.stop('v2');
    w.send('k', 'after every release stopped');
    await w.advance(10_000);
    assert.deepEqual(
      w.outputs().map((o) => o.value),
      [],
    );
  } finally {
    await w.close();
  }
});
