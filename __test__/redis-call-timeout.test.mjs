// `callTimeout`: what a user awaits of a producer, a reader or a materializer has a bound even while its
// connection keeps writing to a server that does not answer (a socket's idle timeout never fires then). Sends
// every 200 ms to a paused server (SIGSTOP) all reject with SendError (cause ERR_VELO_REDIS_TIMEOUT, ids
// undefined) while the server is still paused; after it resumes, the late answers change nothing that was handed
// out and sends succeed. A reader's `break` and a materializer's `close()` on a paused server end within theirs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientOfflineError, ErrorReply, SocketClosedUnexpectedlyError, TimeoutError, createClient } from 'redis';
import { redisClientOptions, redisMaterialize, redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { startRedis } from './helpers/redis-server.mjs';
import { eventually, interceptCommands, totals } from './helpers/redis-fixtures.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `promise`'s outcome, or null if it is still pending after `ms`: a hang detector far past the bound under test
 * (the assertions are on which settled before the server resumed, not on times).
 */
async function within(promise, ms) {
  let timer;
  try {
    return await Promise.race([outcome(promise), new Promise((resolve) => (timer = setTimeout(() => resolve(null), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** `{ value }` or `{ error }`, when `promise` settles (handled at once: no rejection is left unhandled). */
const outcome = (promise) =>
  promise.then(
    (value) => ({ value }),
    (error) => ({ error }),
  );

/** A client made as the docs recommend (the socket timeout alone never fires under steady sends). */
async function connected(url) {
  const c = createClient(redisClientOptions({ url }));
  c.on('error', () => {});
  await c.connect();
  return c;
}

test('callTimeout is checked: an integer from 1 to 2^31-1 ms, or Infinity; unknown to the worker', async () => {
  const redis = await startRedis();
  const client = await redis.client();
  try {
    for (const make of [
      (callTimeout) => redisProducer({ client, name: 'v', callTimeout }),
      (callTimeout) => redisOutputs({ client, name: 'v', callTimeout }),
      (callTimeout) => redisMaterialize({ client, name: 'v', key: () => 'h', fields: () => ({ a: 1 }), callTimeout }),
    ]) {
      for (const bad of [0, -1, 1.5, NaN, '5000', null, 2 ** 31, -Infinity]) {
        assert.throws(() => make(bad), {
          code: 'ERR_OUT_OF_RANGE',
          message: /the "callTimeout" option must be an integer from 1 to 2147483647 \(ms\), or Infinity/,
        });
      }
      for (const good of [1, 5000, 2 ** 31 - 1, Infinity, undefined]) {
        const made = make(good);
        await made.close?.();
      }
    }
    // Workers bound their waits by their leases: the option is not theirs.
    assert.throws(() => redisWorker(totals(), { client, name: 'v', callTimeout: 1000 }), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: /unknown option "callTimeout"/,
    });
  } finally {
    await redis.stop();
  }
});

test('sends every 200 ms to a paused server: each rejects by callTimeout while the server is still paused; after the resume sends succeed and the late answers change nothing', async () => {
  const redis = await startRedis();
  const client = await connected(redis.url);
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  const CALL_TIMEOUT = 800;
  const PARTITIONS = 4;
  const name = 'paused';
  const producer = redisProducer({ client, name, partitions: PARTITIONS, callTimeout: CALL_TIMEOUT, maxLag: 1_000_000 });
  try {
    // Healthy: sends answer, and the producer has measured every partition's lag once (admission needs no wait).
    for (let p = 0; p < PARTITIONS; p++) await producer.lag(p);
    assert.equal(typeof (await producer.send('k0', { n: 0 })), 'string');

    redis.pause();
    const calls = [];
    for (let i = 1; i <= 12; i++) {
      calls.push(
        outcome(
          i % 4 === 0
            ? producer.sendMany([`a${i}`, `b${i}`, `c${i}`, `d${i}`].map((key) => [key, { n: i }]))
            : producer.send(`k${i}`, { n: i }),
        ),
      );
      await sleep(200);
    }
    calls.push(outcome(producer.lag(0)));
    // Every call settles while the server is still paused (the detector fires only if one still waits far past
    // its bound: without callTimeout they all wait for the resume).
    const all = await within(Promise.all(calls), 30 * CALL_TIMEOUT);
    assert.notEqual(all, null, 'a call to the paused server was still waiting');
    const settled = all.value;
    const lag = settled.pop();
    assert.equal(lag.error?.code, 'ERR_VELO_REDIS_TIMEOUT', String(lag.error));
    assert.match(lag.error.message, /^lag measure: Redis did not answer within callTimeout \(800 ms\)$/);
    const ids = [];
    for (const [i, { error }] of settled.entries()) {
      assert.equal(error?.code, 'ERR_VELO_SEND_FAILED', `call ${i + 1}: ${error}`);
      assert.equal(error.cause?.code, 'ERR_VELO_REDIS_TIMEOUT');
      assert.equal(error.cause.timeout, CALL_TIMEOUT);
      const n = (i + 1) % 4 === 0 ? 4 : 1;
      // (Elements, not holes: forEach, map and filter see every one.)
      assert.deepEqual(error.ids, new Array(n).fill(undefined));
      assert.match(
        error.message,
        new RegExp(`0 of ${n} events written, 0 not, ${n} unknown: Redis did not answer within callTimeout`),
      );
      ids.push(error.ids);
    }
    redis.resume();

    // The client goes on: a send succeeds, and so does a lag measure.
    const after = await within(producer.send('k-after', { n: 99 }), 30 * CALL_TIMEOUT);
    assert.equal(typeof after?.value, 'string', String(after?.error));
    assert.equal(typeof (await producer.lag(0)), 'number');
    // The server ran the calls written before it paused when it resumed (unknown, as the ids said), each once:
    // nothing was sent again by the library, and the ids handed out did not change.
    const written = new Map();
    for (let p = 0; p < PARTITIONS; p++) {
      for (const { message } of await client.xRange(`velo:{${name}:p${p}}`, '-', '+')) {
        written.set(message.k, (written.get(message.k) ?? 0) + 1);
      }
    }
    assert.ok(
      [...written.values()].every((count) => count === 1),
      JSON.stringify([...written]),
    );
    assert.ok(written.has('k-after'));
    for (const list of ids) assert.ok(list.every((id) => id === undefined));
    assert.deepEqual(unhandled, []);
  } finally {
    redis.resume();
    process.off('unhandledRejection', onUnhandled);
    client.destroy();
    await redis.stop();
  }
});

test('callTimeout: Infinity waits for the paused server (no bound), and the send succeeds when it resumes', async () => {
  const redis = await startRedis();
  // Without the socket timeout: the wait is the server's pause alone.
  const client = await redis.client();
  const producer = redisProducer({ client, name: 'forever', partitions: 1, callTimeout: Infinity });
  try {
    await producer.send('k', 1);
    redis.pause();
    const send = producer.send('k', 2);
    assert.equal(await within(send, 1500), null, 'a send without a bound settled while the server was paused');
    redis.resume();
    assert.equal(typeof (await send), 'string');
  } finally {
    redis.resume();
    await redis.stop();
  }
});

/** Appends output entries to partition 0 of `name` as a worker writes them: `{ n }` values, sessions `k<n>@0-1`. */
async function writeOutputs(client, name, ns) {
  for (const n of ns) {
    await client.xAdd(`velo:{${name}:p0}:out`, '*', { sid: `k${n}@0-1`, seq: '1', k: `k${n}`, v: JSON.stringify({ n }) });
  }
}

test("a reader's break on a paused server: the loop ends by callTimeout though the acks it waits for get no answer; the outputs come back after the resume", async () => {
  const redis = await startRedis();
  // No socket timeout: without callTimeout the loop's end waits as long as the server is paused.
  const client = await redis.client();
  const name = 'reader';
  const CALL_TIMEOUT = 600;
  try {
    await writeOutputs(client, name, [1, 2, 3]);
    const loop = (async () => {
      for await (const item of redisOutputs({ client, name, partitions: 1, group: 'g', callTimeout: CALL_TIMEOUT })) {
        // The ack of output 1 goes out at the break, to the paused server.
        if (item.value.n === 2) {
          redis.pause();
          break;
        }
      }
    })();
    const ended = await within(loop, 30 * CALL_TIMEOUT);
    assert.notEqual(ended, null, "the loop's end still waited for the paused server");
    assert.equal(ended.error, undefined);
    redis.resume();
    // The same consumer again: output 2, on which the loop stopped, was never acked, and comes back (with 1, if the
    // server did not run its ack when it resumed); then 3.
    const seen = [];
    for await (const item of redisOutputs({ client, name, partitions: 1, group: 'g' })) {
      seen.push(item.value.n);
      if (item.value.n === 3) break;
    }
    assert.ok(seen.join() === '2,3' || seen.join() === '1,2,3', seen.join());
  } finally {
    redis.resume();
    await redis.stop();
  }
});

test("a materializer's close() on a paused server: it ends by callTimeout though the batch it writes gets no answer, reports nothing, and the batch is written at the next start", async () => {
  const redis = await startRedis();
  const client = await redis.client();
  const name = 'mat';
  const CALL_TIMEOUT = 600;
  // Its connection pauses the server as it sends its first script call (a batch's hash write).
  let writing;
  const inFlight = new Promise((resolve) => (writing = resolve));
  const pausing = (real) =>
    interceptCommands(real, (c, args, options) => {
      if (String(args[0]).startsWith('EVAL')) {
        redis.pause();
        writing();
      }
      return c.sendCommand(args, options);
    });
  const errors = [];
  const options = {
    name,
    partitions: 1,
    key: (output) => `h:${output.key}`,
    fields: (output) => ({ n: output.value.n }),
    onError: (error) => errors.push(error),
  };
  try {
    await writeOutputs(client, name, [1, 2, 3]);
    const materializer = redisMaterialize({
      ...options,
      client: pausing(client),
      callTimeout: CALL_TIMEOUT,
    });
    await inFlight;
    const closed = await within(materializer.close(), 30 * CALL_TIMEOUT);
    assert.notEqual(closed, null, 'close() still waited for the paused server');
    assert.equal(closed.error, undefined);
    assert.deepEqual(errors, []);
    redis.resume();
    // The batch stayed pending to the consumer: the next materializer writes it (or skips what the server wrote
    // when it resumed).
    const next = redisMaterialize({ ...options, client });
    await eventually(async () => (await client.hGet('h:k3', 'n')) === '3', 'the batch written at the next start');
    for (const n of [1, 2, 3]) assert.equal(await client.hGet(`h:k${n}`, 'n'), String(n));
    await next.close();
    assert.deepEqual(errors, []);
  } finally {
    redis.resume();
    await redis.stop();
  }
});

/**
 * A client that answers the producer's script calls itself, each `answer(call, args)` decides: a reply (the
 * script's `[ids]`) after a delay, or never (undefined).
 */
function scriptedClient(answer) {
  let calls = 0;
  const client = {
    sendCommand(args) {
      const reply = answer(calls++, args);
      return reply === undefined ? new Promise(() => {}) : reply;
    },
    duplicate: () => client,
    connect: async () => {},
    on: () => {},
    destroy: () => {},
  };
  return client;
}

/** The `[ids]` reply of the append script for its call `args` (EVALSHA sha numkeys key ...pairs), after `ms`. */
const appended = (args, ms) => sleep(ms).then(() => [Array.from({ length: (args.length - 4) / 2 }, (_, i) => `${args[3]}-${i}`)]);

test('sendMany in several calls: the bound restarts at each answer (a batch Redis works through is not cut); the calls left unanswered are unknown, the answered ones keep their ids', async () => {
  const PARTITIONS = 4;
  const probe = redisProducer({ client: scriptedClient(() => undefined), name: 'm', partitions: PARTITIONS });
  // One key per partition.
  const keys = [];
  for (let i = 0; keys.length < PARTITIONS; i++) if (probe.partitionOf(`k${i}`) === keys.length) keys.push(`k${i}`);
  // Answers 250 ms apart, one after the other: 1000 ms in all, past a bound of 600 ms from the call.
  let last = Promise.resolve();
  const steady = scriptedClient((_, args) => (last = last.then(() => appended(args, 250))));
  const ok = await redisProducer({ client: steady, name: 'm', partitions: PARTITIONS, callTimeout: 600 }).sendMany(
    keys.map((key) => [key, 1]),
  );
  assert.deepEqual(
    ok,
    [0, 1, 2, 3].map((p) => `velo:{m:p${p}}-0`),
  );
  // The third call never answered: once the others have (at once), it is unknown after the bound.
  const stuck = scriptedClient((call, args) => (call === 2 ? undefined : appended(args, 0)));
  const error = await redisProducer({ client: stuck, name: 'm', partitions: PARTITIONS, callTimeout: 300 })
    .sendMany(keys.map((key) => [key, 1]))
    .then(
      () => assert.fail('resolved'),
      (e) => e,
    );
  assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
  assert.equal(error.cause.code, 'ERR_VELO_REDIS_TIMEOUT');
  assert.equal(error.ids.filter((id) => id === undefined).length, 1);
  assert.equal(error.ids.filter((id) => typeof id === 'string').length, 3);
  assert.match(
    error.message,
    /^sendMany\(\): 3 of 4 events written, 0 not, 1 unknown: Redis did not answer within callTimeout \(300 ms\)$/,
  );
});

test('a call Redis refused before running it (LOADING, READONLY, an offline client, one node-redis timed out unwritten) wrote nothing: its events are null, not unknown', async () => {
  const PARTITIONS = 6;
  const probe = redisProducer({ client: scriptedClient(() => undefined), name: 'm', partitions: PARTITIONS });
  const keys = [];
  for (let i = 0; keys.length < PARTITIONS; i++) if (probe.partitionOf(`k${i}`) === keys.length) keys.push(`k${i}`);
  const failures = [
    new ErrorReply('LOADING Redis is loading the dataset in memory'),
    null,
    new ErrorReply("READONLY You can't write against a read only replica."),
    new ClientOfflineError(),
    new SocketClosedUnexpectedlyError(),
    // (node-redis' commandOptions.timeout: only a command not yet written gets it.)
    new TimeoutError(),
  ];
  const client = scriptedClient((call, args) => {
    const p = Number(/:p(\d+)\}$/.exec(String(args[3]))[1]);
    return failures[p] === null ? appended(args, 0) : Promise.reject(failures[p]);
  });
  const error = await redisProducer({ client, name: 'm', partitions: PARTITIONS })
    .sendMany(keys.map((key) => [key, 1]))
    .then(
      () => assert.fail('resolved'),
      (e) => e,
    );
  assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
  // Refused before it ran: not written. A connection closed under the call: unknown (it may have run).
  assert.deepEqual(error.ids, [null, 'velo:{m:p1}-0', null, null, undefined, null]);
  assert.match(error.message, /^sendMany\(\): 1 of 6 events written, 4 not, 1 unknown: LOADING /);
});

test('with maxLag, a partition whose first lag measure fails: the send rejects with SendError, its events not written (null)', async () => {
  // The lag script never answers: the measure the send waits for fails by callTimeout.
  const producer = redisProducer({ client: scriptedClient(() => undefined), name: 'm', partitions: 2, maxLag: 10, callTimeout: 200 });
  for (const [call, send] of [
    ['send()', () => producer.send('k', 1)],
    ['sendMany()', () => producer.sendMany([['a', 1], ['b', 2], ['c', 3]])],
  ]) {
    const error = await send().then(
      () => assert.fail('resolved'),
      (e) => e,
    );
    assert.equal(error.code, 'ERR_VELO_SEND_FAILED', call);
    assert.equal(error.name, 'SendError');
    assert.equal(error.cause.code, 'ERR_VELO_REDIS_TIMEOUT');
    assert.deepEqual(error.ids, call === 'send()' ? [null] : [null, null, null]);
    assert.match(error.message, new RegExp(`^${call.replace(/[()]/g, '\\$&')}: 0 of \\d events written, \\d not: lag measure: Redis did not answer`));
  }
});

test("sendMany's events: an array (or iterable) of [key, event] pairs, else ERR_INVALID_ARG_TYPE saying what is wrong; nothing sent", async () => {
  let calls = 0;
  const producer = redisProducer({ client: scriptedClient(() => (calls++, undefined)), name: 'm', partitions: 2 });
  const refused = async (events, message) =>
    assert.rejects(producer.sendMany(events), (e) => e.code === 'ERR_INVALID_ARG_TYPE' && message.test(e.message), String(events));
  await refused('nope', /^sendMany\(\): events must be an array \(or iterable\) of \[key, event\] pairs, not type string/);
  await refused(null, /events must be an array \(or iterable\)/);
  await refused([['k']], /^sendMany\(\): item 0 must be a \[key, event\] pair, not an array of 1 item\(s\)$/);
  await refused([['k', 1], 'k2'], /^sendMany\(\): item 1 must be a \[key, event\] pair, not type string/);
  assert.equal(calls, 0);
});
