// pipe(): stages linked by bounded buffers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamLimitError, streamFn } from 'velo-stream';
import { collect, settle } from './helpers/util.mjs';

const add = (k) => streamFn(async function* add(events) {
  for await (const e of events) yield e + k;
}, { name: `add${k}`, buffer: 4 });

test('a.pipe(b).pipe(c) runs each event through every stage in order', async () => {
  const p = add(1).pipe(add(10)).pipe(async function* times2(events) {
    for await (const e of events) yield e * 2;
  });
  assert.equal(p.name, 'add1|add10|times2');
  const input = Array.from({ length: 1000 }, (_, i) => i);
  assert.deepEqual(await p.run(input), input.map((e) => (e + 11) * 2));
  const s = p.open();
  await s.send(5);
  assert.equal(await s.recv(), 32);
  s.end();
  assert.deepEqual(await collect(s), []);
  assert.equal(s.state, 'done');
  await settle(); // a pipe's own counters follow its stages' endings by a few jobs
  assert.deepEqual(p.stats(), { open: 0, opened: 2, completed: 2, failed: 0, cancelled: 0, rejected: 0 });
});

test('one instance per stage per stream; end() flows down so every stage finishes', async () => {
  const log = [];
  const stage = (name) => streamFn(async function* (events, ctx) {
    log.push(`${name} open ${ctx.id}`);
    let n = 0;
    for await (const e of events) {
      n++;
      yield e;
    }
    log.push(`${name} end`);
    yield `${name}:${n}`;
  }, { name });
  const p = stage('a').pipe(stage('b'));
  const out = await p.run([1, 2]);
  assert.deepEqual(out, [1, 2, 'a:2', 'b:3']);
  assert.equal(log.filter((l) => l.startsWith('a open')).length, 1);
  assert.equal(log.filter((l) => l.startsWith('b open')).length, 1);
  assert.deepEqual(log.filter((l) => l.endsWith('end')), ['a end', 'b end']);
});

test('backpressure holds end to end: a stalled consumer stops the first stage', async () => {
  let produced = 0;
  const src = streamFn(async function* () {
    for (;;) yield ++produced;
  }, { buffer: 4 });
  const p = src.pipe(add(0)).pipe(add(0));
  const s = p.open();
  await settle(20);
  // 3 stages x (4 in + 4 out) plus one paused value per stage and the links' batches
  assert.ok(produced <= 40, `first stage ran ${produced} ahead`);
  const first = await s.recv();
  assert.equal(first, 1);
  await s.cancel();
});

test('an error in any stage cancels all stages and reaches the consumer', async () => {
  for (const failAt of [0, 1, 2]) {
    const boom = new Error(`stage ${failAt}`);
    const finals = [];
    const stage = (i) => streamFn(async function* (events) {
      try {
        for await (const e of events) {
          if (i === failAt && e === 3) throw boom;
          yield e;
        }
      } finally {
        finals.push(i);
      }
    });
    const p = stage(0).pipe(stage(1)).pipe(stage(2));
    await assert.rejects(p.run([1, 2, 3, 4, 5]), (e) => e === boom, `failing stage ${failAt}`);
    await settle(5);
    assert.deepEqual(finals.sort(), [0, 1, 2], 'every stage finished');
    assert.equal(p.stats().failed, 1);
    const s = p.open();
    for (const e of [1, 2, 3]) s.send(e).catch(() => {});
    await assert.rejects(collect(s), (e) => e === boom);
    assert.equal(s.state, 'failed');
  }
});

test('each stage counts against its own function maxConcurrent', async () => {
  const a = add(1);
  const b = streamFn(async function* (events) {
    for await (const e of events) yield e;
  }, { maxConcurrent: 1 });
  const p = a.pipe(b);
  const s = p.open();
  assert.equal(a.stats().open, 1);
  assert.equal(b.stats().open, 1);
  assert.throws(() => p.open(), StreamLimitError);
  assert.equal(a.stats().open, 1, 'the first stage opened for the refused pipe was given back');
  assert.equal(p.stats().rejected, 1);
  await s.cancel();
  assert.equal(a.stats().open + b.stats().open, 0);
  await settle();
  assert.equal(p.stats().cancelled, 1);
});

test('cancel and break on a pipe stop every stage', async () => {
  const finals = [];
  const stage = (i) => streamFn(async function* (events) {
    try {
      for await (const e of events) yield e;
    } finally {
      finals.push(i);
    }
  });
  const p = stage(0).pipe(stage(1)).pipe(stage(2));
  const s = p.open();
  await s.send(1);
  for await (const v of s) {
    assert.equal(v, 1);
    break;
  }
  assert.equal(s.state, 'cancelled');
  assert.deepEqual(finals.sort(), [0, 1, 2]);
});

test("a pipe's idle clock is its first stage's: a slow stage does not make the next one time out", async () => {
  const slow = streamFn(async function* slow(events) {
    for await (const e of events) {
      await new Promise((r) => setTimeout(r, 80)); // longer than the stages' idle timeout
      yield e;
    }
  }, { idleTimeout: 30 });
  const next = streamFn(async function* next(events) {
    for await (const e of events) yield e * 10;
  }, { idleTimeout: 30 });
  const s = slow.pipe(next).open();
  await s.send(1);
  await s.send(2);
  // No end(): the first stage's idle timeout ends the input; every output still arrives.
  assert.deepEqual(await collect(s), [10, 20]);
  assert.equal(s.state, 'done');
});
