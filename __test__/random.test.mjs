// Random interleavings of the public API against the expected outputs: reads,
// in call order, get exactly the outputs the handler makes, in order, once
// each; nothing hangs; every stream ends with its slot and values given back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamClosedError, streamFn } from 'velo-stream';
import { settle } from './helpers/util.mjs';

/** The handler: e, and -e after multiples of 3; sometimes it awaits. */
const transform = (e) => (e % 3 === 0 ? [e, -e] : [e]);
const handler = async function* (events) {
  for await (const e of events) {
    if (e % 5 === 0) await new Promise((r) => setImmediate(r));
    else if (e % 7 === 0) await null;
    for (const o of transform(e)) yield typeof e === 'number' && e % 2 ? { o } : o;
  }
};
const value = (x) => (typeof x === 'object' && x !== null ? x.o : x);

function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 2246822519) + 0x9e3779b9) >>> 0) / 2 ** 32);
}

const passThrough = async function* (events) {
  for await (const e of events) yield e;
};
const single = (buffer) => streamFn(handler, { buffer, idleTimeout: 0 });
const piped = (buffer) =>
  streamFn(handler, { buffer, idleTimeout: 0 })
    .pipe(streamFn(passThrough, { buffer: Math.max(1, buffer - 1) }))
    .pipe(passThrough);

async function trial(seed, make) {
  const rand = rng(seed);
  const fn = make(1 + Math.floor(rand() * 5));
  const s = fn.open();
  const it = s[Symbol.asyncIterator]();
  const sends = [];
  const reads = []; // in call order: { kind, promise }
  // Reads and sends are checked at the end; mark them handled now, so a
  // rejection before then is not reported as unhandled.
  const handled = (p) => (p.catch(() => {}), p);
  let next = 0;
  let beforeEnd = -1; // events sent before end(): those must be accepted, the rest refused
  let ended = false;
  let cancelled = false;
  const ops = 20 + Math.floor(rand() * 150);
  for (let i = 0; i < ops && !cancelled; i++) {
    const r = rand();
    if (r < 0.4) sends.push(handled(s.send(next++)));
    else if (r < 0.55) reads.push({ kind: 'recv', promise: handled(s.recv()) });
    else if (r < 0.7) reads.push({ kind: 'iter', promise: handled(it.next()) });
    else if (r < 0.9) await settle(1);
    else if (r < 0.97 && !ended) {
      s.end();
      ended = true;
      beforeEnd = next;
    } else if (r >= 0.995) {
      await s.cancel();
      cancelled = true;
    }
  }
  if (!cancelled) s.end();
  if (!ended) beforeEnd = next;
  // Drain: read until the stream says there is nothing more.
  for (;;) {
    const p = handled(s.recv());
    reads.push({ kind: 'recv', promise: p });
    const r = await Promise.race([p.then(() => 'value', () => 'end'), new Promise((res) => setTimeout(() => res('hang'), 5000).unref())]);
    if (r === 'hang') throw new Error(`seed ${seed}: a read hung`);
    if (r === 'end') break;
  }
  const settled = await Promise.race([
    Promise.allSettled([...sends, ...reads.map((x) => x.promise)]),
    new Promise((res) => setTimeout(() => res('hang'), 5000).unref()),
  ]);
  assert.notEqual(settled, 'hang', `seed ${seed}: a promise never settled`);

  const got = [];
  for (const { kind, promise } of reads) {
    const r = await promise.then((v) => ({ v }), (e) => ({ e }));
    if ('e' in r) {
      assert.ok(r.e instanceof StreamClosedError, `seed ${seed}: read rejected with ${r.e}`);
      continue;
    }
    if (kind === 'iter') {
      if (!r.v.done) got.push(value(r.v.value));
    } else got.push(value(r.v));
  }
  const accepted = (await Promise.allSettled(sends)).filter((x) => x.status === 'fulfilled').length;
  const expected = Array.from({ length: accepted }, (_, e) => transform(e)).flat();
  if (cancelled) {
    assert.deepEqual(got, expected.slice(0, got.length), `seed ${seed}: outputs after cancel are a prefix`);
  } else {
    assert.equal(accepted, beforeEnd, `seed ${seed}: every send before end() accepted, none after`);
    assert.deepEqual(got, expected, `seed ${seed}: outputs in order, once each`);
  }
  await settle(2);
  assert.equal(fn.stats().open, 0, `seed ${seed}: slot given back`);
}

test('random interleavings of send, recv, iteration, end and cancel', async () => {
  const { tableSize } = await import('#testing');
  const table = tableSize();
  for (let seed = 1; seed <= 300; seed++) await trial(seed, single);
  assert.equal(tableSize(), table, 'no value-table entry left');
});

test('the same through a three-stage pipe', async () => {
  const { tableSize } = await import('#testing');
  const table = tableSize();
  for (let seed = 1; seed <= 200; seed++) await trial(seed, piped);
  await settle(3);
  assert.equal(tableSize(), table, 'no value-table entry left');
});
