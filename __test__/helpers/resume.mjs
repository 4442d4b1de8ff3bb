// What the resumable-stream tests share (redisSse, redisNdjson): a seeded PRNG, an HTTP server that serves a
// key's outputs, a TCP proxy that cuts each connection after a random number of bytes (mid-event too), and an
// EventSource client (the `eventsource` package: the WHATWG EventSource, reconnecting with Last-Event-ID) that
// records everything it gets.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import { EventSource } from 'eventsource';
import { redisNdjson, redisSse } from 'velo-stream/redis';

/** A seeded PRNG (xorshift-multiply): numbers in [0, 1). */
export function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => (s = (Math.imul(s ^ (s >>> 15), 2246822519) + 0x9e3779b9) >>> 0) / 2 ** 32;
}

/**
 * An HTTP server on 127.0.0.1: `GET /sse/<key>` and `GET /ndjson/<key>` serve that key's outputs (`?from=` is
 * passed as `from`, `?keys=a,b` serves a set), with `options(req, res)` merged in. `served` lists each response's
 * promise (settled when the helper is done with it), `open()` how many are still running; `close()` fails if
 * a call rejected (SSE's own options are not passed to NDJSON).
 */
export async function keyServer(base, options = () => ({})) {
  const served = [];
  const failures = [];
  let running = 0;
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const [, kind, key] = url.pathname.split('/');
    const keys = url.searchParams.get('keys');
    const which = keys === null ? { key: decodeURIComponent(key) } : { keys: keys.split(',') };
    const serve = kind === 'sse' ? redisSse : kind === 'ndjson' ? redisNdjson : null;
    if (serve === null) {
      res.statusCode = 404;
      res.end();
      return;
    }
    running++;
    const all = { ...base, ...which, from: url.searchParams.get('from'), ...options(req, res) };
    // The SSE-only options are left out of NDJSON's (it refuses them).
    if (kind === 'ndjson') for (const sseOnly of ['retry', 'heartbeat', 'event']) delete all[sseOnly];
    const done = serve(req, res, all)
      .catch((error) => failures.push(error))
      .finally(() => running--);
    served.push(done);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    url: `http://127.0.0.1:${server.address().port}`,
    port: server.address().port,
    served,
    open: () => running,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await Promise.all(served);
      assert.deepEqual(failures, [], 'no helper call rejected');
    },
  };
}

/**
 * A TCP proxy to 127.0.0.1:`port` that, while `cutting`, closes each connection once it has passed a random
 * number of bytes (from `min` to `max`) from the server to the client: wherever that falls, in the headers or in
 * the middle of an event. `counts`: connections, cuts.
 */
export async function cuttingProxy(port, random, { min = 250, max = 1500 } = {}) {
  const counts = { connections: 0, cuts: 0 };
  let cutting = true;
  const sockets = new Set();
  const server = createTcpServer((down) => {
    counts.connections++;
    const up = connect(port, '127.0.0.1');
    sockets.add(down).add(up);
    let budget = cutting ? Math.floor(min + random() * (max - min)) : Infinity;
    const close = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    down.on('error', close).on('close', close);
    up.on('error', close).on('close', close);
    down.on('data', (data) => up.write(data));
    up.on('data', (data) => {
      if (data.length < budget) {
        budget -= data.length;
        down.write(data);
        return;
      }
      counts.cuts++;
      down.end(data.subarray(0, budget), close);
      budget = 0;
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    counts,
    /** New connections are no longer cut (the one open now still is, at its budget). */
    stopCutting() {
      cutting = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * An EventSource on `url` that records its messages (`data` parsed as JSON, with `id`), its `end` events, the
 * failures the server sent (`event: error` with data) and its connection errors (with their HTTP `code`).
 * `lastEventId`: sent with the first request too (an EventSource sends it only on reconnects).
 */
export function follow(url, { lastEventId } = {}) {
  const state = { messages: [], ends: [], failures: [], errors: [], opens: 0 };
  const init =
    lastEventId === undefined
      ? {}
      : {
          fetch: (input, options) =>
            fetch(input, {
              ...options,
              headers: { ...options.headers, ...(state.opens === 0 ? { 'Last-Event-ID': lastEventId } : {}) },
            }),
        };
  const es = new EventSource(url, init);
  es.addEventListener('open', () => state.opens++);
  es.addEventListener('message', (e) => state.messages.push({ id: e.lastEventId, data: JSON.parse(e.data) }));
  es.addEventListener('end', (e) => state.ends.push(JSON.parse(e.data)));
  es.addEventListener('error', (e) => {
    if (typeof e.data === 'string') state.failures.push({ id: e.lastEventId, data: JSON.parse(e.data) });
    else state.errors.push({ code: e.code, message: e.message });
  });
  return { es, state, close: () => es.close() };
}

/** Waits until `predicate()` holds (polled every 10 ms), failing after `ms` with `what` and `detail()`. */
export async function until(predicate, what, ms = 20_000, detail = () => '') {
  const deadline = performance.now() + ms;
  while (!(await predicate())) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what} ${detail()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * The number of connections redis-server has (every client's, this one's included); with `name`, those of clients
 * named so (`readersClient`: a worker that reconnects under load changes nothing counted).
 */
export async function redisConnections(client, name) {
  if (name === undefined) {
    const info = await client.sendCommand(['INFO', 'clients']);
    return Number(/connected_clients:(\d+)/.exec(info)[1]);
  }
  const list = String(await client.sendCommand(['CLIENT', 'LIST']));
  return list.split('\n').filter((line) => line.includes(` name=${name} `)).length;
}

/**
 * A connected client of its own for a test's readers, named `name`: the connections readers make of it (its
 * duplicates) carry the name, so `redisConnections(client, name)` counts them and nothing else.
 */
export async function readersClient(client, name) {
  const readers = client.duplicate({ name });
  readers.on('error', () => {});
  await readers.connect();
  return readers;
}

/** A GET of `url` with `headers`: status, headers and the body text (the whole of it: for answers that end). */
export async function get(url, headers = {}) {
  // (A response that does not end, such as an SSE stream that should have been refused, fails here.)
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}
