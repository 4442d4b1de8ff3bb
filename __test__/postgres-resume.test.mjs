// Resumable client streams on Postgres (postgresSse, postgresNdjson, postgresKeyOutputs, postgresCursor): a key's
// outputs, each with its cursor (the SSE `id:`, the output's id in its partition), resumed exactly after a
// `Last-Event-ID` or a `from`; hostile cursors and keys refused with a code (400) before anything is read, trimmed
// positions with 410; a followed session's end; `await using`, an abort and a client that leaves stop the reading
// (no statement after). Clients are real: the `eventsource` package's EventSource and fetch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { streamFn } from 'velo-stream';
import {
  fnv1a,
  postgresCursor,
  postgresKeyOutputs,
  postgresNdjson,
  postgresProducer,
  postgresSse,
  postgresWorker,
  ResumeCursorError,
} from 'velo-stream/postgres';
import { expectedTotals, totals } from './helpers/redis-fixtures.mjs';
import { follow, get, rng, until } from './helpers/resume.mjs';
import { countingPool, pool, usePostgres } from './helpers/postgres-suite.mjs';
import { PgLog, preparePg } from '#testing';

usePostgres();

const require = createRequire(import.meta.url);
const { judgePg } = require('../dist/postgres/clients/key-outputs.js');

const SCHEMA = 'velo_resume';
const PARTITIONS = 4;
const partitionOf = (key) => fnv1a(key) % PARTITIONS;
let names = 0;
const fresh = (what) => `${what}-${process.pid}-${++names}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** The first key `prefix<i>` in `partition` (or, with `not`, in any other). */
function keyIn(partition, prefix, not = false) {
  for (let i = 0; ; i++) if ((partitionOf(`${prefix}${i}`) === partition) !== not) return `${prefix}${i}`;
}
const shared = (name, p = pool()) => ({ pool: p, schema: SCHEMA, name, partitions: PARTITIONS });

function worker(fn, name) {
  return postgresWorker(fn, { ...shared(name), leaseTtl: 2000, onError: (error) => assert.fail(String(error)) });
}

/** Tokens of a fake model: `{ prompt, count, done, fail }` yields `count` tokens, then `{ done }` and returns, or throws. */
const model = (idleTimeout = 60_000) =>
  streamFn(
    async function* tokens(events) {
      for await (const e of events) {
        for (let i = 0; i < (e.count ?? 0); i++) yield { token: `${e.prompt}-${i}` };
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

/** The stored outputs of partition `p` of `name`, in order: { id, key }. */
async function stored(name, p) {
  const { rows } = await pool().query(`SELECT ms, seq, key FROM ${SCHEMA}.outputs WHERE fn = $1 AND p = $2 ORDER BY ms, seq`, [
    name,
    p,
  ]);
  return rows.map((r) => ({ id: `${r.ms}-${r.seq}`, key: r.key }));
}

/**
 * An HTTP server: `GET /sse/<key>` and `/ndjson/<key>` serve the key's outputs (`?from=`, `?keys=a,b`), with
 * `options(req)` merged in. `open()`: responses running; `close()` fails if a call rejected.
 */
async function keyServer(base, options = () => ({})) {
  const failures = [];
  const served = [];
  let running = 0;
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const [, kind, key] = url.pathname.split('/');
    const keys = url.searchParams.get('keys');
    const which = keys === null ? { key: decodeURIComponent(key) } : { keys: keys.split(',') };
    const all = { ...base, ...which, from: url.searchParams.get('from'), ...options(req) };
    if (kind === 'ndjson') for (const sseOnly of ['retry', 'heartbeat', 'event']) delete all[sseOnly];
    running++;
    const serve = kind === 'sse' ? postgresSse : postgresNdjson;
    served.push(
      serve(req, res, all)
        .catch((error) => failures.push(error))
        .finally(() => running--),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    open: () => running,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await Promise.all(served);
      assert.deepEqual(failures, [], 'no helper call rejected');
    },
  };
}

test('judgePg: exact where no output after the position can be missing; trimmed where one was or may have been', () => {
  // (position, newest id given, oldest kept, its seq)
  assert.equal(judgePg('5-0', '5-0', '1-0', 1), 'ok', 'at the newest id');
  assert.equal(judgePg('5-1', '5-0', '1-0', 1), 'future');
  assert.equal(judgePg('0-18446744073709551615', '1-0', '1-0', 1), 'ok', 'right before the oldest kept');
  assert.equal(judgePg('2-0', '5-0', '1-0', 1), 'unknown', 'among the kept, yet none of them');
  assert.equal(judgePg('0-5', '5-0', '1-0', 1), 'trimmed', 'before the oldest kept: a removed output or place');
  assert.equal(judgePg('0-5', '5-0', '', 0), 'trimmed', 'outputs given after it, none kept');
  assert.equal(judgePg('0-0', '5-0', '1-0', 1), 'ok', 'taken before the first output: the oldest kept is a first');
  assert.equal(judgePg('0-0', '5-0', '1-0', 4), 'trimmed', "the oldest kept is not its session's first");
  assert.equal(judgePg('0-0', '5-0', '', 0), 'trimmed');
  assert.equal(judgePg('0-0', '0-0', '', 0), 'ok', 'nothing ever written');
  // With the trim mark (the newest output a trim removed): a position before it had an output after it removed.
  assert.equal(judgePg('0-0', '5-0', '3-0', 1, '2-0'), 'trimmed', 'whole sessions removed: the oldest kept is a first');
  assert.equal(judgePg('0-0', '5-0', '3-0', 1, '0-0'), 'ok', 'no trim');
  assert.equal(judgePg('2-18446744073709551615', '5-0', '3-0', 1, '2-0'), 'ok', 'right before the oldest kept, after the mark');
  assert.equal(judgePg('1-0', '5-0', '3-0', 1, '2-0'), 'trimmed');
  assert.equal(judgePg('0-0', '5-0', '3-0', 4, '0-0'), 'trimmed', 'no mark (a trim by a version 3 worker): the rule of firsts');
});

test("a cursor taken before a partition's first output is 410 once a trim removed whole sessions (the trim mark), exact before", async () => {
  const name = fresh('mark');
  const key = 'k';
  const p = partitionOf(key);
  const cursor = await postgresCursor({ ...shared(name), key });
  assert.equal(cursor, `${p}:0-0`);
  const space = await preparePg(pool(), SCHEMA, name, PARTITIONS);
  const log = new PgLog(pool(), space, PARTITIONS);
  const lease = await log.acquire(p, 'w', 60_000);
  // Two sessions of the key: a@ with outputs 1 and 2, b@ with output 1; the newest one kept (b's first).
  const out = (sid, seq) => ({ sid, seq, key, payload: JSON.stringify({ sid, seq }) });
  await log.commit(lease, { outputs: [out(`${key}@1-0`, 1), out(`${key}@1-0`, 2)], acks: [], ended: [] });
  await log.commit(lease, { outputs: [out(`${key}@2-0`, 1)], acks: [], ended: [] });
  const read = async () => {
    const got = [];
    for await (const o of postgresKeyOutputs({ ...shared(name), key, from: cursor, signal: AbortSignal.timeout(500) })) {
      got.push(`${o.sid}#${o.seq}`);
    }
    return got;
  };
  assert.deepEqual(await read(), [`${key}@1-0#1`, `${key}@1-0#2`, `${key}@2-0#1`]);
  assert.equal(await log.trimOutputs(lease, false, 1), 2);
  const { rows } = await pool().query(`SELECT trimmed_ms, trimmed_seq FROM ${SCHEMA}.groups WHERE fn = $1 AND p = $2`, [name, p]);
  assert.notEqual(rows[0].trimmed_ms, '0', 'the trim mark moved');
  // Before the mark, the oldest kept output (b's first) looked like the partition's first: the rule of firsts let
  // this cursor read on, missing a's two outputs.
  await assert.rejects(read(), (e) => e.code === 'ERR_VELO_RESUME_TRIMMED' && e.partition === p);
  await log.close();
});

test("SSE, one key: every output once, in order, only that key's, its id the output's id; Last-Event-ID and postgresKeyOutputs' from resume exactly after any of them", async () => {
  const name = fresh('one');
  const key = 'k';
  const same = keyIn(partitionOf(key), 's');
  const other = keyIn(partitionOf(key), 'o', true);
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const producer = postgresProducer(shared(name));
  const server = await keyServer({ ...shared(name), heartbeat: 0 });
  const followers = [];
  try {
    await sendWithNoise(producer, key, [same, other], 20);
    const expected = expectedTotals(Array.from({ length: 20 }, (_, i) => i));
    const f = follow(`${server.url}/sse/${key}`);
    followers.push(f);
    await until(
      () => f.state.messages.length >= 20,
      '20 messages',
      20_000,
      () => JSON.stringify(f.state),
    );
    await sleep(300);
    assert.deepEqual(
      f.state.messages.map((m) => m.data),
      expected,
    );
    const ids = f.state.messages.map((m) => m.id);
    const p = partitionOf(key);
    assert.deepEqual(
      ids,
      (await stored(name, p)).filter((o) => o.key === key).map((o) => `${p}:${o.id}`),
    );
    assert.equal(f.state.opens, 1);
    for (const i of [0, 9, 18]) {
      const g = follow(`${server.url}/sse/${key}`, { lastEventId: ids[i] });
      followers.push(g);
      await until(() => g.state.messages.length >= 19 - i, `the outputs after #${i}`);
      await sleep(150);
      assert.deepEqual(
        g.state.messages.map((m) => m.data),
        expected.slice(i + 1),
        `after #${i}`,
      );
      g.close();
    }
    for (let i = 0; i < 19; i++) {
      const got = [];
      for await (const o of postgresKeyOutputs({ ...shared(name), key, from: ids[i] })) {
        got.push(o.value);
        assert.equal(o.cursor, ids[i + got.length]);
        if (got.length === 19 - i) break;
      }
      assert.deepEqual(got, expected.slice(i + 1), `iterator after #${i}`);
    }
    // A neighbour's output id in the same partition is a position there too; `0-0` reads everything kept.
    const neighbour = (await stored(name, p)).find((o) => o.key === same);
    const after = [];
    for await (const o of postgresKeyOutputs({
      ...shared(name),
      key,
      from: `${p}:${neighbour.id}`,
      signal: AbortSignal.timeout(1000),
    }))
      after.push(o.cursor);
    assert.ok(after.length >= 19 && after.every((c) => ids.includes(c)));
    const all = [];
    for await (const o of postgresKeyOutputs({ ...shared(name), key, from: `${p}:0-0`, signal: AbortSignal.timeout(1000) }))
      all.push(o.cursor);
    assert.deepEqual(all, ids);
  } finally {
    for (const f of followers) f.close();
    await server.close();
    await w.close();
  }
});

test('hostile cursors and keys are refused before anything is read: 400 with a code and a reason (SSE and NDJSON), a seeded fuzz never gives 500; a bad from throws at the call', async () => {
  const name = fresh('hostile');
  const key = 'k';
  const other = keyIn(partitionOf(key), 'o', true);
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const producer = postgresProducer(shared(name));
  const counting = countingPool();
  const server = await keyServer({ ...shared(name, counting), heartbeat: 0 });
  try {
    await sendWithNoise(producer, key, [], 3);
    await until(async () => (await stored(name, partitionOf(key))).length === 3, 'the first outputs');
    await sleep(20);
    await sendWithNoise(producer, key, [], 3, 3);
    await until(async () => (await stored(name, partitionOf(key))).length === 6, 'six outputs');
    const own = await stored(name, partitionOf(key));
    const p = partitionOf(key);
    const gap = own.findIndex((e, i) => {
      const [m, q] = e.id.split('-');
      return i + 1 < own.length && own[i + 1].id !== `${m}-${Number(q) + 1}`;
    });
    assert.ok(gap >= 0, 'two outputs apart');
    const between = `${own[gap].id.split('-')[0]}-${Number(own[gap].id.split('-')[1]) + 1}`;
    const [ms] = own.at(-1).id.split('-');
    const cases = [
      ['huge', 'x'.repeat(10_000), 'length'],
      ['48 pairs', Array.from({ length: 48 }, () => `${p}:1-0`).join(','), 'length'],
      ['letters', 'hello', 'syntax'],
      ['an id alone', own[0].id, 'syntax'],
      ['a leading zero', `0${p}:${own[0].id}`, 'syntax'],
      ['no seq', `${p}:${ms}`, 'syntax'],
      ['a negative seq', `${p}:${ms}--1`, 'syntax'],
      ['a NUL', `${p}:${own[0].id}\0`, 'syntax'],
      ['past 2^64', `${p}:18446744073709551616-0`, 'syntax'],
      ['two pairs for one key', `${p}:${own[0].id},${p}:${own[1].id}`, 'partitions'],
      ["another key's partition", `${partitionOf(other)}:${own[0].id}`, 'partitions'],
      ['the future', `${p}:${Number(ms) + 60_000}-0`, 'future'],
      ['past the largest bigint', `${p}:18446744073709551615-18446744073709551615`, 'future'],
      ['not an id there', `${p}:${between}`, 'unknown'],
    ];
    for (const [what, value, reason] of cases) {
      // (A header cannot hold a NUL: that one goes as `from` only.)
      for (const kind of value.includes('\0') ? ['ndjson'] : ['sse', 'ndjson']) {
        const r =
          kind === 'sse'
            ? await get(`${server.url}/sse/${key}`, { 'Last-Event-ID': value })
            : await get(`${server.url}/ndjson/${key}?from=${encodeURIComponent(value)}`);
        assert.equal(r.status, 400, `${kind} ${what}: ${r.text}`);
        const { error } = JSON.parse(r.text);
        assert.equal(error.code, 'ERR_VELO_BAD_CURSOR', what);
        assert.equal(error.reason, reason, `${kind} ${what}: ${error.message}`);
        assert.ok(error.message.length < 400, `${what}: the message quotes at most a bit of the cursor`);
        // A cursor the client sent is refused naming the header it came in, not an option it did not set.
        if (kind === 'sse') assert.doesNotMatch(error.message, /options\.from/, `${what}: ${error.message}`);
      }
    }
    // Keys from the request no key can be: 400 before any statement (the cursors that are syntax errors too).
    const before = counting.queries();
    for (const path of [
      `/sse/`,
      `/ndjson/${'x'.repeat(1025)}`,
      `/ndjson/k?keys=${Array.from({ length: 101 }, (_, i) => `k${i}`).join(',')}`,
    ]) {
      const r = await get(`${server.url}${path}`);
      assert.equal(r.status, 400, `${path.slice(0, 40)}: ${r.text}`);
      assert.equal(typeof JSON.parse(r.text).error.message, 'string');
    }
    assert.equal((await get(`${server.url}/ndjson/${key}?from=hello`)).status, 400);
    assert.equal(counting.queries(), before, 'no statement for a refused key or a malformed cursor');
    // A seeded fuzz: random mutations of a good cursor: 400 with a reason, 200 or 410; never 500.
    const random = rng(4242);
    const good = `${p}:${own[2].id}`;
    const alphabet = '0123456789:-,x \u00e9';
    for (let i = 0; i < 150; i++) {
      const chars = [...good];
      for (let m = 0; m < 1 + Math.floor(random() * 3); m++) {
        const at = Math.floor(random() * (chars.length + 1));
        const c = alphabet[Math.floor(random() * alphabet.length)];
        if (random() < 0.5) chars.splice(at, 1, c);
        else chars.splice(at, 0, c);
      }
      const value = chars.join('');
      const res = await fetch(`${server.url}/ndjson/${key}?from=${encodeURIComponent(value)}`, {
        signal: AbortSignal.timeout(300),
      }).catch((e) => e);
      // A valid cursor streams (200, the fetch aborted by its timeout while it waits).
      if (res instanceof Error) continue;
      assert.ok([200, 400, 410].includes(res.status), `${JSON.stringify(value)}: ${res.status}`);
      if (res.status === 400) assert.equal(JSON.parse(await res.text()).error.code, 'ERR_VELO_BAD_CURSOR');
      else await res.body?.cancel();
    }
    await until(() => server.open() === 0, 'every response done');
    assert.throws(
      () => postgresKeyOutputs({ ...shared(name), key, from: 'x' }),
      (e) => e instanceof ResumeCursorError && e.code === 'ERR_VELO_BAD_CURSOR' && e.reason === 'syntax' && e.status === 400,
    );
    assert.throws(() => postgresKeyOutputs({ ...shared(name), keys: [] }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(
      () => postgresKeyOutputs({ ...shared(name), key: '\ud800' }),
      (e) => typeof e.code === 'string',
    );
    assert.throws(() => postgresKeyOutputs({ ...shared(name), keys: 'k' }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => postgresKeyOutputs({ ...shared(name), key, count: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => postgresKeyOutputs({ ...shared(name), key, pollInterval: 1e9 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => postgresKeyOutputs({ ...shared(name), key, client: {} }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => postgresKeyOutputs({ ...shared(name), key, sessionEnd: true, keys: undefined, signal: 'x' }), {
      code: 'ERR_INVALID_ARG_TYPE',
    });
  } finally {
    await server.close();
    await w.close();
  }
});

test('trimmed outputs: a cursor before the oldest kept is 410 ERR_VELO_RESUME_TRIMMED, a reader behind a trim fails with it; the kept ones resume; a cursor taken before the first output reads all', async () => {
  const name = fresh('trim');
  const key = 'k';
  const p = partitionOf(key);
  // A cursor of the partition before it had any output: `0-0`, which reads every output while none is removed.
  const first = await postgresCursor({ ...shared(name), key });
  assert.equal(first, `${p}:0-0`);
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const producer = postgresProducer(shared(name));
  const server = await keyServer({ ...shared(name), heartbeat: 0 });
  try {
    await sendWithNoise(producer, key, [], 30);
    await until(async () => (await stored(name, p)).length === 30, '30 outputs');
    const ids = (await stored(name, p)).map((o) => `${p}:${o.id}`);
    const fromFirst = [];
    for await (const o of postgresKeyOutputs({ ...shared(name), key, from: first })) {
      fromFirst.push(o.cursor);
      if (fromFirst.length === 30) break;
    }
    assert.deepEqual(fromFirst, ids);
    const behind = postgresKeyOutputs({ ...shared(name), key, count: 1 })[Symbol.asyncIterator]();
    assert.equal((await behind.next()).value.cursor, ids[0]);
    assert.equal((await behind.next()).value.cursor, ids[1]);
    // As the worker's `outputMaxLen` trim does: the newest 5 kept.
    await pool().query(
      `DELETE FROM ${SCHEMA}.outputs o USING (SELECT ms, seq FROM ${SCHEMA}.outputs WHERE fn = $1 AND p = $2
         ORDER BY ms DESC, seq DESC OFFSET 5 LIMIT 1) c WHERE o.fn = $1 AND o.p = $2 AND (o.ms, o.seq) <= (c.ms, c.seq)`,
      [name, p],
    );
    await assert.rejects(behind.next(), (e) => e.code === 'ERR_VELO_RESUME_TRIMMED' && e.partition === p);
    for (const cursor of [ids[3], first]) {
      for (const kind of ['sse', 'ndjson']) {
        const r =
          kind === 'sse'
            ? await get(`${server.url}/sse/${key}`, { 'Last-Event-ID': cursor })
            : await get(`${server.url}/ndjson/${key}?from=${cursor}`);
        assert.equal(r.status, 410, `${kind} ${cursor}: ${r.text}`);
        assert.deepEqual(
          { ...JSON.parse(r.text).error, message: undefined },
          { code: 'ERR_VELO_RESUME_TRIMMED', partition: p, message: undefined },
        );
      }
    }
    const f = follow(`${server.url}/sse/${key}`, { lastEventId: ids[3] });
    await until(() => f.state.errors.length > 0, 'the EventSource error');
    assert.equal(f.state.errors[0].code, 410);
    assert.equal(f.es.readyState, 2, 'it does not reconnect');
    const g = follow(`${server.url}/sse/${key}`, { lastEventId: ids[25] });
    await until(() => g.state.messages.length >= 4, 'the 4 outputs after #25');
    assert.deepEqual(
      g.state.messages.map((m) => m.id),
      ids.slice(26),
    );
    g.close();
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

test('sessionEnd and NDJSON: a cursor taken before the send follows that session to its end (last, failure, next), 204 after it; a set of keys across partitions carries every position', async () => {
  const name = fresh('session');
  const key = 'chat';
  const w = worker(model(400), name);
  const producer = postgresProducer(shared(name));
  const server = await keyServer({ ...shared(name), heartbeat: 0 }, () => ({
    sessionEnd: (o) => o.value?.done === true,
    retry: 20,
  }));
  const followers = [];
  try {
    const from1 = await postgresCursor({ ...shared(name), key });
    await producer.send(key, { prompt: 'p1', count: 5, done: true });
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
      [...Array.from({ length: 5 }, (_, i) => ({ token: `p1-${i}` })), { done: true, prompt: 'p1' }],
    );
    assert.deepEqual(
      f.state.ends.map((e) => e.reason),
      ['last'],
    );
    assert.equal(f.state.opens, 1);
    const from2 = await postgresCursor({ ...shared(name), key });
    await producer.send(key, { prompt: 'p2', count: 2, fail: true });
    const r = await get(`${server.url}/ndjson/${key}?from=${from2}`);
    const lines = r.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => l.value ?? l.error ?? l.end.reason),
      [{ token: 'p2-0' }, { token: 'p2-1' }, { name: 'Error', message: 'the model failed on p2', code: 'E_MODEL' }, 'failure'],
    );
    const from3 = await postgresCursor({ ...shared(name), key });
    await producer.send(key, { prompt: 'p3', count: 2 });
    const h = follow(`${server.url}/sse/${key}?from=${from3}`);
    followers.push(h);
    await until(() => h.state.messages.length >= 2, 'the 2 tokens of p3');
    await sleep(700);
    assert.equal(h.state.ends.length, 0, 'nothing says the session is over yet');
    await producer.send(key, { prompt: 'p4', count: 1, done: true });
    await until(() => h.state.errors.some((e) => e.code === 204), 'the 204 after the next session began');
    assert.deepEqual(
      h.state.ends.map((e) => e.reason),
      ['next'],
    );
    assert.equal((await get(`${server.url}/sse/${key}`, { 'Last-Event-ID': f.state.messages.at(-1).id })).status, 204);
    // A set of keys in two partitions: each line carries both positions; from a middle line, exactly the rest.
    const a = keyIn(0, 'a');
    const b = keyIn(1, 'b');
    await producer.sendMany([
      [a, { prompt: 'a', count: 3 }],
      [b, { prompt: 'b', count: 3 }],
    ]);
    const all = [];
    const rest = [];
    for await (const o of postgresKeyOutputs({ ...shared(name), keys: [a, b] })) {
      all.push(o);
      if (all.length === 6) break;
    }
    assert.match(all[0].cursor, /^0:\d+-\d+,1:\d+-\d+$/);
    for await (const o of postgresKeyOutputs({ ...shared(name), keys: [b, a], from: all[2].cursor })) {
      rest.push(o);
      if (rest.length === 3) break;
    }
    assert.deepEqual(
      rest.map((o) => o.cursor),
      all.slice(3).map((o) => o.cursor),
    );
    await until(() => server.open() === 0, 'the responses done');
  } finally {
    for (const f of followers) f.close();
    await server.close();
    await w.close();
  }
});

test('stopping: `await using` ends its loops (one waiting, one at an output), an abort ends a loop and a response, a client that leaves ends its response; no statement after', async () => {
  const name = fresh('stop');
  const key = 'k';
  const w = worker(totals({ idleTimeout: 60_000 }), name);
  const producer = postgresProducer(shared(name));
  const counting = countingPool();
  const opts = { ...shared(name, counting), key, pollInterval: 10 };
  try {
    await producer.send(key, { n: 1 });
    await until(async () => (await stored(name, partitionOf(key))).length === 1, 'an output');
    let waiting;
    let atOutput;
    // (What `await using outputs = ...` calls at the scope's end; Node 20 does not parse the statement.)
    const outputs = postgresKeyOutputs(opts);
    const a = outputs[Symbol.asyncIterator]();
    const b = outputs[Symbol.asyncIterator]();
    assert.equal((await a.next()).value.value.n, 1);
    atOutput = a;
    assert.equal((await b.next()).value.value.n, 1);
    waiting = b.next();
    await sleep(50);
    await outputs[Symbol.asyncDispose]();
    assert.deepEqual(await waiting, { value: undefined, done: true });
    assert.deepEqual(await atOutput.next(), { value: undefined, done: true });
    let n = counting.queries();
    await sleep(100);
    assert.equal(counting.queries(), n, 'no statement after the dispose');
    // An abort: the loop ends quietly, and a loop with an aborted signal reads nothing.
    const controller = new AbortController();
    const got = [];
    setTimeout(() => controller.abort(), 100);
    for await (const o of postgresKeyOutputs({ ...opts, signal: controller.signal })) got.push(o.value.n);
    assert.deepEqual(got, [1]);
    n = counting.queries();
    for await (const o of postgresKeyOutputs({ ...opts, signal: controller.signal })) assert.fail(String(o));
    await sleep(50);
    assert.equal(counting.queries(), n, 'nothing read under an aborted signal');
    // A response: ended by its client leaving, and by the server's signal.
    const server = await keyServer({ ...opts, heartbeat: 0 }, (req) =>
      req.url.includes('abort') ? { signal: AbortSignal.timeout(200) } : {},
    );
    const leaving = follow(`${server.url}/sse/${key}`);
    await until(() => leaving.state.messages.length === 1, 'the output');
    leaving.close();
    await until(() => server.open() === 0, 'the response ended by the client leaving');
    const aborted = await get(`${server.url}/ndjson/${key}?abort=1`);
    assert.equal(aborted.status, 200);
    assert.equal(JSON.parse(aborted.text.trim()).value.n, 1);
    await until(() => server.open() === 0, 'the response ended by the abort');
    n = counting.queries();
    await sleep(100);
    assert.equal(counting.queries(), n, 'no statement after the responses ended');
    await server.close();
  } finally {
    await w.close();
  }
});
