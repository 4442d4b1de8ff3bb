// A clean close reports nothing: a worker's close() (with its registration and lease renewals in flight on
// the connection it closes, owning partitions or none, with sessions running) calls onError zero times and
// counts no error, and redisOutputs readers stopped by an abort or a break end without throwing, round after
// round while producers send.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from 'redis';
import { redisClientOptions, redisMaterialize, redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, redis, useRedis } from './helpers/redis-suite.mjs';
import { eventually, interceptCommands, totals } from './helpers/redis-fixtures.mjs';

useRedis();

/**
 * `real` as the worker sees it, except that the connections it duplicates send each script call (leases are
 * taken, renewed and released by scripts on one of them) `delayMs` late, as over a slow network, after calling
 * `onScript()`: a test can act while such a call is in flight.
 */
function slowDuplicates(real, delayMs, onScript) {
  return interceptCommands(real, (c, args, options) => {
    if (!String(args[0]).startsWith('EVAL')) return c.sendCommand(args, options);
    onScript();
    return new Promise((resolve) => setTimeout(resolve, delayMs)).then(() => c.sendCommand(args, options));
  });
}

/** The errors a worker reports, with its name for the assertion's message. */
function recorder(errors, label) {
  return (error) => errors.push(`${label}: ${error?.code} ${error?.message}`);
}

test('close() while a renewal is in flight on the lease connection: nothing reported, nothing counted', async () => {
  const errors = [];
  let onScript = () => {};
  const slow = slowDuplicates(client, 50, () => onScript());
  for (let round = 0; round < 6; round++) {
    // One partition: in odd rounds another worker holds it, and the worker closed owns nothing (its fair share
    // is taken), so nothing else is queued behind the renewal on its lease connection.
    const name = fresh('quiet');
    const owns = round % 2 === 0;
    const holder = owns
      ? null
      : redisWorker(totals(), { client, name, partitions: 1, leaseTtl: 600, onError: recorder(errors, 'holder') });
    if (holder !== null) await eventually(() => holder.stats().owned.length === 1, 'the other worker owns the partition');
    const worker = redisWorker(totals(), {
      client: slow,
      name,
      partitions: 1,
      leaseTtl: 600,
      onError: recorder(errors, `round ${round}`),
    });
    await eventually(
      () => worker.stats().roundTrip.count > 0 && worker.stats().owned.length === (owns ? 1 : 0),
      'the worker took its share',
    );
    // The next script call on its lease connection (a renewal of its lease or of its registration) is in flight:
    // close now.
    await new Promise((resolve) => (onScript = resolve));
    onScript = () => {};
    await worker.close();
    assert.equal(worker.stats().errors, 0, `round ${round}: no error counted (${errors.join('; ')})`);
    await holder?.close();
  }
  assert.deepEqual(errors, []);
});

test('workers and readers closed round after round under traffic: onError never called, readers end without throwing', async () => {
  const PARTITIONS = 8;
  const name = fresh('quiet');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const errors = [];
  let sending = true;
  const traffic = (async () => {
    for (let i = 0; sending; i += 20) {
      await producer.sendMany(Array.from({ length: 20 }, (_, j) => [`k${(i + j) % 40}`, { n: i + j }]));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  // A worker that stays, so that the others of each round share partitions with it (hand-offs both ways).
  const stays = redisWorker(totals({ idleTimeout: 150 }, 1), {
    client,
    name,
    partitions: PARTITIONS,
    leaseTtl: 900,
    onError: recorder(errors, 'stays'),
  });
  try {
    for (let round = 0; round < 16; round++) {
      // A process's own client, closed after its worker as at a deploy's SIGTERM.
      const own = createClient({ url: redis.url });
      own.on('error', () => {});
      await own.connect();
      const worker = redisWorker(totals({ idleTimeout: 150 }, 1), {
        client: own,
        name,
        partitions: PARTITIONS,
        // (At least 600 ms: a close under CPU load took longer than a 300 ms lease, ERR_VELO_CLOSE_TIMEOUT.)
        leaseTtl: 600 + 300 * (round % 3),
        onError: recorder(errors, `round ${round}`),
      });
      const abort = new AbortController();
      const byAbort = (async () => {
        for await (const item of redisOutputs({
          client: own,
          name,
          partitions: PARTITIONS,
          group: 'g',
          claimIdle: 100,
          signal: abort.signal,
        })) {
          assert.equal(typeof item.seq, 'number');
        }
      })();
      const byBreak = (async () => {
        let n = 0;
        for await (const item of redisOutputs({ client: own, name, partitions: PARTITIONS, from: 'end' })) {
          assert.equal(typeof item.seq, 'number');
          if (++n === 30 + round * 7) break;
        }
      })();
      // Each round stops at another point of the worker's life: taking partitions, running sessions, renewing.
      await new Promise((resolve) => setTimeout(resolve, 40 * round));
      abort.abort();
      await worker.close();
      await Promise.all([byAbort, byBreak]);
      assert.equal(worker.stats().errors, 0, `round ${round}: no error counted (${errors.join('; ')})`);
      await own.close();
    }
  } finally {
    sending = false;
    await traffic;
    await stays.close();
  }
  assert.equal(stays.stats().errors, 0);
  assert.deepEqual(errors, []);
});

test('materializers closed round after round under traffic (blocked in a read, writing a batch, sweeping claims): onError never called', async () => {
  const PARTITIONS = 4;
  const name = fresh('quiet');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const errors = [];
  let sending = true;
  const traffic = (async () => {
    for (let i = 0; sending; i += 10) {
      await producer.sendMany(Array.from({ length: 10 }, (_, j) => [`k${(i + j) % 30}`, { n: i + j }]));
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
  })();
  const worker = redisWorker(totals({ idleTimeout: 50 }), {
    client,
    name,
    partitions: PARTITIONS,
    onError: recorder(errors, 'worker'),
  });
  // Its hash writes (script calls) go 20 ms late: a close() often comes while a batch is being written.
  let scripts = 0;
  const slow = slowDuplicates(client, 20, () => scripts++);
  try {
    for (let round = 0; round < 12; round++) {
      const materializer = redisMaterialize({
        client: round % 2 === 0 ? slow : client,
        name,
        partitions: PARTITIONS,
        key: (output) => `quiet:${name}:${output.key}`,
        fields: (output) => ({ total: JSON.stringify(output.value) }),
        claimIdle: 60,
        batch: 1 + round,
        onError: recorder(errors, `materializer ${round}`),
      });
      await new Promise((resolve) => setTimeout(resolve, 15 * round));
      await materializer.close();
      assert.deepEqual(errors, [], `round ${round}`);
    }
  } finally {
    sending = false;
    await traffic;
    await worker.close();
  }
  assert.ok(scripts > 0);
  assert.deepEqual(errors, []);
});

test("close() of an idle worker whose client pings (redisClientOptions' pingInterval): nothing reported, nothing counted", async () => {
  // The duplicates it makes ping on their own; a close() that destroys one with its PING in flight made the
  // client emit that PING's rejection ("Disconnects client"), which was reported through onError.
  const pinging = createClient(redisClientOptions({ url: redis.url, pingInterval: 5 }));
  pinging.on('error', () => {});
  await pinging.connect();
  const errors = [];
  try {
    for (let round = 0; round < 12; round++) {
      const worker = redisWorker(totals(), {
        client: pinging,
        name: fresh('pinged'),
        partitions: 2,
        leaseTtl: 600,
        onError: recorder(errors, `round ${round}`),
      });
      await eventually(() => worker.stats().owned.length === 2, 'the worker took its partitions');
      // Idle, its connections pinging every 5 ms: close at a point that varies from round to round.
      await new Promise((resolve) => setTimeout(resolve, 3 * round));
      await worker.close();
      assert.equal(worker.stats().errors, 0, `round ${round}: no error counted (${errors.join('; ')})`);
    }
  } finally {
    await pinging.close();
  }
  assert.deepEqual(errors, []);
});

test('the client closed before the worker: reported once (what to do), not once per call; reported again after a reconnect and a second close', async () => {
  const own = createClient({ url: redis.url });
  own.on('error', () => {});
  await own.connect();
  const errors = [];
  const worker = redisWorker(totals(), {
    client: own,
    name: fresh('closedFirst'),
    partitions: 16,
    leaseTtl: 1500,
    onError: (error) => errors.push(error),
  });
  try {
    await eventually(() => worker.stats().owned.length === 16, 'the worker took its partitions');
    await own.close();
    // Its loops (registration, renewals, balances) call on the client many times a second meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assert.equal(errors.length, 1, errors.map((e) => e.message).join('\n'));
    assert.equal(errors[0].code, 'ERR_VELO_REDIS_CONNECTION');
    assert.match(errors[0].message, /The client is closed\. The client was closed while the worker runs: close the worker first/);
    assert.ok(worker.stats().errors > 1, 'every failed call is still counted');
    // Opened again, then closed again: one more report.
    await own.connect();
    await new Promise((resolve) => setTimeout(resolve, 1200));
    await own.close();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(errors.length, 2, errors.map((e) => e.message).join('\n'));
  } finally {
    await worker.close();
  }
});
