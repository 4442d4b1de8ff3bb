// fn.sessions(): one stream per key, a merged output, idle end, limits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamClosedError, StreamLimitError, streamFn } from 'velo-stream';
import { settle } from './helpers/util.mjs';
import { until } from './helpers/server.mjs';

const counter = streamFn(async function* counter(events, ctx) {
  let n = 0;
  for await (const e of events) yield { n: ++n, e, id: ctx.id };
  yield { closed: n };
});

async function take(iterator, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push((await iterator.next()).value);
  return out;
}

test('one stream per key, state kept across sends, outputs merged as { key, value }', async () => {
  const sessions = counter.sessions({ idleTimeout: 0 });
  const it = sessions[Symbol.asyncIterator]();
  await sessions.send('alice', 'a1');
  await sessions.send('bob', 'b1');
  await sessions.send('alice', 'a2');
  assert.equal(sessions.size, 2);
  assert.notEqual(sessions.get('alice').id, sessions.get('bob').id);
  const items = await take(it, 3);
  const alice = items.filter((x) => x.key === 'alice').map((x) => x.value.n);
  assert.deepEqual(alice, [1, 2], 'alice has her own running count');
  assert.deepEqual(items.filter((x) => x.key === 'bob').map((x) => x.value.e), ['b1']);
  const closing = sessions.close();
  const rest = [];
  for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
  await closing;
  assert.deepEqual(rest.map((x) => x.value.closed).sort(), [1, 2]);
  assert.equal(sessions.size, 0);
  await assert.rejects(sessions.send('carol', 1), StreamClosedError);
});

test('a session ends on its idle timeout and frees its key; the next send opens a new one', async () => {
  const sessions = counter.sessions({ idleTimeout: 30 });
  const it = sessions[Symbol.asyncIterator]();
  await sessions.send('dev1', 1);
  const firstId = sessions.get('dev1').id;
  assert.deepEqual((await it.next()).value.value.n, 1);
  assert.deepEqual((await it.next()).value, { key: 'dev1', value: { closed: 1 } }, 'ended by idle timeout');
  await until(() => sessions.size === 0, 2000, 'the key to be freed');
  await sessions.send('dev1', 2);
  assert.notEqual(sessions.get('dev1').id, firstId);
  assert.equal((await it.next()).value.value.n, 1, 'fresh state');
  await it.return();
});

test('maxConcurrent caps live sessions with StreamLimitError', async () => {
  const sessions = counter.sessions({ maxConcurrent: 2, idleTimeout: 0 });
  await sessions.send('a', 1);
  await sessions.send('b', 1);
  await assert.rejects(sessions.send('c', 1), StreamLimitError);
  await sessions.send('a', 2); // an existing session still takes events
  sessions.end('a');
  await until(() => sessions.size === 1, 2000, 'a to end');
  const drain = (async () => {
    for await (const _ of sessions);
  })();
  await sessions.send('c', 1);
  await sessions.close();
  await drain;
});

test('a session whose outputs are not read pauses; the others carry on', async () => {
  let produced = 0;
  const chatty = streamFn(
    async function* (events) {
      for await (const e of events) {
        for (let i = 0; i < 1000; i++) {
          produced++;
          yield `${e}:${i}`;
        }
      }
    },
    { buffer: 4, idleTimeout: 0 },
  );
  const sessions = chatty.sessions();
  await sessions.send('loud', 'x');
  await settle(10);
  assert.ok(produced <= 4 + 4 + 2, `produced ${produced} with nobody reading`);
  const it = sessions[Symbol.asyncIterator]();
  assert.equal((await it.next()).value.value, 'x:0');
  await it.return(); // leaving the merged output cancels every session
  await settle();
  assert.equal(chatty.stats().open, 0);
});

test('a failed session surfaces as { key, error } without stopping the others', async () => {
  const picky = streamFn(async function* (events) {
    for await (const e of events) {
      if (e === 'bad') throw new Error('bad input');
      yield e;
    }
  }, { idleTimeout: 0 });
  const sessions = picky.sessions();
  const it = sessions[Symbol.asyncIterator]();
  await sessions.send('x', 'bad');
  await sessions.send('y', 'good');
  const items = await take(it, 2);
  const failed = items.find((i) => i.key === 'x');
  assert.match(failed.error.message, /bad input/);
  assert.deepEqual(items.find((i) => i.key === 'y'), { key: 'y', value: 'good' });
  await it.return();
});
