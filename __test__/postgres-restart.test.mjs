// The Postgres server restarted under a running worker, producer and readers: a private postgres of the test's own,
// stopped by PID (fast shutdown: every session ended, transactions in flight rolled back) and started again on the
// same port and data directory. The worker reports what failed meanwhile to onError (lost or refused connections
// only), reconnects and goes on; sends while the server is away reject with ERR_VELO_SEND_FAILED and write nothing;
// the same producer sends again afterwards. Every acknowledged event has its output, once per (sid, seq), with the
// totals a calm run gives; a postgresOutputs loop and a postgresKeyOutputs loop running across the restart get each
// output once, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresKeyOutputs, postgresOutputs, postgresProducer, postgresWorker } from 'velo-stream/postgres';
import { expectedTotals, totals } from './helpers/redis-fixtures.mjs';
import { restartablePostgres } from './helpers/postgres-suite.mjs';
import { until } from './helpers/resume.mjs';

const PARTITIONS = 4;
const KEYS = 8;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What a lost or refused connection looks like from node-postgres (the only errors a restart may cause). */
function connectionLost(error) {
  const codes = ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', '57P01', '57P02', '57P03', '08006', '08003', '08001'];
  const causes = [error, error?.cause, ...(error?.errors ?? [])];
  return causes.some(
    (e) => codes.includes(e?.code) || /Connection terminated|connection error|terminating connection/i.test(String(e?.message)),
  );
}

test('a restart of the server: the worker reconnects and goes on, the producer sends again, readers go on; every acknowledged event has its output once, none lost', async () => {
  const server = await restartablePostgres();
  const errors = [];
  const shared = (pool) => ({ pool, schema: 'velo_restart', name: 'restart', partitions: PARTITIONS });
  const worker = postgresWorker(totals({ idleTimeout: 60_000 }), {
    ...shared(server.pool({ max: 10 })),
    leaseTtl: 3000,
    pollInterval: 50,
    onError: (e) => errors.push(e),
  });
  const producer = postgresProducer(shared(server.pool({ max: 4 })));
  const readerPool = server.pool({ max: 4 });
  const stop = new AbortController();
  // Readers running across the restart: every output, and one key's with their cursors.
  const all = [];
  const allDone = (async () => {
    for await (const o of postgresOutputs({ ...shared(readerPool), pollInterval: 20, signal: stop.signal })) all.push(o);
  })();
  const k0 = [];
  const k0Done = (async () => {
    for await (const o of postgresKeyOutputs({ ...shared(readerPool), key: 'k0', pollInterval: 20, signal: stop.signal }))
      k0.push(o);
  })();
  const sent = new Map(Array.from({ length: KEYS }, (_, k) => [`k${k}`, []]));
  const send = async (i) => {
    const key = `k${i % KEYS}`;
    await producer.send(key, { n: i });
    sent.get(key).push(i);
  };
  try {
    await until(() => worker.stats().owned.length === PARTITIONS, 'the worker owns every partition');
    for (let i = 0; i < 200; i++) await send(i);
    // A backlog in flight when the server goes: some of it is being committed.
    await until(() => all.length >= 20, 'the first outputs');
    const restarting = server.restart({ ms: 700 });
    // Sends while the server is away (it has exited: no send can meet a connection it is ending): refused with the
    // documented code, nothing written (the event is sent again).
    const refused = [];
    await server.stopped;
    await sleep(100);
    let i = 200;
    for (; i < 210; i++) {
      try {
        await send(i);
      } catch (error) {
        refused.push(error);
        assert.equal(error.code, 'ERR_VELO_SEND_FAILED');
        assert.equal(error.ids.length, 1);
        assert.notEqual(typeof error.ids[0], 'string', 'not written');
        // A refused connection: known not written (null); another failure may be a COMMIT without an answer.
        if (['ECONNREFUSED', '57P03'].includes(error.cause?.code)) assert.equal(error.ids[0], null);
        assert.ok(connectionLost(error.cause), `a lost connection: ${error.cause?.message}`);
        break;
      }
    }
    await restarting;
    assert.ok(refused.length > 0, 'a send while the server was away was refused');
    assert.ok(['ECONNREFUSED', '57P03'].includes(refused[0].cause?.code), `the connection refused: ${refused[0].cause?.code}`);
    // The same producer sends again, the event refused first among them.
    for (; i < 300; i++) await send(i);
    const total = [...sent.values()].reduce((n, list) => n + list.length, 0);
    assert.equal(total, 300, 'every event acknowledged once');
    await until(
      () => all.length >= total,
      `${total} outputs`,
      60_000,
      () => `(${all.length})`,
    );
    await sleep(500);
    // Each (sid, seq) once, and per key the totals of its events in the order sent: nothing lost or twice.
    assert.equal(all.length, total, 'no output beyond one per event');
    assert.equal(new Set(all.map((o) => `${o.sid}#${o.seq}`)).size, total);
    for (const [key, ns] of sent) {
      assert.deepEqual(
        all.filter((o) => o.key === key).map((o) => o.value),
        expectedTotals(ns),
        `${key}'s outputs`,
      );
    }
    // The key reader went on from its positions: k0's outputs once each, in order, each cursor after the one before.
    await until(() => k0.length >= sent.get('k0').length, "k0's outputs");
    assert.deepEqual(
      k0.map((o) => o.value),
      expectedTotals(sent.get('k0')),
    );
    assert.equal(new Set(k0.map((o) => o.cursor)).size, k0.length);
    // The worker reconnected: it owns every partition and nothing is left to read.
    await until(() => worker.stats().owned.length === PARTITIONS, 'the worker owns every partition again');
    for (let p = 0; p < PARTITIONS; p++) assert.equal(await producer.lag(p), 0);
    // What it reported meanwhile: lost or refused connections, nothing else.
    assert.ok(errors.length > 0, 'the worker reported the lost server');
    for (const e of errors) assert.ok(connectionLost(e), `a connection error: ${e?.code} ${e?.message}`);
  } finally {
    stop.abort();
    await Promise.allSettled([allDone, k0Done]);
    await worker.close();
    await server.stop();
  }
  await allDone;
  await k0Done;
});
