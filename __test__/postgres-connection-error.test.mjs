// A worker's connection to Postgres cut under it (a proxy that closes its sockets, as a network cut or a killed
// server process does): node-postgres says "Connection terminated unexpectedly" with no code, and the worker reports
// it to onError as ERR_VELO_POSTGRES_CONNECTION, node-postgres' error as its cause. The worker goes on once the proxy
// forwards again, every output once. An error with a code of its own (ECONNREFUSED: a pool of a port nothing
// listens on) reaches onError as node-postgres made it.
import { test } from 'node:test';
import pg from 'pg';
import assert from 'node:assert/strict';
import { sessionOutputs, sessionProducer, sessionWorker } from 'velo-stream/durable';
import { streamFn } from 'velo-stream';
import { startPostgres } from './helpers/postgres-server.mjs';
import { until } from './helpers/resume.mjs';
import { startProxy } from './helpers/tcp-proxy.mjs';
import { freePort } from './helpers/free-port.mjs';

const count = streamFn(
  async function* (events) {
    let n = 0;
    for await (const e of events) yield { n: ++n, e };
  },
  { idleTimeout: 60_000 },
);

test('a cut connection reaches onError as ERR_VELO_POSTGRES_CONNECTION with its cause, and the worker goes on', async () => {
  const server = await startPostgres();
  const proxy = await startProxy(server.port);
  const direct = server.pool({ max: 4 });
  const cutPool = server.pool({ max: 6, port: proxy.port });
  cutPool.on('error', () => {});
  const errors = [];
  const shared = { schema: 'velo_cut', name: 'cut', partitions: 2 };
  const worker = sessionWorker(count, {
    ...shared,
    client: cutPool,
    leaseTtl: 3000,
    pollInterval: 20,
    onError: (e) => errors.push(e),
  });
  const producer = sessionProducer({ ...shared, client: direct });
  try {
    for (let i = 0; i < 4; i++) await producer.send(`k${i}`, i);
    const got = [];
    const reading = new AbortController();
    const reader = (async () => {
      for await (const o of sessionOutputs({ ...shared, client: direct, signal: reading.signal })) got.push(o);
    })().catch((error) => {
      if (!reading.signal.aborted) throw error;
    });
    await until(() => got.length === 4, 'the first outputs');
    // Cut every connection while the worker polls and renews: no code from node-postgres.
    // (While Postgres is away the worker reports one failure a second: cut until one of those is a codeless one.)
    for (let i = 0; i < 50 && !errors.some((e) => e.code === 'ERR_VELO_POSTGRES_CONNECTION'); i++) {
      proxy.cut();
      await new Promise((resolve) => setTimeout(resolve, 200));
      proxy.heal();
    }
    const cut = errors.find((e) => e.code === 'ERR_VELO_POSTGRES_CONNECTION');
    assert.ok(cut, `the cut reported with its code: ${errors.map((e) => `${e.code}: ${e.message}`).join('; ')}`);
    assert.match(cut.message, /^A connection to Postgres failed: /);
    assert.ok(cut.cause instanceof Error && cut.cause.code === undefined, "the cause is node-postgres' error, without a code");
    assert.match(cut.cause.message, /Connection terminated|connection error/i);
    // Every error the worker reported has a code: no bare node-postgres error.
    for (const e of errors)
      assert.equal(
        typeof e.code,
        'string',
        `${e.message} has a code (${errors.map((x) => `${x.code}: ${x.message}`).join('; ')})`,
      );
    for (let i = 0; i < 4; i++) await producer.send(`k${i}`, i + 10);
    await until(() => got.length >= 8, 'the outputs after the cuts');
    reading.abort();
    await reader;
    const seen = new Set(got.map((o) => `${o.sid}/${o.seq}`));
    assert.equal(got.length, 8);
    assert.equal(seen.size, got.length, 'each output once');
  } finally {
    await worker.close();
    await proxy.stop();
    await cutPool.end();
    await direct.end();
    await server.stop();
  }
});

test('a refused connection reaches onError as node-postgres made it (ECONNREFUSED)', async () => {
  const dead = new pg.Pool({ host: '127.0.0.1', port: await freePort(), user: 'velo', database: 'postgres', max: 2 });
  dead.on('error', () => {});
  const errors = [];
  const worker = sessionWorker(count, {
    client: dead,
    schema: 'velo_refused',
    name: 'refused',
    partitions: 1,
    onError: (e) => errors.push(e),
  });
  try {
    await until(() => errors.length > 0, 'a failure reported');
    assert.equal(errors[0].code, 'ECONNREFUSED', `${errors[0].code}: ${errors[0].message}`);
  } finally {
    await worker.close();
    await dead.end();
  }
});
