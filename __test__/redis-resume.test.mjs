// Resumable client streams (redisSse, redisNdjson, redisKeyOutputs, redisCursor): a key's outputs, each with its
// cursor (the SSE `id:`), resumed exactly after a `Last-Event-ID` or a `from`; hostile cursors refused with a code
// (400) before anything is read, trimmed ones with 410; a followed session's end; the socket's backpressure stops
// the reading; a client that leaves stops it, and nothing is left (connections, timers, the response itself).
// Clients are real: the `eventsource` package's EventSource (WHATWG semantics: Last-Event-ID on reconnect, 204
// stops it) and fetch. Cuts at random points, a worker killed -9 and the reader's connection cut are in
// redis-resume-faults.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { get as httpGet } from 'node:http';
import { streamFn } from 'velo-stream';
import {
  fnv1a,
  redisCursor,
  redisKeyOutputs,
  redisNdjson,
  redisOutputs,
  redisProducer,
  redisSse,
  redisWorker,
  ResumeCursorError,
} from 'velo-stream/redis';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { eventually, expectedTotals, totals } from './helpers/redis-fixtures.mjs';
import { follow, get, keyServer, readersClient, redisConnections, until } from './helpers/resume.mjs';

useRedis();

const PARTITIONS = 4;
const partitionOf = (key) => fnv1a(key) % PARTITIONS;
/** The first key `prefix<i>` in `partition` (or, with `not`, in any other). */
function keyIn(partition, prefix, not = false) {
  for (let i = 0; ; i++) if ((partitionOf(`${prefix}${i}`) === partition) !== not) return `${prefix}${i}`;
}
const out = (name, key) => `velo:{${name}:p${partitionOf(key)}}:out`;

/** An in-process worker of `fn` on the file's server. */
function worker(fn, name) {
  return redisWorker(fn, {
    client,
    name,
    partitions: PARTITIONS,
    leaseTtl: 2000,
    onError: (error) => assert.fail(String(error)),
  });
}

/** Tokens of a fake model: an event `{ prompt, count, done, fail, delay }` yields `count` tokens, then `{ done }` and returns (`done`), or throws (`fail`). */
const model = (idleTimeout = 60_000) =>
  streamFn(
    async function* tokens(events) {
      for await (const e of events) {
        for (let i = 0; i < (e.count ?? 0); i++) {
          if (e.delay) await new Promise((resolve) => setTimeout(resolve, e.delay));
          yield { token: `${e.prompt}-${i}` };
        }
        if (e.fail) throw Object.assign(new Error(`the model failed on ${e.prompt}`), { code: 'E_MODEL' });
        if (e.done) {
          yield { done: true, prompt: e.prompt };
          return;
        }
      }
    },
    { idleTimeout },
  );

/** `n` events for `key` (n from `from`), each after one for `noise` keys. */
async function sendWithNoise(producer, key, noise, n, from = 0) {
  const batch = [];
  for (let i = from; i < from + n; i++) {
    for (const other of noise) batch.push([other, { n: 1000 + i }]);
    batch.push([key, { n: i }]);
  }
  await producer.sendMany(batch);
}

const base = (name) => ({ client, name, partitions: PARTITIONS, heartbeat: 0 });

test("SSE, one key: every output once, in order, only that key's, each with its cursor as id; a new EventSource with any of them as Last-Event-ID gets exactly the outputs after it", async () => {
  const name = fresh('one');
  const key = 'k';
  const same = keyIn(partitionOf(key), 's');
  const other = keyIn(partitionOf(key), 'o', true);
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const server = await keyServer(base(name));
  const followers = [];
  try {
    await sendWithNoise(producer, key, [same, other], 30);
    const expected = expectedTotals(Array.from({ length: 30 }, (_, i) => i));
    const f = follow(`${server.url}/sse/${key}`);
    followers.push(f);
    await until(
      () => f.state.messages.length >= 30,
      '30 messages',
      20_000,
      () => JSON.stringify(f.state),
    );
    // Nothing more comes (the other keys' outputs are not this key's).
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(
      f.state.messages.map((m) => m.data),
      expected,
    );
    const ids = f.state.messages.map((m) => m.id);
    for (const id of ids) assert.match(id, new RegExp(`^${partitionOf(key)}:\\d+-\\d+$`));
    assert.equal(new Set(ids).size, 30);
    assert.equal(f.state.opens, 1);
    // Every id is the output's entry id in its partition's output stream.
    const stored = (await client.xRange(out(name, key), '-', '+')).filter((e) => e.message.k === key);
    assert.deepEqual(
      ids,
      stored.map((e) => `${partitionOf(key)}:${e.id}`),
    );
    // From a few of them by EventSource (the id sent with its first request), from each by the iterator.
    for (const i of [0, 13, 28]) {
      const g = follow(`${server.url}/sse/${key}`, { lastEventId: ids[i] });
      followers.push(g);
      await until(() => g.state.messages.length >= 29 - i, `the outputs after #${i}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(
        g.state.messages.map((m) => m.data),
        expected.slice(i + 1),
        `after #${i}`,
      );
      g.close();
    }
    for (let i = 0; i < 30; i++) {
      const got = [];
      if (i < 29) {
        for await (const o of redisKeyOutputs({ client, name, partitions: PARTITIONS, key, from: ids[i] })) {
          got.push(o.value);
          assert.equal(o.cursor, ids[i + got.length]);
          if (got.length === 29 - i) break;
        }
      }
      assert.deepEqual(got, expected.slice(i + 1), `iterator after #${i}`);
    }
  } finally {
    for (const f of followers) f.close();
    await server.close();
    await w.close();
  }
});

test("hostile Last-Event-ID values are refused before anything is read, 400 with a code and a reason (huge, malformed, out of range, another partition, future, not an id there); another key's id in the same partition is a position; nothing is left open", async () => {
  const name = fresh('hostile');
  const key = 'k';
  const same = keyIn(partitionOf(key), 's');
  const other = keyIn(partitionOf(key), 'o', true);
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const server = await keyServer(base(name));
  try {
    await eventually(() => w.stats().owned.length === PARTITIONS, 'the worker owns every partition');
    // Two rounds, a few ms apart: their ids differ in ms, so an id between them is none of the outputs.
    await sendWithNoise(producer, key, [same, other], 5);
    await eventually(async () => (await client.xLen(out(name, key))) === 10, 'the first outputs');
    await new Promise((resolve) => setTimeout(resolve, 20));
    await sendWithNoise(producer, key, [same, other], 5, 5);
    await eventually(async () => (await client.xLen(out(name, key))) === 20, 'the outputs of k and its neighbour');
    const entries = await client.xRange(out(name, key), '-', '+');
    const own = entries.filter((e) => e.message.k === key);
    const last = entries.at(-1).id;
    const [ms] = last.split('-');
    const p = partitionOf(key);
    // An id between two outputs of the stream: the one right after an output, when it is not the next output's.
    const gap = entries.findIndex((e, i) => {
      const [m, q] = e.id.split('-');
      return i + 1 < entries.length && entries[i + 1].id !== `${m}-${Number(q) + 1}`;
    });
    assert.ok(gap >= 0, 'two outputs apart');
    const between = `${entries[gap].id.split('-')[0]}-${Number(entries[gap].id.split('-')[1]) + 1}`;
    const before = await redisConnections(client);
    const cases = [
      ['huge', 'x'.repeat(10_000), 'length'],
      ['a cursor of 48 pairs', Array.from({ length: 48 }, () => `${p}:1-0`).join(','), 'length'],
      ['letters', 'hello', 'syntax'],
      ['an id alone, no partition', own[0].id, 'syntax'],
      ['a leading zero', `0${p}:${own[0].id}`, 'syntax'],
      ['a leading zero in the ms', `${p}:0${own[0].id}`, 'syntax'],
      ['no seq', `${p}:${ms}`, 'syntax'],
      ['an empty seq', `${p}:${ms}-`, 'syntax'],
      ['a negative seq', `${p}:${ms}--1`, 'syntax'],
      ['a space inside', `${p}: ${own[0].id}`, 'syntax'],
      ['a special id', `${p}:$`, 'syntax'],
      ['past 2^64', `${p}:18446744073709551616-0`, 'syntax'],
      ['two pairs for one key', `${p}:${own[0].id},${p}:${own[1].id}`, 'partitions'],
      ["another partition's (another key's)", `${partitionOf(other)}:${own[0].id}`, 'partitions'],
      ['a partition past the last', `${PARTITIONS + 7}:${own[0].id}`, 'partitions'],
      ['the future', `${p}:${Number(ms) + 60_000}-0`, 'future'],
      ['the largest id', `${p}:18446744073709551615-18446744073709551615`, 'future'],
      ['not an id there', `${p}:${between}`, 'unknown'],
    ];
    for (const [what, value, reason] of cases) {
      for (const kind of ['sse', 'ndjson']) {
        // SSE reads the header, NDJSON `from` (here the query string).
        const r =
          kind === 'sse'
            ? await get(`${server.url}/sse/${key}`, { 'Last-Event-ID': value })
            : await get(`${server.url}/ndjson/${key}?from=${encodeURIComponent(value)}`);
        assert.equal(r.status, 400, `${kind} ${what}: ${r.text}`);
        assert.match(r.headers.get('content-type'), /^application\/json/);
        const { error } = JSON.parse(r.text);
        assert.equal(error.code, 'ERR_VELO_BAD_CURSOR', what);
        assert.equal(error.reason, reason, `${kind} ${what}: ${error.message}`);
        assert.ok(error.message.length < 400, `${what}: the message quotes at most a bit of the cursor`);
      }
    }
    // The same refusal through an EventSource: an error with the status, and no reconnect.
    const f = follow(`${server.url}/sse/${key}`, { lastEventId: 'hello' });
    await until(() => f.state.errors.length > 0, 'the EventSource error');
    assert.equal(f.state.errors[0].code, 400);
    assert.equal(f.es.readyState, 2, 'CLOSED: it does not reconnect');
    // Another key's id in the same partition: a position in that stream, read on from there (only k's outputs).
    const neighbour = entries.findIndex((e) => e.message.k === same);
    const g = follow(`${server.url}/sse/${key}`, { lastEventId: `${p}:${entries[neighbour].id}` });
    const after = entries.slice(neighbour + 1).filter((e) => e.message.k === key);
    await until(() => g.state.messages.length >= after.length, 'the outputs after the neighbour');
    assert.deepEqual(
      g.state.messages.map((m) => m.id),
      after.map((e) => `${p}:${e.id}`),
    );
    g.close();
    // The start of the stream, by hand: `<p>:0-0` reads everything (nothing was trimmed).
    const h = follow(`${server.url}/sse/${key}`, { lastEventId: `${p}:0-0` });
    await until(() => h.state.messages.length >= 10, 'every output from 0-0');
    h.close();
    await until(() => server.open() === 0, 'every response done');
    await until(async () => (await redisConnections(client)) === before, 'no Redis connection left', 5000);
    // A bad `from` given to the iterator is refused at the call.
    assert.throws(
      () => redisKeyOutputs({ client, name, partitions: PARTITIONS, key, from: 'x' }),
      (e) => e instanceof ResumeCursorError && e.code === 'ERR_VELO_BAD_CURSOR' && e.reason === 'syntax' && e.status === 400,
    );
  } finally {
    await server.close();
    await w.close();
  }
});

test('a cursor whose outputs were trimmed away: 410 ERR_VELO_RESUME_TRIMMED (EventSource stops); the last kept output still resumes; a reader that falls behind a trim fails with the same code', async () => {
  const name = fresh('trim');
  const key = 'k';
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const server = await keyServer(base(name));
  try {
    await sendWithNoise(producer, key, [], 30);
    await eventually(async () => (await client.xLen(out(name, key))) === 30, '30 outputs');
    const ids = (await client.xRange(out(name, key), '-', '+')).map((e) => `${partitionOf(key)}:${e.id}`);
    // A reader with one entry per read, two outputs in: then the outputs after its position are trimmed.
    const behind = redisKeyOutputs({ client, name, partitions: PARTITIONS, key, count: 1 })[Symbol.asyncIterator]();
    assert.equal((await behind.next()).value.cursor, ids[0]);
    assert.equal((await behind.next()).value.cursor, ids[1]);
    await client.xTrim(out(name, key), 'MAXLEN', 5);
    await assert.rejects(behind.next(), (e) => e.code === 'ERR_VELO_RESUME_TRIMMED' && e.partition === partitionOf(key));
    for (const kind of ['sse', 'ndjson']) {
      const r =
        kind === 'sse'
          ? await get(`${server.url}/sse/${key}`, { 'Last-Event-ID': ids[3] })
          : await get(`${server.url}/ndjson/${key}?from=${ids[3]}`);
      assert.equal(r.status, 410, r.text);
      assert.deepEqual(
        { ...JSON.parse(r.text).error, message: undefined },
        {
          code: 'ERR_VELO_RESUME_TRIMMED',
          partition: partitionOf(key),
          message: undefined,
        },
      );
    }
    const f = follow(`${server.url}/sse/${key}`, { lastEventId: ids[3] });
    await until(() => f.state.errors.length > 0, 'the EventSource error');
    assert.equal(f.state.errors[0].code, 410);
    assert.equal(f.es.readyState, 2);
    // From the first kept output, and from the last: what follows them, exactly.
    const g = follow(`${server.url}/sse/${key}`, { lastEventId: ids[25] });
    await until(() => g.state.messages.length >= 4, 'the 4 outputs after #25');
    assert.deepEqual(
      g.state.messages.map((m) => m.id),
      ids.slice(26),
    );
    g.close();
    // The start of a trimmed stream is no longer every output: 0-0 is refused too, while no cursor reads what is kept.
    assert.equal((await get(`${server.url}/sse/${key}`, { 'Last-Event-ID': `${partitionOf(key)}:0-0` })).status, 410);
    const h = follow(`${server.url}/sse/${key}`);
    await until(() => h.state.messages.length >= 5, 'the 5 kept');
    assert.deepEqual(
      h.state.messages.map((m) => m.id),
      ids.slice(25),
    );
    h.close();
  } finally {
    await server.close();
    await w.close();
  }
});

test("NDJSON: lines {id, value}; a request with ?from=<a line's id> goes on exactly after that line; a set of keys across partitions carries every partition's position", async () => {
  const name = fresh('ndjson');
  const a = 'a';
  const b = keyIn(partitionOf(a), 'b');
  const c = keyIn(partitionOf(a), 'c', true);
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const server = await keyServer(base(name));
  /** The first `n` lines of a GET (then the request is aborted). */
  const lines = async (url, n) => {
    const controller = new AbortController();
    const res = await fetch(url, { signal: controller.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^application\/x-ndjson/);
    const got = [];
    let text = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      text += decoder.decode(chunk, { stream: true });
      const parts = text.split('\n');
      text = parts.pop();
      got.push(...parts.map((l) => JSON.parse(l)));
      if (got.length >= n) break;
    }
    controller.abort();
    return got.slice(0, n);
  };
  try {
    await sendWithNoise(producer, a, [b, c], 20);
    // Every output written first: a read over two partitions interleaves them by what each read finds.
    await eventually(
      async () => (await client.xLen(out(name, a))) === 40 && (await client.xLen(out(name, c))) === 20,
      'every output',
    );
    const expectedA = expectedTotals(Array.from({ length: 20 }, (_, i) => i));
    const all = await lines(`${server.url}/ndjson/${a}`, 20);
    assert.deepEqual(
      all.map((l) => l.value),
      expectedA,
    );
    assert.deepEqual(Object.keys(all[0]), ['id', 'value']);
    for (const i of [0, 7, 18]) {
      const rest = await lines(`${server.url}/ndjson/${a}?from=${encodeURIComponent(all[i].id)}`, 19 - i);
      assert.deepEqual(rest, all.slice(i + 1), `after line ${i}`);
    }
    // A set of keys: {id, key, value}, the id naming both partitions; resumed from a middle line, the rest exactly.
    const keys = [a, b, c].join(',');
    const set = await lines(`${server.url}/ndjson/x?keys=${keys}`, 60);
    assert.deepEqual(Object.keys(set[0]), ['id', 'key', 'value']);
    for (const k of [a, b, c]) {
      assert.deepEqual(
        set.filter((l) => l.key === k).map((l) => l.value),
        k === a ? expectedA : expectedTotals(Array.from({ length: 20 }, (_, i) => 1000 + i)),
        k,
      );
    }
    const pairs = set[0].id.split(',');
    assert.deepEqual(
      pairs.map((pair) => Number(pair.split(':')[0])),
      [partitionOf(a), partitionOf(c)].sort((x, y) => x - y),
    );
    for (const i of [0, 29, 58]) {
      const rest = await lines(`${server.url}/ndjson/x?keys=${keys}&from=${encodeURIComponent(set[i].id)}`, 59 - i);
      assert.deepEqual(rest, set.slice(i + 1), `set, after line ${i}`);
    }
    // A one-key cursor is not one of the set's.
    const r = await get(`${server.url}/ndjson/x?keys=${keys}&from=${encodeURIComponent(all[3].id)}`);
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.text).error.reason, 'partitions');
    await until(() => server.open() === 0, 'every response done');
  } finally {
    await server.close();
    await w.close();
  }
});

test('sessionEnd: the response follows one session and ends at its end (its last output by the function, a failure, or a later session), with event: end; a client back after it gets 204 and stops', async () => {
  const name = fresh('session');
  const key = 'chat';
  const w = worker(model(400), name);
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const server = await keyServer(base(name), () => ({ sessionEnd: (o) => o.value?.done === true, retry: 20 }));
  const followers = [];
  try {
    // A cursor taken before the send: the session's outputs all come after it.
    const from1 = await redisCursor({ client, name, partitions: PARTITIONS, key });
    await producer.send(key, { prompt: 'p1', count: 12, done: true, delay: 5 });
    const f = follow(`${server.url}/sse/${key}?from=${from1}`);
    followers.push(f);
    await until(
      () => f.state.errors.some((e) => e.code === 204),
      'the 204 after the end',
      20_000,
      () => JSON.stringify(f.state),
    );
    assert.deepEqual(
      f.state.messages.map((m) => m.data),
      [...Array.from({ length: 12 }, (_, i) => ({ token: `p1-${i}` })), { done: true, prompt: 'p1' }],
    );
    assert.equal(f.state.ends.length, 1);
    assert.equal(f.state.ends[0].reason, 'last');
    assert.equal(f.state.ends[0].key, key);
    assert.match(f.state.ends[0].sid, /^chat@\d+-\d+$/);
    assert.equal(f.state.opens, 1, 'one response, then a 204 to the reconnect');
    assert.equal(f.es.readyState, 2);
    // A failure is a session's last output: event: error with its id, then the end.
    const from2 = await redisCursor({ client, name, partitions: PARTITIONS, key });
    await producer.send(key, { prompt: 'p2', count: 2, fail: true });
    const g = follow(`${server.url}/sse/${key}?from=${from2}`);
    followers.push(g);
    await until(
      () => g.state.errors.some((e) => e.code === 204),
      'the 204 after the failure',
      20_000,
      () => JSON.stringify(g.state),
    );
    assert.deepEqual(
      g.state.messages.map((m) => m.data),
      [{ token: 'p2-0' }, { token: 'p2-1' }],
    );
    assert.equal(g.state.failures.length, 1);
    assert.deepEqual(g.state.failures[0].data, { error: { name: 'Error', message: 'the model failed on p2', code: 'E_MODEL' } });
    assert.match(g.state.failures[0].id, /^\d+:\d+-\d+$/);
    assert.deepEqual(
      g.state.ends.map((e) => e.reason),
      ['failure'],
    );
    // No last output: the session ends by its idle timeout, known once the key's next session writes; that
    // output is not sent.
    const from3 = await redisCursor({ client, name, partitions: PARTITIONS, key });
    await producer.send(key, { prompt: 'p3', count: 3 });
    const h = follow(`${server.url}/sse/${key}?from=${from3}`);
    followers.push(h);
    await until(() => h.state.messages.length >= 3, 'the 3 tokens of p3');
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal(h.state.ends.length, 0, 'no end yet: nothing says the session is over');
    await producer.send(key, { prompt: 'p4', count: 1, done: true });
    await until(() => h.state.errors.some((e) => e.code === 204), 'the 204 after the next session began');
    assert.deepEqual(
      h.state.messages.map((m) => m.data),
      [{ token: 'p3-0' }, { token: 'p3-1' }, { token: 'p3-2' }],
    );
    assert.deepEqual(
      h.state.ends.map((e) => e.reason),
      ['next'],
    );
    // NDJSON: the same session, its end as a line.
    const r = await get(`${server.url}/ndjson/${key}?from=${from1}`);
    const got = r.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(got.length, 14);
    assert.deepEqual(got.at(-1), { end: { key, sid: f.state.ends[0].sid, reason: 'last' } });
    // A client back with its session's last output as Last-Event-ID: 204 at once; with the last output of p3 (whose
    // end is known from p4's output), too.
    const lastId = f.state.messages.at(-1).id;
    assert.equal((await get(`${server.url}/sse/${key}`, { 'Last-Event-ID': lastId })).status, 204);
    assert.equal((await get(`${server.url}/sse/${key}`, { 'Last-Event-ID': h.state.messages.at(-1).id })).status, 204);
    // The same position given by the application (`from`: a cursor taken after p1) follows the next session: p2's.
    const k = await fetch(`${server.url}/ndjson/${key}?from=${lastId}`);
    const text = await k.text();
    assert.deepEqual(
      text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .map((l) => l.value ?? l.error ?? l.end.reason),
      [{ token: 'p2-0' }, { token: 'p2-1' }, { name: 'Error', message: 'the model failed on p2', code: 'E_MODEL' }, 'failure'],
    );
    await until(() => server.open() === 0, 'every response done');
  } finally {
    for (const f of followers) f.close();
    await server.close();
    await w.close();
  }
});

test('backpressure: a client that stops reading stops the reading of Redis (no read while its socket is full, most outputs not read yet); once it reads again, every output comes, once, in order', async () => {
  const name = fresh('slow');
  const key = 'big';
  const padded = streamFn(
    async function* padded(events) {
      for await (const e of events) yield { n: e.n, pad: 'x'.repeat(20_000) };
    },
    { idleTimeout: 60_000 },
  );
  const w = worker(padded, name);
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  let response;
  const server = await keyServer(base(name), (req, res) => {
    response = res;
    return { count: 16 };
  });
  const N = 1000;
  const reads = async () => {
    const info = await client.sendCommand(['INFO', 'commandstats']);
    return Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0) + Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0);
  };
  try {
    await producer.sendMany(Array.from({ length: N }, (_, n) => [key, { n }]));
    await eventually(async () => (await client.xLen(out(name, key))) === N, `${N} outputs of 20 KB`, 30_000);
    // The worker's scripts (renewals, commits) would count as evals too: it stops here.
    await w.close();
    const start = await reads();
    // A client that reads nothing: its socket fills, then the response's buffer.
    let res;
    const req = httpGet(`${server.url}/sse/${key}`, (r) => {
      res = r;
      r.pause();
    });
    await until(() => res !== undefined, 'the response');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const stalled = await reads();
    await new Promise((resolve) => setTimeout(resolve, 700));
    // Nothing else of this test calls a script: the count did not move, and it is short of reading everything.
    assert.equal(await reads(), stalled, 'no read of Redis while the socket is full');
    assert.ok(response.writableNeedDrain, 'the helper waits for the socket to drain');
    assert.ok((stalled - start) * 16 < N, `${stalled - start} reads of 16 while stalled: not all ${N} outputs were read`);
    // Reading again: all of it, in order.
    let text = '';
    res.setEncoding('utf8').on('data', (t) => (text += t));
    res.resume();
    await until(() => (text.match(/^data: /gm) ?? []).length >= N, `the ${N} events`, 30_000);
    const ns = [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]).n);
    assert.deepEqual(
      ns,
      Array.from({ length: N }, (_, n) => n),
    );
    req.destroy();
    await until(() => server.open() === 0, 'the response done after the client left');
  } finally {
    await server.close();
    await w.close();
  }
});

test('a client that leaves while the reader waits: the reading stops at once, its Redis connection closes, no timer or listener is left, and the response is collected; a GC while it waits changes nothing', async () => {
  const name = fresh('leave');
  const key = 'idle';
  // The readers' connections are counted by their client's name (the worker's own may reconnect meanwhile).
  const readers = await readersClient(client, 'velo-test-leave');
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const responses = [];
  const server = await keyServer({ ...base(name), client: readers }, (req, res) => {
    responses.push(new WeakRef(res));
    return { heartbeat: 50, retry: 10 };
  });
  try {
    await eventually(() => w.stats().owned.length === PARTITIONS, 'the worker owns every partition');
    const before = await redisConnections(client, 'velo-test-leave');
    const f = follow(`${server.url}/sse/${key}`);
    await until(() => f.state.opens === 1, 'the response open');
    await until(async () => (await redisConnections(client, 'velo-test-leave')) === before + 1, "the reader's connection");
    // GC while it waits for an output: the wait goes on, the next output arrives.
    for (let i = 0; i < 3; i++) {
      globalThis.gc();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await producer.send(key, { n: 1 });
    await until(() => f.state.messages.length === 1, 'the output sent after the GC');
    assert.deepEqual(f.state.messages[0].data, { n: 1, total: 1, count: 1 });
    f.close();
    await until(() => server.open() === 0, 'the helper done once the client left', 5000);
    await until(
      async () => (await redisConnections(client, 'velo-test-leave')) === before,
      "the reader's connection closed",
      5000,
    );
    await Promise.all(server.served);
    // Nothing holds the response any more (no listener, timer or reader kept it).
    await until(
      async () => {
        globalThis.gc();
        await new Promise((resolve) => setImmediate(resolve));
        return responses.every((r) => r.deref() === undefined);
      },
      'the response collected',
      5000,
    );
    // The iterator: a break closes its connection, and so does an abort while it waits.
    for await (const o of redisKeyOutputs({ client: readers, name, partitions: PARTITIONS, key })) {
      assert.equal(o.value.n, 1);
      break;
    }
    const controller = new AbortController();
    const waiting = (async () => {
      const seen = [];
      for await (const o of redisKeyOutputs({
        client: readers,
        name,
        partitions: PARTITIONS,
        key,
        start: 'end',
        signal: controller.signal,
      }))
        seen.push(o);
      return seen;
    })();
    await until(async () => (await redisConnections(client, 'velo-test-leave')) === before + 1, "the iterator's connection");
    controller.abort();
    assert.deepEqual(await waiting, []);
    await until(
      async () => (await redisConnections(client, 'velo-test-leave')) === before,
      "the iterator's connection closed",
      5000,
    );
    // An abort while the reader connects: node-redis opens the connection all the same; it is closed too.
    for (let i = 0; i < 5; i++) {
      const c = new AbortController();
      const it = redisKeyOutputs({ client: readers, name, partitions: PARTITIONS, key, signal: c.signal })[
        Symbol.asyncIterator
      ]();
      const first = it.next();
      c.abort();
      assert.deepEqual(await first, { done: true, value: undefined });
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await redisConnections(client, 'velo-test-leave'), before, 'no connection left by an abort while connecting');
  } finally {
    await server.close();
    await w.close();
    await readers.close();
  }
});

test('readers sharing one signal (key readers, sessionOutputs): one abort listener on it, no MaxListenersExceededWarning, every reader ends at its abort', async () => {
  const name = fresh('shared');
  const readers = await readersClient(client, 'velo-test-shared');
  const warnings = [];
  const onWarning = (warning) => warnings.push(warning.name);
  process.on('warning', onWarning);
  const controller = new AbortController();
  try {
    const all = async (reader) => {
      const seen = [];
      for await (const output of reader) seen.push(output);
      return seen;
    };
    const o = { client: readers, name, partitions: PARTITIONS, signal: controller.signal };
    const reading = [
      ...Array.from({ length: 12 }, (_, i) => all(redisKeyOutputs({ ...o, key: `k${i}`, start: 'end' }))),
      ...Array.from({ length: 12 }, () => all(redisOutputs({ ...o, from: 'end' }))),
    ];
    await until(async () => (await redisConnections(client, 'velo-test-shared')) >= 24, 'the readers waiting');
    assert.equal(getEventListeners(controller.signal, 'abort').length, 1, 'one listener for the 24 readers');
    controller.abort();
    assert.deepEqual(
      await Promise.all(reading),
      Array.from({ length: 24 }, () => []),
    );
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings, []);
  } finally {
    process.off('warning', onWarning);
    controller.abort();
    await readers.close();
  }
});

test('arguments are checked: a wrong option rejects with a code (the response untouched); a bad cursor from the application is a 400 answer', async () => {
  const name = fresh('args');
  const server = await keyServer(base(name));
  try {
    const res = { write() {}, setHeader() {}, on() {}, off() {}, headersSent: false };
    const req = { headers: {} };
    const o = { client, name, partitions: PARTITIONS };
    const refused = [
      [redisSse, { ...o, key: 'a', keys: ['b'] }, 'ERR_INVALID_ARG_VALUE', /not both/],
      [redisSse, { ...o, keys: ['a', 'b'], sessionEnd: true }, 'ERR_INVALID_ARG_VALUE', /one key/],
      [redisSse, { ...o, key: 'a', retry: -1 }, 'ERR_OUT_OF_RANGE', /retry/],
      [redisSse, { ...o, key: 'a', heartbeat: 1.5 }, 'ERR_OUT_OF_RANGE', /heartbeat/],
      [redisSse, { ...o, key: 'a', event: 'a\nb' }, 'ERR_INVALID_ARG_VALUE', /line feed/],
      [redisSse, { ...o, key: 'a', start: 'now' }, 'ERR_INVALID_ARG_VALUE', /start/],
      [redisSse, { ...o, key: 'a', sessionEnd: 'yes' }, 'ERR_INVALID_ARG_TYPE', /sessionEnd/],
      [redisSse, { ...o, key: 'a', lastEventId: 'x' }, 'ERR_INVALID_ARG_VALUE', /Unknown option|unknown option/],
      [redisNdjson, { ...o, key: 'a', retry: 10 }, 'ERR_INVALID_ARG_VALUE', /unknown option "retry"/],
      [redisNdjson, { ...o, key: 'a', serialize: 1 }, 'ERR_INVALID_ARG_TYPE', /serialize/],
    ];
    for (const [fn, options, code, message] of refused) {
      await assert.rejects(fn(req, res, options), (e) => e.code === code && message.test(e.message), JSON.stringify(options));
    }
    await assert.rejects(redisSse(req, {}, { ...o, key: 'a' }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => redisKeyOutputs({ ...o, key: 'a', signal: 1 }), { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(redisCursor({ ...o, key: 'a', from: 'x' }), { code: 'ERR_INVALID_ARG_VALUE' });
    const r = await get(`${server.url}/sse/a?from=nope`);
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.text).error.code, 'ERR_VELO_BAD_CURSOR');
    // Keys from the request that no key can be, or too few or many of them: the client's mistake, answered 400
    // (the call resolves: a handler that does not catch does not crash its server).
    const many = Array.from({ length: 101 }, (_, i) => `k${i}`).join(',');
    for (const [path, code, message] of [
      [`/sse/${'x'.repeat(1025)}`, 'ERR_OUT_OF_RANGE', /longer than 1024/],
      [`/ndjson/${'x'.repeat(1025)}`, 'ERR_OUT_OF_RANGE', /longer than 1024/],
      ['/sse/', 'ERR_INVALID_ARG_VALUE', /empty/],
      ['/sse/x?keys=', 'ERR_INVALID_ARG_VALUE', /empty/],
      [`/sse/x?keys=${many}`, 'ERR_INVALID_ARG_VALUE', /1 to 100/],
    ]) {
      const bad = await get(`${server.url}${path}`);
      assert.equal(bad.status, 400, path);
      const error = JSON.parse(bad.text).error;
      assert.ok(error.code === code && message.test(error.message), `${path}: ${bad.text}`);
    }
    await assert.doesNotReject(redisSse(req, { ...res, statusCode: 200, end() {}, destroyed: false }, { ...o, keys: [] }));
    // Keys as a request gives them when the client leaves them out or repeats them (undefined, an array, a parser's
    // object), or of another type: answered 400 too, and the call resolves.
    for (const [fn, options, code, message] of [
      [redisSse, { ...o }, 'ERR_INVALID_ARG_VALUE', /options\.key/],
      [redisNdjson, { ...o, key: undefined }, 'ERR_INVALID_ARG_VALUE', /options\.key/],
      [redisSse, { ...o, key: ['a', 'b'] }, 'ERR_INVALID_ARG_TYPE', /options\.key must be a string/],
      [redisNdjson, { ...o, key: { a: '1' } }, 'ERR_INVALID_ARG_TYPE', /options\.key must be a string/],
      [redisSse, { ...o, key: 7 }, 'ERR_INVALID_ARG_TYPE', /string/],
      [redisSse, { ...o, key: null }, 'ERR_INVALID_ARG_TYPE', /string/],
      [redisSse, { ...o, keys: 'a' }, 'ERR_INVALID_ARG_TYPE', /array/],
      [redisNdjson, { ...o, keys: ['a', 1] }, 'ERR_INVALID_ARG_TYPE', /string/],
    ]) {
      const answered = { statusCode: 200, body: '' };
      const sink = {
        ...res,
        destroyed: false,
        get statusCode() {
          return answered.statusCode;
        },
        set statusCode(v) {
          answered.statusCode = v;
        },
        end(b) {
          answered.body = b;
        },
      };
      await assert.doesNotReject(fn(req, sink, options), JSON.stringify(options));
      assert.equal(answered.statusCode, 400, JSON.stringify(options));
      const error = JSON.parse(answered.body).error;
      assert.ok(error.code === code && message.test(error.message), `${JSON.stringify(options)}: ${answered.body}`);
    }
  } finally {
    await server.close();
  }
});

test('an empty from (a bare `?from=`) is no cursor: SSE and NDJSON answer 200 from the start, not 400', async () => {
  const name = fresh('emptyfrom');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const server = await keyServer(base(name), () => ({ signal: AbortSignal.timeout(500) }));
  try {
    await producer.send('a', { n: 1 });
    await eventually(async () => (await client.xLen(out(name, 'a'))) === 1, 'the output');
    for (const kind of ['sse', 'ndjson']) {
      const r = await get(`${server.url}/${kind}/a?from=`);
      assert.equal(r.status, 200, `${kind}: ${r.text}`);
      assert.match(r.text, /"total":1/, `${kind}: the output from the start`);
    }
  } finally {
    await server.close();
    await w.close();
  }
});

test('redisKeyOutputs: Symbol.asyncDispose ends its loops (one waiting on Redis, one at an output) quietly, closes their connections; a loop after it ends at once', async () => {
  const name = fresh('keydispose');
  const readers = await readersClient(client, 'velo-test-dispose');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  try {
    await producer.send('a', { n: 1 });
    await eventually(async () => (await client.xLen(out(name, 'a'))) === 1, 'the output');
    const baseline = await redisConnections(client, 'velo-test-dispose');
    const outputs = redisKeyOutputs({ client: readers, name, partitions: PARTITIONS, key: 'a' });
    const got = [];
    const waiting = (async () => {
      for await (const o of outputs) got.push(o.value.total);
      return 'ended';
    })();
    const held = outputs[Symbol.asyncIterator]();
    assert.equal((await held.next()).value.value.total, 1);
    await eventually(() => got.length === 1, 'the loop got the output');
    assert.equal(await redisConnections(client, 'velo-test-dispose'), baseline + 2, 'a connection per loop');
    await outputs[Symbol.asyncDispose]();
    assert.equal(await waiting, 'ended');
    assert.deepEqual(await held.next(), { value: undefined, done: true });
    await eventually(async () => (await redisConnections(client, 'velo-test-dispose')) === baseline, 'their connections closed');
    const after = [];
    for await (const o of outputs) after.push(o);
    assert.deepEqual(after, []);
  } finally {
    await w.close();
    await readers.close();
  }
});

test("a reader's error has velo-stream/http's one shape: a serializer's thrown error, its toJSON() or message, never reaches the client", async () => {
  const name = fresh('errshape');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  // An HTTP client library's error: its toJSON() and message would carry a request's credentials.
  const leaky = Object.assign(new Error('upstream said no: Authorization Bearer s3cret'), {
    toJSON: () => ({ config: { headers: { Authorization: 'Bearer s3cret' } } }),
  });
  const server = await keyServer(base(name), () => ({
    signal: AbortSignal.timeout(500),
    serialize: () => {
      throw leaky;
    },
  }));
  try {
    await producer.send('a', { n: 1 });
    await eventually(async () => (await client.xLen(out(name, 'a'))) === 1, 'the output');
    for (const kind of ['sse', 'ndjson']) {
      const r = await get(`${server.url}/${kind}/a`);
      // (The answer started before the first output's text was made: the error ends it, in the one shape.)
      assert.equal(r.status, 200, `${kind}: ${r.text}`);
      assert.doesNotMatch(r.text, /s3cret/, `${kind}: nothing of the error's own`);
      const shape = JSON.stringify({ error: { message: 'Internal Server Error', code: 'ERR_VELO_SERIALIZE' } });
      assert.equal(r.text, kind === 'sse' ? `event: error\ndata: ${shape}\n\n` : `${shape}\n`);
    }
  } finally {
    await server.close();
    await w.close();
  }
});
