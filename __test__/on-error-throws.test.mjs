// An `onError` that throws, or returns a promise that rejects, ends neither the process nor the worker: what it threw
// becomes a process warning (ERR_VELO_ON_ERROR, with the error it was given as `reported` and its throw as `cause`),
// and the worker goes on serving. The report comes from the backend (a script call that failed, as when the server
// restarts), so the throw would otherwise unwind into the worker's own retry loop or the client's event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { reporterOf } from '../dist/errors/index.js';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { eventually, interceptCommands, totals } from './helpers/redis-fixtures.mjs';
import { warningsOf } from './helpers/util.mjs';

useRedis();

/** `real` as the worker sees it, except that its connections' first `failures` script calls fail as a lost connection. */
function failingScripts(real, failures) {
  let left = failures;
  return interceptCommands(real, (c, args, options) => {
    if (!String(args[0]).startsWith('EVAL') || left === 0) return c.sendCommand(args, options);
    left--;
    return Promise.reject(Object.assign(new Error('Socket closed unexpectedly'), { name: 'SocketClosedUnexpectedlyError' }));
  });
}

for (const [kind, onError] of [
  [
    'throws',
    () => {
      throw new Error('the logger failed');
    },
  ],
  ['rejects', async () => Promise.reject(new Error('the logger failed'))],
]) {
  test(`an onError that ${kind} is a warning: the worker goes on and serves its keys`, async () => {
    const name = fresh(`onerror-${kind}`);
    const given = [];
    const warnings = await warningsOf('ERR_VELO_ON_ERROR', async (seen) => {
      const worker = redisWorker(totals(), {
        client: failingScripts(client, 3),
        name,
        partitions: 1,
        leaseTtl: 2000,
        onError: (error) => {
          given.push(error);
          return onError();
        },
      });
      try {
        await eventually(() => seen.length >= 1, 'a warning of the throw of onError');
        await eventually(() => worker.stats().owned.length === 1, 'the worker owning its partition after the failures');
        const producer = redisProducer({ client, name, partitions: 1 });
        await producer.send('k', { n: 5 });
        await eventually(() => worker.stats().outputs >= 1, 'the output of an event sent after the failures');
      } finally {
        await worker.close();
      }
    });
    assert.ok(given.length >= 1);
    assert.ok(warnings.length >= 1 && warnings.length <= given.length, `${warnings.length} warnings for ${given.length} reports`);
    const [warning] = warnings;
    assert.equal(warning.reported, given[0]);
    assert.equal(warning.cause.message, 'the logger failed');
    assert.match(warning.message, /^onError failed while given .+: the logger failed$/);
  });
}

test('reporterOf: a hostile throw (a getter that throws, a revoked proxy, a thenable whose then throws) is still a warning', async () => {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  const throws = [
    () => {
      throw proxy;
    },
    () => {
      throw Object.defineProperty({}, 'message', {
        get() {
          throw new Error('no message');
        },
      });
    },
    () => ({
      then() {
        throw new Error('a then that throws');
      },
    }),
    () => Symbol('s'),
    () => undefined,
  ];
  const warnings = await warningsOf('ERR_VELO_ON_ERROR', async () => {
    for (const onError of throws) reporterOf(onError)(proxy);
    await new Promise((resolve) => setTimeout(resolve, 10));
  });
  // The last two neither threw nor rejected.
  assert.equal(warnings.length, 3);
  for (const w of warnings) assert.match(w.message, /^onError failed while given an object that cannot be read/);
});
