// Names that go into the store as text (a function's name, a worker's id, a reader's group and consumer, a
// limiter's name) are refused with a code when Redis or Postgres would store them as something else: a lone
// surrogate becomes U+FFFD in UTF-8, so two such names would name one function, and a worker of one would serve
// the other's keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { streamFn } from 'velo-stream';
import { redisProducer, redisWorker, redisOutputs, redisMaterialize, redisLimiter } from 'velo-stream/redis';
import { postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { client, useRedis } from './helpers/redis-suite.mjs';
import { sessionOutputs, sessionProducer, sessionWorker } from 'velo-stream/durable';

useRedis();

const echo = streamFn(async function* (events) {
  for await (const e of events) yield e;
});
const lone = ['x\ud800', 'x\udc00y', '\udbff'];
/** `make()` throws an error of `code`; what it made instead is closed, so a wrong answer fails rather than hangs. */
async function refuses(make, code, what) {
  let made;
  try {
    made = make();
  } catch (e) {
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return;
  }
  await made?.close?.();
  assert.fail(`${what}: accepted`);
}

test('a function name with a lone surrogate is refused by every Redis and Postgres entry point (ERR_INVALID_ARG_VALUE)', async () => {
  const pool = new pg.Pool({ max: 1 });
  try {
    for (const name of lone) {
      await refuses(() => redisProducer({ client, name }), 'ERR_INVALID_ARG_VALUE', `producer ${JSON.stringify(name)}`);
      await refuses(() => redisWorker(echo, { client, name }), 'ERR_INVALID_ARG_VALUE', 'worker');
      await refuses(() => redisOutputs({ client, name }), 'ERR_INVALID_ARG_VALUE', 'outputs');
      await refuses(
        () => redisMaterialize({ client, name, key: () => 'h', fields: () => ({}) }),
        'ERR_INVALID_ARG_VALUE',
        'materialize',
      );
      await refuses(() => redisLimiter({ client, name, concurrency: 1 }), 'ERR_INVALID_ARG_VALUE', 'limiter');
      await refuses(() => postgresProducer({ pool, schema: 'velo', name }), 'ERR_INVALID_ARG_VALUE', 'pg producer');
      await refuses(() => postgresWorker(echo, { pool, schema: 'velo', name }), 'ERR_INVALID_ARG_VALUE', 'pg worker');
    }
    // A well-formed name outside the BMP (a surrogate pair) is a name like any other.
    const producer = redisProducer({ client, name: 'fn-\u{1F600}' });
    assert.equal(typeof producer.send, 'function');
  } finally {
    void pool.end();
  }
});

test("a worker's id, a reader's group and consumer: empty or with a lone surrogate refused as values, a non-string as a type", async () => {
  for (const workerId of lone) {
    await refuses(() => redisWorker(echo, { client, name: 'ids', workerId }), 'ERR_INVALID_ARG_VALUE', 'workerId');
  }
  // Control characters, NUL first (Postgres stores none: every call would fail): refused at the call.
  for (const workerId of ['w\0x', 'w\x07', 'w\x7f', 'w\u0085']) {
    await refuses(() => redisWorker(echo, { client, name: 'ids', workerId }), 'ERR_INVALID_ARG_VALUE', 'workerId');
  }
  for (const [option, value, code] of [
    ['group', '', 'ERR_INVALID_ARG_VALUE'],
    ['group', 'g\ud800', 'ERR_INVALID_ARG_VALUE'],
    ['group', 5, 'ERR_INVALID_ARG_TYPE'],
    ['consumer', '', 'ERR_INVALID_ARG_VALUE'],
    ['consumer', '\udc00', 'ERR_INVALID_ARG_VALUE'],
    ['consumer', null, 'ERR_INVALID_ARG_TYPE'],
  ]) {
    const options = { client, name: 'readers', group: 'g', [option]: value };
    await refuses(() => redisOutputs(options), code, `redisOutputs ${option} ${String(value)}`);
    await refuses(
      () => redisMaterialize({ ...options, key: () => 'h', fields: () => ({}) }),
      code,
      `redisMaterialize ${option} ${String(value)}`,
    );
  }
});

test("a function, an option or events that cannot be read (a Proxy whose trap throws) are ERR_INVALID_ARG_TYPE, the trap's error as cause", async () => {
  const base = { client, name: 'unreadable', partitions: 2 };
  const trapped = () => {
    const error = new Error('trap');
    const fail = () => {
      throw error;
    };
    const proxy = new Proxy({}, { get: fail, has: fail, ownKeys: fail, getPrototypeOf: fail, getOwnPropertyDescriptor: fail });
    return { proxy, error };
  };
  const calls = [
    ['sessionWorker(fn)', (p) => sessionWorker(p, base)],
    ['sessionProducer({ codec })', (p) => sessionProducer({ ...base, codec: p })],
    ['sessionOutputs({ after })', (p) => sessionOutputs({ ...base, after: p })],
    ['sendMany(events)', (p) => sessionProducer(base).sendMany(p)],
  ];
  for (const [what, call] of calls) {
    const { proxy, error } = trapped();
    await assert.rejects((async () => call(proxy))(), (e) => e.code === 'ERR_INVALID_ARG_TYPE' && e.cause === error, what);
  }
});
