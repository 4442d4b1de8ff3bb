// What the in-memory log does beyond the Redis one's contract (redis-log-contract.test.mjs holds that): its
// virtual clock's order, and the faults a seeded policy injects per call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryLog, MemoryStore, ProcessClock, VirtualClock, reportable, runUntil, sleepOn } from '#testing';

const T0 = 1_700_000_000_000;

function setup(faults) {
  const clock = new VirtualClock(T0);
  const store = new MemoryStore(1, clock);
  return { clock, store, log: new MemoryLog(store, { faults }) };
}

test('the virtual clock: immediates before timers, timers by due time then by creation, time moves only by step', async () => {
  const clock = new VirtualClock(T0);
  const seen = [];
  clock.setTimeout(() => seen.push(['b', clock.now()]), 10);
  clock.setTimeout(() => seen.push(['a', clock.now()]), 5);
  clock.setTimeout(() => seen.push(['c', clock.now()]), 10);
  const cleared = clock.setTimeout(() => seen.push(['cleared']), 1);
  clock.clearTimeout(cleared);
  clock.setImmediate(() => seen.push(['i1', clock.now()]));
  clock.setImmediate(() => {
    seen.push(['i2', clock.now()]);
    clock.setTimeout(() => seen.push(['d', clock.now()]), 0);
  });
  assert.equal(clock.next(), T0 + 5);
  while (clock.step());
  assert.deepEqual(seen, [
    ['i1', T0],
    ['i2', T0],
    ['d', T0],
    ['a', T0 + 5],
    ['b', T0 + 10],
    ['c', T0 + 10],
  ]);
  assert.equal(clock.next(), undefined);
  await assert.rejects(runUntil(clock, new Promise(() => {})), /Nothing is left to run/);
});

test('a paused process: its callbacks wait for the pause to end and stay work or keep-alive as they were', () => {
  // A callback a pause held (a permit's grant, a handler's delay) is still work: a quiet span of the simulation
  // (`VirtualClock.postpone`) must not move it, or the process would sit on a granted permit for the span.
  const base = new VirtualClock(T0);
  const process = new ProcessClock(base);
  const seen = [];
  process.pause(T0 + 100);
  process.setImmediate(() => seen.push(['immediate', base.now()]));
  process.setTimeout(() => seen.push(['work', base.now()]), 10);
  process.setTimeout(() => seen.push(['keep-alive', base.now()]), 20, true);
  base.step(); // the immediate, held till the pause ends
  assert.deepEqual(seen, []);
  while (base.next() !== undefined && base.next() < T0 + 100) base.step();
  assert.equal(base.nextFixed(), T0 + 100, 'the held work is still work');
  base.postpone(0);
  while (base.step());
  // Each held callback keeps its place among those due at once: the timers' from when they were made, the
  // immediate's from when it was first held (after them; as Node, after a busy turn, runs the timers due first).
  assert.deepEqual(seen, [
    ['work', T0 + 100],
    ['keep-alive', T0 + 100],
    ['immediate', T0 + 100],
  ]);
  process.kill();
  process.setTimeout(() => seen.push(['after kill']), 1);
  while (base.step());
  assert.equal(seen.length, 3);
});

test('entry ids: the clock ms, or the next seq while the clock stands still; kept monotonic after a trim', async () => {
  const { clock, store, log } = setup();
  assert.deepEqual(
    store.append(0, [
      ['a', '1'],
      ['b', '2'],
    ]),
    [`${T0}-0`, `${T0}-1`],
  );
  await runUntil(clock, sleepOn(clock, 3));
  assert.deepEqual(store.append(0, [['a', '3']]), [`${T0 + 3}-0`]);
  const lease = await runUntil(clock, log.acquire(0, 'w', 1000));
  await runUntil(clock, log.read(lease, '>', 10));
  await runUntil(clock, log.commit(lease, { outputs: [], acks: store.input(0).map((e) => e.id), ended: [] }));
  assert.equal(await runUntil(clock, log.trim(lease)), 2, 'trimmed to the last delivered');
  assert.deepEqual(store.append(0, [['a', '4']]), [`${T0 + 3}-1`]);
});

test('a reply comes at a later step, never within the caller\u2019s turn', async () => {
  const { clock, log } = setup();
  let replied = false;
  void log.heartbeat('w', 1000).then(() => (replied = true));
  await Promise.resolve();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(replied, false, 'no reply before the clock steps');
  clock.step();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(replied, true);
});

test('faults: a delayed reply, a reply lost after the call applied, a call refused before it applies', async () => {
  const plan = [];
  const calls = [];
  const { clock, store, log } = setup((call, partition) => {
    calls.push([call, partition]);
    return plan.shift();
  });
  const lease = await runUntil(clock, log.acquire(0, 'w', 10_000));
  store.append(0, [['a', '1']]);

  plan.push({ kind: 'delay', ms: 250 });
  const before = clock.now();
  const read = await runUntil(clock, log.read(lease, '>', 10));
  assert.equal(read.entries.length, 1);
  assert.equal(clock.now(), before + 250, 'the reply came 250 ms later');

  const output = { sid: `a@${read.entries[0].id}`, seq: 1, key: 'a', payload: 'x' };
  plan.push({ kind: 'lost' });
  const lost = await runUntil(
    clock,
    log.commit(lease, { outputs: [output], acks: [read.entries[0].id], ended: [], serial: 1 }),
  ).catch((e) => e);
  assert.equal(lost.name, 'SocketClosedUnexpectedlyError');
  assert.equal(reportable(lost).code, 'ERR_VELO_REDIS_CONNECTION', 'the worker takes it for a lost connection');
  assert.equal(store.outputs(0).length, 1, 'the lost commit applied');
  assert.deepEqual(store.leftovers(0).pending, [], 'and acked');
  const retry = await runUntil(clock, log.commit(lease, { outputs: [output], acks: [read.entries[0].id], ended: [], serial: 1 }));
  assert.deepEqual(retry.ids, [store.outputs(0)[0][0].toString()], 'its retry gets the ids it wrote');

  plan.push({ kind: 'refused' });
  const refused = await runUntil(clock, log.markClose(lease, 'a', 'x')).catch((e) => e);
  assert.equal(refused.name, 'SocketClosedUnexpectedlyError');
  assert.equal(store.input(0).length, 1, 'the refused call wrote nothing');
  assert.deepEqual(calls.slice(1), [
    ['read', 0],
    ['commit', 0],
    ['commit', 0],
    ['markClose', 0],
  ]);
});

test('a stale owner: its lease runs out on the virtual clock, and every fenced call is refused', async () => {
  const { clock, store, log } = setup();
  const lease = await runUntil(clock, log.acquire(0, 'w', 100));
  await runUntil(clock, sleepOn(clock, 100));
  assert.equal(store.holder(0), lease.token, 'held up to its last ms');
  await runUntil(clock, sleepOn(clock, 1));
  assert.equal(store.holder(0), null);
  const error = await runUntil(clock, log.commit(lease, { outputs: [], acks: [], ended: [] })).catch((e) => e);
  assert.equal(error.code, 'ERR_VELO_FENCED');
});

test('a severed connection (its process gone) applies nothing and answers nothing, also replies in flight', async () => {
  const { clock, store, log } = setup();
  const lease = await runUntil(clock, log.acquire(0, 'w', 10_000));
  store.append(0, [['a', '1']]);
  let answered = false;
  const inFlight = log.read(lease, '>', 10).finally(() => (answered = true));
  const waiting = log.wait(new Map([[0, `${clock.now()}-0`]]), 1000).finally(() => (answered = true));
  log.sever();
  void log.markClose(lease, 'a', 'x').finally(() => (answered = true));
  while (clock.step()) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(answered, false);
  assert.equal(store.input(0).length, 1, 'no marker written after the cut');
  assert.deepEqual(store.leftovers(0).pending, [store.input(0)[0].id], 'the read applied before the cut stays');
  void inFlight;
  void waiting;
});

test('trimOutputs keeps exactly the newest maxLen outputs', async () => {
  const { clock, store, log } = setup();
  const lease = await runUntil(clock, log.acquire(0, 'w', 10_000));
  const outputs = [1, 2, 3, 4, 5].map((seq) => ({ sid: 's', seq, key: 'a', payload: String(seq) }));
  await runUntil(clock, log.commit(lease, { outputs, acks: [], ended: [] }));
  assert.equal(await runUntil(clock, log.trimOutputs(lease, false, 2)), 3);
  assert.deepEqual(
    store.outputs(0).map(([, list]) => list[3].toString()),
    ['4', '5'],
  );
  assert.equal(await runUntil(clock, log.trimOutputs(lease, true, 0)), 0, 'acked: no group reads a memory log');
});
