// A deadline on a call answered over a socket is judged after the event loop has read what its sockets hold: when
// the process was frozen or its event loop blocked past the deadline, an answer that came meanwhile is the call's
// result, not a timeout (and on Postgres its connection is kept). A call with no answer still fails at its deadline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect } from 'node:net';
import { createRequire } from 'node:module';
import { usePostgres, postgres } from './helpers/postgres-suite.mjs';

const require = createRequire(import.meta.url);
const { IoDeadline } = require('../dist/io-deadline.js');
const { settleWithin } = require('../dist/redis/log/connection.js');
const { withTimeout } = require('../dist/durable/common/limiter-view.js');
const { PoolGate } = require('../dist/postgres/log/gate.js');

usePostgres();

/** The event loop held for `ms`, as a frozen process or a long synchronous task holds it. */
function block(ms) {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

/** Two ends of a TCP connection on 127.0.0.1: what `near.write()` writes, `far` reads (`answer`: its first bytes). */
async function socketPair() {
  let far;
  const accepted = new Promise((resolve) => {
    const server = createServer((socket) => {
      server.close();
      resolve(socket);
    });
    server.listen(0, '127.0.0.1', () => {
      far = connect(server.address().port, '127.0.0.1');
    });
  });
  const near = await accepted;
  await new Promise((resolve) => (far.connecting ? far.once('connect', resolve) : resolve()));
  const answer = new Promise((resolve) => far.once('data', (data) => resolve(data.toString())));
  return { near, far, answer, close: () => (near.destroy(), far.destroy()) };
}

/** `deadline(call)` answered while the loop is blocked past its deadline: the answer, not a timeout. */
async function answeredWhileBlocked(deadline) {
  const pair = await socketPair();
  try {
    const result = deadline(pair.answer);
    pair.near.write('the answer');
    block(150);
    return await result;
  } finally {
    pair.close();
  }
}

/** `deadline(call)` never answered: its timeout. */
async function neverAnswered(deadline) {
  const pair = await socketPair();
  try {
    return await deadline(pair.answer).then(
      () => assert.fail('an unanswered call resolved'),
      (error) => error,
    );
  } finally {
    pair.close();
  }
}

const late = (ms, what) => Object.assign(new Error(`${what}: late after ${ms} ms`), { code: 'LATE' });

test('IoDeadline: an answer read in the turn the timer fires in clears it; none, and it runs', async () => {
  const ioDeadline = (call) =>
    new Promise((resolve, reject) => {
      const deadline = new IoDeadline(() => reject(late(20, 'call')), 20);
      call.then((value) => {
        deadline.clear();
        resolve(value);
      });
    });
  assert.equal(await answeredWhileBlocked(ioDeadline), 'the answer');
  assert.equal((await neverAnswered(ioDeadline)).code, 'LATE');
});

test("settleWithin (Redis producer's calls): an answer that came while the loop was blocked is the call's outcome", async () => {
  const within = (call) =>
    new Promise((resolve, reject) => {
      void settleWithin(
        [call],
        20,
        () => late(20, 'send'),
        (_, ok, outcome) => (ok ? resolve(outcome) : reject(outcome)),
      );
    });
  assert.equal(await answeredWhileBlocked(within), 'the answer');
  assert.equal((await neverAnswered(within)).code, 'LATE');
});

test("withTimeout (the fleet limiters' store calls): the same", async () => {
  const within = (call) => withTimeout(call, 20, 'acquire', late);
  assert.equal(await answeredWhileBlocked(within), 'the answer');
  assert.equal((await neverAnswered(within)).code, 'LATE');
});

test('Postgres: a statement answered while the loop was blocked past callTimeout is its result, and its connection stays', async () => {
  const raw = postgres.pool({ max: 1 });
  const gate = new PoolGate(raw, 50);
  try {
    const client = await gate.pool.connect();
    // (The destroyed connection's error, at the end.)
    client.on('error', () => {});
    try {
      const { pid } = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0];
      const pending = client.query('SELECT 41 + 1 AS n');
      block(400);
      assert.deepEqual((await pending).rows, [{ n: 42 }]);
      // The same connection: it was not destroyed.
      assert.deepEqual((await client.query('SELECT pg_backend_pid() AS pid')).rows, [{ pid }]);
      // A statement that runs past callTimeout still fails with its code, and its connection is destroyed.
      await assert.rejects(client.query('SELECT pg_sleep(1)'), (e) => e.code === 'ERR_VELO_POSTGRES_TIMEOUT');
    } finally {
      client.release(true);
    }
  } finally {
    await gate.close();
    await raw.end();
  }
});
