// Per-key state beyond a session (`keyState`) in the session-engine simulator (`velo-stream/testing`): a key's next
// session starts from its last session's last checkpoint; a throw keeps the checkpoint before the step that threw,
// a return the one of its last step; retention on the virtual clock; readState/deleteState; checkDeterminism with a
// crash after every commit; and seeded runs (faults: crashes, pauses, lost and refused calls) against the reference
// model (helpers/session-model.mjs, `limits.keyState`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { checkDeterminism, testWorker } from 'velo-stream/testing';
import { runScenario, scenario } from './helpers/redis-sim.mjs';

const DAY = 86_400_000;

/** A cart: each event adds an item; checkpoints after each unless `{ skip: true }`; `{ end: 'return' | 'throw' }`. */
const cart = (idleTimeout = 1000) =>
  streamFn(
    async function* cart(events, ctx) {
      let state = ctx.restored ?? { items: [] };
      for await (const e of events) {
        state = { items: [...state.items, e.item] };
        yield state.items.join(',');
        if (!e.skip) ctx.checkpoint(state);
        if (e.end === 'return') return;
        if (e.end === 'throw') throw Object.assign(new Error('boom'), { code: 'ERR_CART' });
      }
    },
    { idleTimeout },
  );

const values = (tw) => tw.sessions().map((s) => s.outputs.map((o) => o.value ?? o.error.code));

test('testWorker: the next session of a key starts from the state its last session kept at its idle end; readState/deleteState', async () => {
  const tw = testWorker(cart(), { keyState: { retention: DAY } });
  try {
    tw.send('u', { item: 'a' });
    tw.send('u', { item: 'b' });
    await tw.advance(2000);
    const kept = tw.readState('u');
    assert.deepEqual(kept.state, { items: ['a', 'b'] });
    assert.equal(kept.sid, tw.sessions()[0].sid);
    assert.equal(kept.expiresIn, DAY - 1000, 'kept for the retention from the commit that ended the session (its idle end)');
    tw.send('u', { item: 'c' });
    tw.send('v', { item: 'x' });
    await tw.settle();
    assert.deepEqual(values(tw), [['a', 'a,b'], ['a,b,c'], ['x']]);
    assert.equal(tw.deleteState('u'), true);
    assert.equal(tw.deleteState('u'), false);
    assert.equal(tw.readState('u'), undefined);
    tw.send('u', { item: 'd' });
    await tw.settle();
    assert.deepEqual(values(tw).at(-1), ['d'], 'deleted: afresh');
    assert.deepEqual(tw.errors(), []);
    assert.throws(() => tw.readState(5), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => tw.deleteState(''), { code: 'ERR_INVALID_ARG_VALUE' });
  } finally {
    await tw.close();
  }
  assert.throws(() => tw.deleteState('u'), { code: 'ERR_INVALID_STATE' });
});

test('retention on the virtual clock: a state expires `retention` after the commit that kept it, not before', async () => {
  const tw = testWorker(cart(100), { keyState: { retention: 10_000 } });
  try {
    tw.send('u', { item: 'a' });
    await tw.advance(100);
    // The idle end is committed at 100 ms (the log's clock reaches it): kept until 10 100 ms.
    assert.equal(tw.readState('u').expiresIn, 10_000);
    await tw.advance(10_000);
    assert.equal(tw.readState('u').expiresIn, 0, 'still there at its expiry');
    tw.send('u', { item: 'b' });
    await tw.settle();
    assert.deepEqual(values(tw).at(-1), ['a,b'], 'a session opened at the expiry starts from it');
    await tw.advance(10_101);
    assert.equal(tw.readState('u'), undefined, 'expired');
    tw.send('u', { item: 'c' });
    await tw.settle();
    assert.deepEqual(values(tw).at(-1), ['c'], 'afresh');
  } finally {
    await tw.close();
  }
});

test('what a session keeps: its last checkpoint (one of a step that returned too), not one of the step that threw; with none, the state it started from; never checkpointed, nothing', async () => {
  const tw = testWorker(cart(), { keyState: { retention: DAY } });
  try {
    // return: its last step's checkpoint counts.
    tw.send('r', { item: 'a' });
    tw.send('r', { item: 'b', end: 'return' });
    // throw: the checkpoint of the step that threw does not count.
    tw.send('t', { item: 'a' });
    tw.send('t', { item: 'b', end: 'throw' });
    // a session that never checkpointed keeps nothing.
    tw.send('n', { item: 'a', skip: true });
    await tw.settle();
    assert.deepEqual(tw.readState('r').state, { items: ['a', 'b'] });
    assert.deepEqual(tw.readState('t').state, { items: ['a'] });
    assert.equal(tw.readState('n'), undefined);
    // A session that started from a state and checkpointed nothing keeps that state (again, for the retention).
    tw.send('r', { item: 'c', skip: true });
    await tw.settle();
    assert.deepEqual(tw.readState('r').state, { items: ['a', 'b'] });
    assert.equal(tw.readState('r').sid, tw.sessions().at(-1).sid, 'kept again by the later session');
    tw.send('t', { item: 'c' });
    await tw.settle();
    assert.deepEqual(
      tw.sessions().filter((s) => s.key === 't').map((s) => s.outputs.map((o) => o.value ?? o.error.code)),
      [['a', 'a,b', 'ERR_CART'], ['a,c']],
    );
  } finally {
    await tw.close();
  }
});

test('a crash (kill -9 of the owning process) keeps every key state: the kept ones stay, a live session is restored and keeps its own', async () => {
  const tw = testWorker(cart(1000), { keyState: { retention: DAY }, leaseTtl: 3000 });
  try {
    tw.send('u', { item: 'a' });
    await tw.advance(2000);
    tw.send('u', { item: 'b' });
    tw.send('v', { item: 'x' });
    await tw.advance(10);
    tw.crash();
    await tw.settle();
    tw.send('u', { item: 'c' });
    tw.send('v', { item: 'y' });
    await tw.settle();
    assert.deepEqual(values(tw), [['a'], ['a,b'], ['x'], ['a,b,c'], ['x,y']]);
  } finally {
    await tw.close();
  }
});

test('checkDeterminism: sessions that start from their key state make the same outputs with a crash after any commit', async () => {
  const events = [];
  for (let round = 0; round < 3; round++)
    for (const key of ['a', 'b', 'c'])
      for (let i = 0; i < 3; i++) events.push({ key, event: { item: `${key}${round}${i}`, skip: i === 1 }, at: Date.UTC(2024, 0, 1) + round * 5000 + i * 10 });
  const report = await checkDeterminism(cart(1000), events, { keyState: { retention: DAY } });
  assert.equal(report.ok, true, report.message);
  assert.ok(report.crashes >= 9, `crash points tried (${report.crashes})`);
  // A handler that counts sessions outside its state is caught: its outputs after a crash differ.
  let opened = 0;
  const leaky = streamFn(
    async function* leaky(events, ctx) {
      let state = ctx.restored ?? { n: 0 };
      const session = ++opened;
      for await (const e of events) {
        state = { n: state.n + 1 };
        yield `${e.item} ${state.n} ${session}`;
        ctx.checkpoint(state);
      }
    },
    { idleTimeout: 1000 },
  );
  const bad = await checkDeterminism(leaky, events, { keyState: { retention: DAY } });
  assert.equal(bad.ok, false);
});

test('seeds 1-150 with keyState: each run, faulty (crashes, pauses, lost and refused calls, a slow handler) and calm, makes the sessions and outputs of the model, every session starting from its key state', async () => {
  const failed = [];
  for (let seed = 1; seed <= 150; seed++) {
    const s = scenario(seed);
    s.limits.keyState = { retention: DAY };
    const result = await runScenario(seed, s);
    if (!result.ok) failed.push(`seed ${seed}: ${result.problems.slice(0, 3).join('; ')}`);
  }
  assert.deepEqual(failed, []);
});
