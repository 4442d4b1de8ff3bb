// Options given as an instance of a class of the user's, on a private postgres: its getters and methods are options
// as an object literal's are (the entry point reads them through the instance), `effects` and `onOutput` methods
// are called, and a getter that throws is refused naming it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sessionProducer, sessionWorker } from 'velo-stream/durable';
import { streamFn } from 'velo-stream';
import { fresh } from './helpers/redis-suite.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';
import { postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const echo = streamFn(async function* echo(events) {
  for await (const e of events) yield e;
});

test("a class instance as a worker's options: its getters and its effects and onOutput methods are used", async (t) => {
  const pool = postgres.pool({ max: 6 });
  const name = fresh('classy');
  const seen = { effects: [], delivered: [] };
  class Options {
    partitions = 2;
    get client() {
      return pool;
    }
    get name() {
      return name;
    }
    async effects(tx, outputs) {
      seen.effects.push(...outputs.map((o) => o.value));
    }
    onOutput(item) {
      seen.delivered.push(item.value);
    }
    onError(error) {
      seen.error = error;
    }
  }
  const worker = sessionWorker(echo, new Options());
  t.after(async () => {
    await worker.close();
    await pool.end();
  });
  const producer = sessionProducer({ client: pool, name, partitions: 2 });
  await producer.send('k', { n: 1 });
  await eventually(() => seen.delivered.length === 1, 'the output delivered to the onOutput method', 30_000);
  assert.deepEqual(seen.effects, [{ n: 1 }], 'the effects method ran in the commit');
  assert.deepEqual(seen.delivered, [{ n: 1 }]);
  assert.equal(seen.error, undefined);
  // A getter of the class that throws: refused at the call, naming it.
  const boom = new Error('no client here');
  class Broken extends Options {
    get client() {
      throw boom;
    }
  }
  assert.throws(() => sessionWorker(echo, new Broken()), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: 'sessionWorker(): options.client cannot be read (an instance of Error)',
    cause: boom,
  });
});
