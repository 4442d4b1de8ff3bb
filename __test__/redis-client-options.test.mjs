// The node-redis client configuration the docs recommend (`redisClientOptions`), run as production runs it:
// a producer, a worker and a redisOutputs reader that sit idle for longer than the socket timeout stay
// connected; after a restart of redis-server (stopped by PID, started again on the same port and directory)
// sends and reads work again; and a send to a paused server (SIGSTOP) fails by the socket timeout instead of
// waiting for the server. Also the trap it avoids: node-redis' `socket.socketTimeout` alone closes an idle
// client for good.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createClient } from 'redis';
import { redisClientOptions, redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { keyCursor } from 'velo-stream/durable';
import { startRedis } from './helpers/redis-server.mjs';
import { eventually, totals } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 4;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A connected client made with `options`, whose 'error' events are counted in `errors` (by class name). */
async function connected(options, errors = []) {
  const c = createClient(options);
  c.on('error', (error) => errors.push(error.constructor.name));
  await c.connect();
  return c;
}

test('redisClientOptions: the recommended settings, yours kept and winning, bad values refused with ERR_OUT_OF_RANGE', () => {
  const o = redisClientOptions({ url: 'redis://h:1', socket: { tls: true }, commandOptions: { timeout: 9000 } });
  assert.equal(o.url, 'redis://h:1');
  assert.equal(o.pingInterval, 1000);
  assert.equal(o.socket.socketTimeout, 5000);
  assert.equal(o.socket.tls, true);
  assert.equal(o.commandOptions.timeout, 9000);
  // Always a number (a retry), also for a socket timeout, which node-redis' default gives up on.
  for (let retries = 0; retries < 12; retries++) {
    const wait = o.socket.reconnectStrategy(retries, new Error('Socket timeout'));
    assert.ok(Number.isInteger(wait) && wait >= 50 && wait < 2200, String(wait));
  }
  assert.equal(redisClientOptions().socket.socketTimeout, 5000);
  // An unset variable as the url: left out (node-redis' default server), not an own `url: undefined`.
  assert.equal('url' in redisClientOptions({ url: undefined }), false);
  assert.equal(redisClientOptions({ url: 'redis://h:2' }).url, 'redis://h:2');
  assert.equal(redisClientOptions({ pingInterval: 400, socket: { socketTimeout: 800 } }).socket.socketTimeout, 800);
  for (const bad of [
    { pingInterval: 0 },
    { pingInterval: 1.5 },
    { pingInterval: null },
    { socket: { socketTimeout: 1999 } },
    { pingInterval: 3000 },
  ]) {
    assert.throws(() => redisClientOptions(bad), { code: 'ERR_OUT_OF_RANGE', message: /^redisClientOptions\(\): the "/ });
  }
  // Not an options object: a URL given alone would be spread into its characters, and the address lost.
  const trap = new Proxy(
    {},
    {
      get() {
        throw new Error('trap');
      },
    },
  );
  for (const bad of ['redis://h:1', 5, [1], () => 1, null, trap]) {
    assert.throws(() => redisClientOptions(bad), { code: 'ERR_INVALID_ARG_TYPE' }, String(typeof bad));
  }
});

test('socket.socketTimeout alone (node-redis default reconnects): an idle client is closed for good, and a later send fails', async () => {
  const redis = await startRedis();
  try {
    const idle = await connected({ url: redis.url, socket: { socketTimeout: 1000 } });
    const producer = redisProducer({ client: idle, name: 'trap', partitions: PARTITIONS });
    await producer.send('k', { n: 0 });
    // node-redis gives up reconnecting after a socket timeout: 'terminated', then every call is refused.
    await once(idle, 'terminated');
    assert.equal(idle.isOpen, false);
    await assert.rejects(producer.send('k', { n: 1 }), (error) => {
      assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
      assert.equal(error.cause?.constructor.name, 'ClientClosedError');
      return true;
    });
    // lag() too, coded as a lost connection.
    await assert.rejects(producer.lag('k'), (error) => {
      assert.equal(error.code, 'ERR_VELO_REDIS_CONNECTION');
      assert.equal(error.cause?.constructor.name, 'ClientClosedError');
      return true;
    });
  } finally {
    await redis.stop();
  }
});

test('redisClientOptions: idle past the socket timeout, a restart, then a paused server: sends and reads go on, a send to the paused server fails by the socket timeout', async () => {
  const redis = await startRedis({ aof: true });
  const options = redisClientOptions({ url: redis.url });
  const { socketTimeout } = options.socket;
  const { pingInterval } = options;
  // A producer's process and a worker's, each with its own client.
  const producerErrors = [];
  const workerClientErrors = [];
  const producerClient = await connected(options, producerErrors);
  const workerClient = await connected(options, workerClientErrors);
  const reported = [];
  const name = 'prod';
  // No bound of the producer's own (callTimeout): the paused send below is failed by the client's socket timeout.
  const producer = redisProducer({ client: producerClient, name, partitions: PARTITIONS, callTimeout: Infinity });
  const worker = redisWorker(totals({ idleTimeout: 100 }), {
    client: workerClient,
    name,
    partitions: PARTITIONS,
    onError: (error) => reported.push(error),
  });
  const abort = new AbortController();
  const seen = [];
  const reading = (async () => {
    for await (const item of redisOutputs({ client: producerClient, name, partitions: PARTITIONS, signal: abort.signal }))
      seen.push(item.value.n);
  })();
  let n = 0;
  /** Sends one event and waits until the reader has its output. */
  const roundTrip = async (what) => {
    const mine = ++n;
    await producer.send(`k${mine}`, { n: mine });
    await eventually(() => seen.includes(mine), `the output of the event sent ${what}`, 30_000);
  };
  try {
    await roundTrip('first');

    // Idle: nothing sent or read for longer than the socket timeout (plus a ping period).
    await sleep(socketTimeout + 2 * pingInterval);
    assert.equal(producerClient.isOpen, true);
    await roundTrip('after the idle time');
    // Nobody reconnected: no connection timed out (the worker reports its own connections' errors).
    assert.deepEqual(producerErrors, []);
    assert.deepEqual(workerClientErrors, []);
    assert.deepEqual(reported, []);

    // Stopped by PID and started again on the same port and directory (append-only file: nothing lost).
    await redis.restart();
    await roundTrip('after the restart');
    assert.ok(
      reported.every((error) => error.code === 'ERR_VELO_REDIS_CONNECTION'),
      reported.map(String).join('\n'),
    );

    // Paused: the send is written, and no reply comes. The socket timeout fails it (with the connection); a
    // hang is caught by the guard far beyond the bound.
    const bound = socketTimeout + pingInterval;
    redis.pause();
    let guard;
    try {
      const failed = await Promise.race([
        producer.send('paused', { n: -1 }).then(
          () => assert.fail('a send to a paused server succeeded'),
          (error) => error,
        ),
        new Promise((resolve) => (guard = setTimeout(() => resolve(null), 4 * bound))),
      ]);
      assert.notEqual(failed, null, `the send to a paused server still waited after ${4 * bound} ms`);
      assert.equal(failed.code, 'ERR_VELO_SEND_FAILED');
      assert.equal(failed.cause?.constructor.name, 'SocketTimeoutError');
      // Whether it was written is unknown: the server may run it when it resumes.
      assert.equal(failed.ids.length, 1);
      assert.equal(failed.ids[0], undefined);
    } finally {
      clearTimeout(guard);
      redis.resume();
    }
    await roundTrip('after the pause');
    assert.equal(producerClient.isOpen, true);
    assert.equal(workerClient.isOpen, true);
  } finally {
    abort.abort();
    await reading;
    await worker.close();
    producerClient.destroy();
    workerClient.destroy();
    await redis.stop();
  }
});

test('a cursor asked of a server that does not answer rejects coded, as a lost connection', async () => {
  const redis = await startRedis();
  const client = await connected(redisClientOptions({ url: redis.url }));
  try {
    redis.pause();
    await assert.rejects(keyCursor({ client, name: 'paused', partitions: PARTITIONS, key: 'k' }), (error) => {
      assert.equal(error.code, 'ERR_VELO_REDIS_CONNECTION');
      assert.ok(error.cause instanceof Error);
      return true;
    });
  } finally {
    redis.resume();
    // (Closed once it is back: a client destroyed while it reconnects goes on trying.)
    await sleep(200);
    await client.close().catch(() => {});
    await redis.stop();
  }
});
