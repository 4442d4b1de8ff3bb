// A worker's connection to Postgres cut under it (a proxy that destroys its sockets, as a network cut or a killed
// server process does): node-postgres says "Connection terminated unexpectedly" with no code, and the worker reports
// it to onError as ERR_VELO_POSTGRES_CONNECTION, node-postgres' error as its cause; an error with a code of its own
// (ECONNREFUSED while the proxy refuses) reaches onError as node-postgres made it. The worker goes on once the
// proxy lets it through again, every output once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { sessionOutputs, sessionProducer, sessionWorker } from 'velo-stream/durable';
import { streamFn } from 'velo-stream';
import { startPostgres } from './helpers/postgres-server.mjs';
import { until } from './helpers/resume.mjs';

/** A TCP proxy to `port`: `cut()` destroys every connection through it; `refuse(on)` closes the listener. */
async function proxyTo(port) {
  const sockets = new Set();
  const listen = () =>
    new Promise((resolve) => {
      const server = net.createServer((client) => {
        const upstream = net.connect(port, '127.0.0.1');
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', () => {});
          s.on('close', () => sockets.delete(s));
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(at, '127.0.0.1', () => resolve(server));
    });
  let at = 0;
  let server = await listen();
  at = server.address().port;
  return {
    port: at,
    cut() {
      for (const s of sockets) s.destroy();
    },
    /** Closes the listener and cuts what went through it (on), or listens again on the same port. */
    async refuse(on) {
      if (!on) server = await listen();
      else {
        const closed = new Promise((resolve) => server.close(resolve));
        for (const s of sockets) s.destroy();
        await closed;
      }
    },
    async close() {
      for (const s of sockets) s.destroy();
      if (server.listening) await new Promise((resolve) => server.close(resolve));
    },
  };
}

const count = streamFn(
  async function* (events) {
    let n = 0;
    for await (const e of events) yield { n: ++n, e };
  },
  { idleTimeout: 60_000 },
);

test('a cut connection reaches onError as ERR_VELO_POSTGRES_CONNECTION with its cause; a refused one as ECONNREFUSED', async () => {
  const server = await startPostgres();
  const proxy = await proxyTo(server.port);
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
    // Refused while the proxy is down: ECONNREFUSED as node-postgres made it.
    const before = errors.length;
    await proxy.refuse(true);
    await until(() => errors.slice(before).some((e) => e.code === 'ECONNREFUSED'), 'a refused connection reported');
    await proxy.refuse(false);
    for (let i = 0; i < 4; i++) await producer.send(`k${i}`, i + 10);
    await until(() => got.length >= 8, 'the outputs after the cuts');
    reading.abort();
    await reader;
    const seen = new Set(got.map((o) => `${o.sid}/${o.seq}`));
    assert.equal(got.length, 8);
    assert.equal(seen.size, got.length, 'each output once');
  } finally {
    await worker.close();
    await proxy.close();
    await cutPool.end();
    await direct.end();
    await server.stop();
  }
});
