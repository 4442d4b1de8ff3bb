// Real clients that disconnect at every stage of a streamed response, for
// each way of sending one: sendNdjson, sendSse, pipeline(toReadable(...), res),
// toReadable(...).pipe(res) and Fastify's reply.send(toReadable(...)). Whatever the stage, the stream
// must be cancelled at once: the handler's `finally` runs, its slot frees,
// the server (or Fastify app) closes, nothing is left unhandled or warned.
import { test } from 'node:test';
import { Agent, request } from 'node:http';
import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import Fastify from 'fastify';
import { streamFn } from 'velo-stream';
import { contentType, ndjsonEvents, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { client, deadline, listen, recordWarnings, until } from './helpers/server.mjs';
import { unhandledDuring } from './helpers/util.mjs';

const PAD = 'x'.repeat(4096);

/**
 * One stream function per stage, each parked where the stage needs it.
 * Nobody ever sends to these streams and idleTimeout is 0, so only a cancel
 * can end them: a `finally` that runs proves the disconnect cancelled it.
 */
function stageFn(stage) {
  const seen = { finalized: 0, produced: 0, res: undefined };
  const fn = streamFn(
    async function* handler(events) {
      try {
        if (stage === 'backpressured') for (let i = 0; ; i++, seen.produced++) yield { i, pad: PAD };
        if (stage === 'mid-stream') {
          for (let i = 0; ; i++) {
            yield { i };
            await new Promise((resolve) => setTimeout(resolve, 2));
          }
        }
        if (stage === 'waiting for input') yield* [{ i: 0 }, { i: 1 }, { i: 2 }];
        // 'before headers' starts here: parked on an input that never comes.
        for await (const e of events) yield e;
      } finally {
        seen.finalized++;
      }
    },
    { buffer: 8, idleTimeout: 0 },
  );
  return { fn, seen };
}

const STAGES = ['before headers', 'waiting for input', 'mid-stream', 'backpressured'];

/** Outputs received so far, in `format`. */
function received(text, format) {
  return text.split(format === 'sse' ? '\n\n' : '\n').length - 1;
}

/**
 * Waits until `read()` has not changed for 20 polls in a row: the handler is
 * paused at its yield by the full socket (the stream's buffer full behind
 * it). A wait condition, not an assertion.
 */
async function steady(read, what) {
  let last = read();
  let same = 0;
  await until(
    () => {
      const now = read();
      same = now === last ? same + 1 : 0;
      last = now;
      return same >= 20;
    },
    10_000,
    what,
  );
}

/** Connects, waits for the stage, disconnects; returns what the client saw. */
async function disconnectAt(stage, url, fn, seen, format) {
  const before = seen.finalized;
  const c = client(url);
  await until(() => fn.stats().open === 1, 5000, 'the stream to open');
  if (stage === 'waiting for input' || stage === 'mid-stream') {
    await c.response;
    await until(() => received(c.text, format) >= 3, 5000, 'three outputs');
  }
  if (stage === 'backpressured') {
    const res = await c.response;
    res.removeAllListeners('data');
    res.pause(); // stop reading: the server fills the socket, then the stream
    await until(() => seen.res?.writableNeedDrain, 5000, 'the response to wait for drain');
    await steady(() => seen.produced, 'the handler to be paused at its yield');
  }
  seen.res = undefined;
  // The handler is parked (on its input, a timer or a full output); the test
  // holds no reference to its stream: a collection must not lose the cancel.
  global.gc();
  c.destroy();
  await until(() => seen.finalized === before + 1, 5000, `the handler's finally after a disconnect ${stage}`);
  assert.equal(fn.stats().open, 0, 'the slot is free');
  await c.closed;
  return c;
}

const nodeModes = {
  ndjson: (res, s) => sendNdjson(res, s),
  sse: (res, s) => sendSse(res, s),
  'pipeline(toReadable)': (res, s) => pipeline(toReadable(s, 'ndjson'), res),
  // Express' everyday idiom: Node's pipe() leaves the source as it is when the response closes.
  'toReadable().pipe(res)': (res, s) =>
    new Promise((resolve) => {
      const readable = toReadable(s, 'ndjson');
      readable.on('close', () => resolve('resolved'));
      readable.pipe(res);
    }),
};

for (const [mode, send] of Object.entries(nodeModes)) {
  test(`${mode}: a client that disconnects at any stage cancels the stream at once`, async () => {
    const format = mode === 'sse' ? 'sse' : 'ndjson';
    const warnings = recordWarnings();
    try {
      const unhandled = await unhandledDuring(async () => {
        for (const stage of STAGES) {
          const { fn, seen } = stageFn(stage);
          const settled = [];
          const srv = await listen((_req, res) => {
            const s = fn.open();
            seen.res = res;
            settled.push(
              send(res, s).then(
                () => 'resolved',
                (e) => e,
              ),
            );
          });
          const c = await disconnectAt(stage, srv.url, fn, seen, format);
          if (stage === 'before headers') assert.equal(c.res, undefined, 'no response was started');
          assert.deepEqual(fn.stats(), { open: 0, opened: 1, completed: 0, failed: 0, cancelled: 1, rejected: 0 });
          const outcome = await deadline(settled[0], 5000, `${mode} after a disconnect ${stage}`);
          if (mode === 'pipeline(toReadable)') assert.equal(outcome.code, 'ERR_STREAM_PREMATURE_CLOSE');
          else assert.equal(outcome, 'resolved', 'sendNdjson/sendSse never reject because of the client');
          // No connection is left behind: close() without forcing resolves.
          await deadline(new Promise((resolve) => srv.server.close(resolve)), 5000, `server.close() after ${stage}`);
        }
      });
      assert.deepEqual(unhandled, []);
      assert.deepEqual(warnings.seen, []);
    } finally {
      warnings.stop();
    }
  });
}

test('Fastify reply.send(toReadable(...)): a disconnect at any stage cancels the stream, app.close() resolves', async () => {
  const warnings = recordWarnings();
  try {
    const unhandled = await unhandledDuring(async () => {
      for (const stage of STAGES) {
        const { fn, seen } = stageFn(stage);
        const app = Fastify();
        app.get('/', (_request, reply) => {
          const s = fn.open();
          seen.res = reply.raw;
          reply.header('content-type', contentType('sse'));
          return reply.send(toReadable(s, 'sse'));
        });
        await app.listen({ port: 0, host: '127.0.0.1' });
        try {
          const c = await disconnectAt(stage, `http://127.0.0.1:${app.server.address().port}/`, fn, seen, 'sse');
          if (stage === 'before headers') assert.equal(c.res, undefined, 'no response was started');
          assert.deepEqual(fn.stats(), { open: 0, opened: 1, completed: 0, failed: 0, cancelled: 1, rejected: 0 });
        } finally {
          await deadline(app.close(), 5000, `app.close() after a disconnect ${stage}`);
        }
      }
    });
    assert.deepEqual(unhandled, []);
    assert.deepEqual(warnings.seen, []);
  } finally {
    warnings.stop();
  }
});

test('toReadable: destroying the Readable cancels a stream parked on its input at once', async () => {
  const { fn, seen } = stageFn('waiting for input');
  const readable = toReadable(fn.open(), 'ndjson');
  const chunks = [];
  for await (const chunk of readable) {
    chunks.push(String(chunk));
    if (chunks.join('').split('\n').length > 3) break; // three outputs read: the handler now waits for input
  }
  // `break` destroyed the Readable (for await does not wait for its close): it closes once the handler has finished.
  if (!readable.closed) await new Promise((resolve) => readable.once('close', resolve));
  assert.equal(seen.finalized, 1, "the handler's finally ran before the Readable closed");
  assert.deepEqual(fn.stats(), { open: 0, opened: 1, completed: 0, failed: 0, cancelled: 1, rejected: 0 });
});

test('toReadable: outputs, then the end; a handler error becomes an error frame; a serialize error is an error line and stops the stream', async () => {
  const three = streamFn(async function* () {
    yield* [1, 2, 3];
  });
  let text = '';
  for await (const chunk of toReadable(three.open(), 'ndjson')) text += chunk;
  assert.equal(text, '1\n2\n3\n');

  const failing = streamFn(async function* () {
    yield 'a';
    throw Object.assign(new Error('boom'), { code: 'E_BOOM' });
  });
  text = '';
  for await (const chunk of toReadable(failing.open(), 'sse')) text += chunk;
  assert.equal(text, 'data: "a"\n\nevent: error\ndata: {"error":{"message":"Internal Server Error","code":"E_BOOM"}}\n\n');

  // An output the serializer rejects (a bigint for JSON): its error line ends the Readable, and the stream,
  // which would otherwise go on, is stopped.
  let finalized = 0;
  const endless = streamFn(
    async function* () {
      try {
        for (let i = 0n; ; i++) yield i;
      } finally {
        finalized++;
      }
    },
    { idleTimeout: 0 },
  );
  const readable = toReadable(endless.open(), 'ndjson');
  // As every writer: the outputs before it, then its error line, and the end; the stream is stopped.
  text = '';
  for await (const chunk of readable) text += chunk;
  assert.match(text, /^\{"error":\{"message":"Internal Server Error","code":"ERR_VELO_SERIALIZE"\}\}\n$/);
  await until(() => finalized === 1, 5000, 'the stream stopped');
  assert.equal(endless.stats().open, 0);
});

/**
 * An echo whose handler counts its `finally` runs (`seen.finalized`): a fresh stream function each call, so that
 * one test's `stats()` and `maxConcurrent` are its own.
 */
function finalizingEcho(options) {
  const seen = { finalized: 0 };
  const fn = streamFn(async function* echo(events) {
    try {
      for await (const e of events) yield e;
    } finally {
      seen.finalized++;
    }
  }, options);
  return { fn, seen };
}

test('sendNdjson/sendSse called after the client left (the handler awaited something first) cancel the stream at once and resolve', async () => {
  for (const send of [sendNdjson, sendSse]) {
    const { fn, seen } = finalizingEcho({ idleTimeout: 0 });
    const sent = [];
    const left = [];
    const srv = await listen((req, res) => {
      // An auth lookup, say: the client leaves meanwhile.
      left.push(new Promise((resolve) => res.once('close', resolve)).then(() => sent.push(send(res, fn.open()))));
    });
    try {
      const c = client(srv.url);
      await until(() => left.length === 1, 5000, 'the request');
      c.destroy();
      await left[0];
      await deadline(sent[0], 5000, `${send.name} to settle`);
      assert.equal(seen.finalized, 1, `${send.name}: the handler's finally ran`);
      assert.deepEqual(fn.stats(), { open: 0, opened: 1, completed: 0, failed: 0, cancelled: 1, rejected: 0 });
    } finally {
      await srv.close();
    }
  }
});

test("a client that leaves before the writer is called (its body's feed made, not read yet) cancels the stream then: its slot frees", async () => {
  const { fn, seen } = finalizingEcho({ idleTimeout: 0, maxConcurrent: 1 });
  let release;
  const writerMayStart = new Promise((resolve) => (release = resolve));
  const sent = [];
  const srv = await listen(async (req, res) => {
    const outputs = fn.open().feed(ndjsonEvents(req));
    // An auth lookup, say, that outlasts the client.
    await writerMayStart;
    sent.push(sendNdjson(res, outputs));
  });
  try {
    const c = client(srv.url, { method: 'POST', headers: { 'content-length': '1000' } });
    c.req.write('{"a":1}\n');
    await until(() => fn.stats().open === 1, 5000, 'the stream open');
    c.req.destroy();
    await until(() => seen.finalized === 1, 5000, "the handler's finally, before the writer is called");
    assert.equal(fn.stats().open, 0);
    fn.open().cancel();
    release();
    await until(() => sent.length === 1, 5000, 'the writer called');
    await deadline(sent[0], 5000, 'sendNdjson to settle');
    assert.equal(fn.stats().cancelled, 2);
  } finally {
    release();
    await srv.close();
  }
});

test("an answer written without a writer, the body's feed never read, cancels the stream once the answer is over: its slot frees", async () => {
  const { fn, seen } = finalizingEcho({ idleTimeout: 0, maxConcurrent: 1 });
  // The app keeps every feed it made: no collection can be what frees the slot.
  const kept = [];
  const srv = await listen(async (req, res) => {
    // (Another reader, a body parser say, read the body to its end first.)
    if (req.url === '/read-before') for await (const chunk of req) void chunk;
    let outputs;
    try {
      outputs = fn.open().feed(ndjsonEvents(req));
    } catch (error) {
      res.statusCode = 503;
      return void res.end(error.code);
    }
    kept.push(outputs);
    // Answered by hand: an auth check that fails, say, with the stream already open.
    res.statusCode = 401;
    res.end('no');
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const cases = [
      ['/unread', '{"a":1}\n'],
      ['/empty', ''],
      ['/read-before', '{"a":1}\n'],
    ];
    for (const [i, [path, body]] of cases.entries()) {
      const answer = await new Promise((resolve, reject) => {
        const q = request(`${srv.url}${path}`, { method: 'POST', agent, headers: { 'content-length': body.length } }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d) => (text += d));
          res.on('end', () => resolve(`${res.statusCode} ${text}`));
        });
        q.on('error', reject);
        q.end(body);
      });
      assert.equal(answer, '401 no', `${path}: the app's answer, not a 503 of a slot still held`);
      global.gc();
      await until(() => seen.finalized === i + 1, 5000, `${path}: the handler's finally once the answer is over`);
      assert.equal(fn.stats().open, 0, path);
    }
    assert.equal(fn.stats().cancelled, cases.length);
    assert.equal(kept.length, cases.length);
  } finally {
    agent.destroy();
    await srv.close();
  }
});

test('a client that leaves mid-body fails the body as a source: the handler never takes the cut body for whole', async () => {
  for (const how of ['run', 'feed', 'chunked']) {
    const after = [];
    const fn = streamFn(
      async function* upload(events) {
        const rows = [];
        for await (const e of events) rows.push(e);
        // What a handler does with a whole body (a commit): never with a cut one.
        after.push(rows.length);
        yield { rows: rows.length };
      },
      { idleTimeout: 0 },
    );
    const settled = [];
    const srv = await listen(async (req, res) => {
      const outcome =
        how === 'run'
          ? fn.run(ndjsonEvents(req))
          : (async () => {
              for await (const out of fn.open().feed(ndjsonEvents(req))) void out;
            })();
      settled.push(
        await outcome.then(
          () => 'resolved',
          (error) => error,
        ),
      );
      res.destroy();
    });
    try {
      const headers = how === 'chunked' ? { 'transfer-encoding': 'chunked' } : { 'content-length': '1000' };
      const c = client(srv.url, { method: 'POST', headers });
      c.req.write('{"row":1}\n{"row":2}\n');
      await until(() => fn.stats().open === 1, 5000, 'the stream open');
      await new Promise((resolve) => setTimeout(resolve, 20));
      c.req.destroy();
      await until(() => settled.length === 1, 5000, `${how}: the stream to settle`);
      assert.deepEqual(after, [], `${how}: the code after the loop ran`);
      assert.notEqual(settled[0], 'resolved', how);
      assert.equal(settled[0].code, 'ECONNRESET', how);
      assert.deepEqual(
        { completed: fn.stats().completed, cancelled: fn.stats().cancelled, open: fn.stats().open },
        { completed: 0, cancelled: 1, open: 0 },
        how,
      );
    } finally {
      await srv.close();
    }
  }
});

test('with a writer, a client that leaves mid-body gives the handler its connection error (ECONNRESET) as the cause', async () => {
  const causes = [];
  const fn = streamFn(
    async function* upload(events) {
      try {
        for await (const e of events) yield e;
      } catch (error) {
        causes.push([error.code, error.cause?.code]);
        throw error;
      }
    },
    { idleTimeout: 0 },
  );
  const srv = await listen(async (req, res) => {
    await sendNdjson(res, fn.open().feed(ndjsonEvents(req)));
  });
  try {
    const c = client(srv.url, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } });
    c.req.write('{"row":1}\n');
    await until(() => fn.stats().open === 1, 5000, 'the stream open');
    await new Promise((resolve) => setTimeout(resolve, 50));
    c.req.destroy();
    await until(() => causes.length === 1, 5000, 'the handler to see the cancel');
    assert.deepEqual(causes, [['ERR_VELO_STREAM_CLOSED', 'ECONNRESET']]);
  } finally {
    await srv.close();
  }
});
