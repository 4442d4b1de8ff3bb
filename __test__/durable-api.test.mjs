// velo-stream/durable picks its backend by `options.client`, and refuses a client of neither kind with a coded
// error naming the entry point: null, undefined, a plain object, a node-redis client not connected (or closed), a
// pg.Pool that was ended, a single pg.Client; `schema` with a Redis client; the pool under its velo-stream/postgres
// name. No server is needed: each is refused at the call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createClient } from 'redis';
import { limiter, streamFn } from 'velo-stream';
import * as durable from 'velo-stream/durable';
import { postgresWorker } from 'velo-stream/postgres';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';

const fn = streamFn(async function* (events) {
  for await (const e of events) yield e;
});

/** A request and its response, on no connection (the options are refused before either is used). */
function exchange() {
  const req = new IncomingMessage(new Socket());
  return [req, new ServerResponse(req)];
}

/** Every entry point that takes options, called with `options` (the worker with `fn`, the HTTP ones with no request). */
const ENTRIES = {
  sessionWorker: (o) => durable.sessionWorker(fn, o),
  sessionProducer: (o) => durable.sessionProducer(o),
  sessionOutputs: (o) => durable.sessionOutputs(o),
  keyOutputs: (o) => durable.keyOutputs({ key: 'k', ...o }),
  keyCursor: (o) => durable.keyCursor({ key: 'k', ...o }),
  keySse: (o) => durable.keySse(...exchange(), { key: 'k', ...o }),
  keyNdjson: (o) => durable.keyNdjson(...exchange(), { key: 'k', ...o }),
  sessionVersions: (o) => durable.sessionVersions(o),
  fleetLimiter: (o) => durable.fleetLimiter({ concurrency: 1, ...o }),
  exportRecording: (o) => durable.exportRecording(o),
  keyState: (o) => durable.keyState(o),
  materialize: (o) => durable.materialize({ key: () => 'h', fields: () => ({ a: 1 }), ...o }),
};

/** The error of `call` (thrown, or the rejection of what it returned). */
async function errorOf(call) {
  try {
    await call();
  } catch (error) {
    return error;
  }
  assert.fail('no error');
}

test('a client of neither kind: ERR_INVALID_ARG_TYPE from every entry point, naming it and both kinds', async () => {
  for (const [name, call] of Object.entries(ENTRIES)) {
    for (const client of [null, undefined, {}, { query: 1 }, 'redis://localhost', 42]) {
      const error = await errorOf(() => call({ client, name: 'f' }));
      assert.equal(error.code, 'ERR_INVALID_ARG_TYPE', `${name}(${typeof client})`);
      assert.ok(
        error.message.startsWith(`${name}(): options.client must be a connected node-redis client or a node-postgres Pool`),
        error.message,
      );
    }
    for (const options of [null, undefined, 'x']) {
      const error = await errorOf(() =>
        call === ENTRIES.sessionWorker ? durable.sessionWorker(fn, options) : durable[name](options),
      );
      assert.equal(error.code, 'ERR_INVALID_ARG_TYPE', `${name}(${String(options)})`);
    }
  }
});

test('an option whose getter throws, and options a Proxy cannot list: ERR_INVALID_ARG_TYPE from every entry point, naming the option, the error as cause', async () => {
  const boom = new Error('getter says no');
  const clients = { redis: createClient(), postgres: new pg.Pool() };
  for (const [backend, client] of Object.entries(clients)) {
    for (const name of Object.keys(ENTRIES)) {
      const call = (options) =>
        name === 'sessionWorker'
          ? durable.sessionWorker(fn, options)
          : name === 'keySse' || name === 'keyNdjson'
            ? durable[name](...exchange(), options)
            : durable[name](options);
      for (const bad of ['name', 'client', 'onError']) {
        const options = { client, name: 'f', key: 'k', concurrency: 1 };
        Object.defineProperty(options, bad, {
          enumerable: true,
          get: () => {
            throw boom;
          },
        });
        const error = await errorOf(() => call(options));
        assert.equal(error.code, 'ERR_INVALID_ARG_TYPE', `${name} on ${backend}: ${error.message}`);
        assert.equal(error.message, `${name}(): options.${bad} cannot be read (an instance of Error)`);
        assert.equal(error.cause, boom);
      }
      // (An inherited option is read too.)
      const inherited = Object.create({
        get name() {
          throw boom;
        },
      });
      inherited.client = client;
      assert.equal((await errorOf(() => call(inherited))).cause, boom, `${name}: inherited`);
      const listing = new Proxy(
        { client, name: 'f' },
        {
          ownKeys: () => {
            throw boom;
          },
        },
      );
      const error = await errorOf(() => call(listing));
      assert.equal(error.code, 'ERR_INVALID_ARG_TYPE');
      assert.equal(error.message, `${name}(): options cannot be read (an instance of Error)`);
      assert.equal(error.cause, boom);
    }
  }
  await clients.postgres.end();
});

test('a node-redis client that is not connected (or was closed): ERR_INVALID_ARG_VALUE naming the entry point', async () => {
  const client = createClient({ url: 'redis://127.0.0.1:1' });
  for (const [name, call] of Object.entries(ENTRIES)) {
    const error = await errorOf(() => call({ client, name: 'f' }));
    assert.equal(error.code, 'ERR_INVALID_ARG_VALUE', name);
    assert.equal(error.message, `${name}(): options.client is not connected: await client.connect() first`);
  }
});

test('a pg.Pool that was ended: ERR_INVALID_ARG_VALUE; a single pg.Client: ERR_VELO_NOT_A_POOL (Redis-only entry points: ERR_INVALID_ARG_TYPE)', async () => {
  const ended = new pg.Pool({ host: '127.0.0.1', port: 1 });
  await ended.end();
  const single = new pg.Client({ host: '127.0.0.1', port: 1 });
  for (const [name, call] of Object.entries(ENTRIES)) {
    const redisOnly = name === 'keyState' || name === 'materialize';
    const e1 = await errorOf(() => call({ client: ended, name: 'f' }));
    const e2 = await errorOf(() => call({ client: single, name: 'f' }));
    if (redisOnly) {
      for (const e of [e1, e2]) {
        assert.equal(e.code, 'ERR_INVALID_ARG_TYPE', name);
        assert.match(e.message, new RegExp(`^${name}\\(\\): options.client must be a node-redis client: `));
      }
      continue;
    }
    assert.equal(e1.code, 'ERR_INVALID_ARG_VALUE', name);
    assert.equal(e1.message, `${name}(): the pool was ended (pool.end()): pass a pool that is open`);
    assert.equal(e2.code, 'ERR_VELO_NOT_A_POOL', name);
    assert.ok(e2.message.startsWith(`${name}(): the pool is a single connection`), e2.message);
  }
});

test('schema with a Redis client, and the pool as `pool`: refused by name', async () => {
  const client = createClient({ url: 'redis://127.0.0.1:1' });
  const pool = new pg.Pool({ host: '127.0.0.1', port: 1 });
  try {
    for (const [name, call] of Object.entries(ENTRIES)) {
      const e1 = await errorOf(() => call({ client, schema: 'app', name: 'f' }));
      assert.equal(e1.code, 'ERR_INVALID_ARG_VALUE', name);
      assert.match(e1.message, new RegExp(`^${name}\\(\\): options.schema names a Postgres schema: a Redis client takes none`));
      const e2 = await errorOf(() => call({ pool, name: 'f' }));
      assert.equal(e2.code, 'ERR_INVALID_ARG_TYPE', name);
      assert.equal(e2.message, `${name}(): the pool goes in options.client (options.pool is its name in velo-stream/postgres)`);
    }
    // The backends' own names of what they alone take are refused with the other client, by the backend's check.
    const error = await errorOf(() => durable.sessionProducer({ client: pool, name: 'f', maxLag: 5 }));
    assert.equal(error.code, 'ERR_INVALID_ARG_VALUE');
    assert.match(
      error.message,
      /^sessionProducer\(\): unknown option "maxLag" \(an option on Redis, not on Postgres\). Known options: client, schema, name/,
    );
    const effects = await errorOf(() =>
      durable.sessionWorker(
        streamFn(async function* () {}),
        { client, name: 'f', effects: () => {} },
      ),
    );
    assert.equal(effects.code, 'ERR_INVALID_ARG_VALUE');
    assert.match(
      effects.message,
      /^sessionWorker\(\): unknown option "effects" \(an option on Postgres, not on Redis\). Known options: client, name/,
    );
    // A value only Redis has: trimming to what consumer groups acked (Postgres has none, and would trim nothing).
    const acked = await errorOf(() =>
      durable.sessionWorker(
        streamFn(async function* () {}),
        { client: pool, name: 'f', outputRetention: 'acked' },
      ),
    );
    assert.equal(acked.code, 'ERR_INVALID_ARG_VALUE');
    assert.match(acked.message, /^sessionWorker\(\): options.outputRetention 'acked' is an option on Redis, not on Postgres/);
    const bogus = await errorOf(() => durable.sessionProducer({ client: pool, name: 'f', bogus: 5 }));
    assert.match(bogus.message, /^sessionProducer\(\): unknown option "bogus". Known options: /);
    const policy = await errorOf(() =>
      durable.fleetLimiter({ client: pool, name: 'api', concurrency: 1, whenPostgresFails: 'local' }),
    );
    assert.match(policy.message, /^fleetLimiter\(\): unknown option "whenPostgresFails": on Postgres it is "whenBackendFails"/);
  } finally {
    await pool.end();
  }
});

/** Worker options refused by the engine's checks (the `limiter` and `version` options), with their codes. */
const BAD_WORKER_OPTIONS = [
  [{ limiter: 5 }, 'ERR_INVALID_ARG_TYPE'],
  [{ limiter: {} }, 'ERR_INVALID_ARG_VALUE'],
  [{ limiter: { session: limiter({ concurrency: 1 }), maxWaiting: 0 } }, 'ERR_OUT_OF_RANGE'],
  [{ limiter: { session: limiter({ concurrency: 1, mode: 'reject' }) } }, 'ERR_INVALID_ARG_VALUE'],
  [{ versions: {} }, 'ERR_INVALID_ARG_VALUE'],
  [{ migrate: (s) => s }, 'ERR_INVALID_ARG_VALUE'],
  [{ version: 'a b' }, 'ERR_INVALID_ARG_VALUE'],
  [{ version: 'v2', versions: 1 }, 'ERR_INVALID_ARG_TYPE'],
  [{ version: 'v2', migrate: async (s) => s }, 'ERR_INVALID_ARG_TYPE'],
];

test('the limiter and version options are refused naming the entry point called (sessionWorker, postgresWorker)', async () => {
  const pool = new pg.Pool({ host: '127.0.0.1', port: 1 });
  try {
    const entries = {
      sessionWorker: (o) => durable.sessionWorker(fn, { client: pool, name: 'f', ...o }),
      postgresWorker: (o) => postgresWorker(fn, { pool, name: 'f', ...o }),
    };
    const misnamed = [];
    for (const [name, call] of Object.entries(entries)) {
      for (const [options, code] of BAD_WORKER_OPTIONS) {
        const error = await errorOf(() => call(options));
        assert.equal(error.code, code, `${name} ${Object.keys(options).join()}`);
        if (!error.message.startsWith(`${name}(): `)) misnamed.push(`${name}: ${error.message}`);
      }
    }
    assert.deepEqual(misnamed, []);
  } finally {
    await pool.end();
  }
});

test('functionName: the name, typed; refuses what is no stream function or no name', () => {
  assert.equal(durable.functionName(fn, 'orders'), 'orders');
  assert.throws(() => durable.functionName({}, 'orders'), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: /^functionName\(\): fn must be a stream function/,
  });
  assert.throws(() => durable.functionName(fn, 'a b'), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /^functionName\(\): the "name" option/,
  });
});

test("sendMany's events on Postgres: an array (or iterable) of [key, event] pairs, else ERR_INVALID_ARG_TYPE saying what is wrong", async () => {
  const pool = new pg.Pool({ host: '127.0.0.1', port: 1 });
  try {
    const producer = durable.sessionProducer({ client: pool, name: 'f' });
    await assert.rejects(producer.sendMany('nope'), {
      code: 'ERR_INVALID_ARG_TYPE',
      message: /^sendMany\(\): events must be an array \(or iterable\)/,
    });
    await assert.rejects(producer.sendMany([['k']]), {
      code: 'ERR_INVALID_ARG_TYPE',
      message: /item 0 must be a \[key, event\] pair, not an array of 1 item\(s\)$/,
    });
  } finally {
    await pool.end();
  }
});
