// What the HTTP writers do with the connection and the status around the outputs: a refused body behind
// toReadable (Fastify, pipeline) is answered with its status and closes the connection, even while the client
// trickles; a body sent whole keeps its keep-alive connection usable after a handler that stopped early; a HEAD
// request does not run the stream; a StreamLimitError is a 503, and sendError answers what is thrown before a
// writer is called; SSE leaves the Connection header to Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { pipeline } from 'node:stream/promises';
import express from 'express';
import Fastify from 'fastify';
import { StreamLimitError, streamFn } from 'velo-stream';
import { contentType, ndjsonEvents, sendError, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { deadline, listen, rawConnection, rawExchange, until } from './helpers/server.mjs';
import { unhandledDuring } from './helpers/util.mjs';

/** Answers the first event of the body, then returns while the client may still be sending. */
const firstOnly = streamFn(
  async function* firstOnly(events) {
    for await (const e of events) {
      yield e;
      return;
    }
  },
  { idleTimeout: 0 },
);

/** Fails at the first event, before any output. */
const failingFirst = streamFn(async function* failingFirst(events) {
  for await (const e of events) throw Object.assign(new Error(`bad event ${JSON.stringify(e)}`), { status: 422, code: 'E_BAD' });
});

/** Fails after answering the first event. */
const failing = streamFn(async function* failing(events) {
  for await (const e of events) {
    yield e;
    throw Object.assign(new Error('bad event'), { code: 'E_BAD' });
  }
});

const echo = streamFn(async function* echo(events) {
  for await (const e of events) yield e;
});

/** A Fastify app whose POST / answers with `reply.send(toReadable(fn's stream fed by the raw body))`. */
async function fastifyApp(fn, ndjsonOptions) {
  const app = Fastify();
  // The body is left to ndjsonEvents.
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));
  app.post('/', (request, reply) => {
    reply.header('content-type', contentType('ndjson'));
    return reply.send(toReadable(fn.open().feed(ndjsonEvents(request.raw, ndjsonOptions)), 'ndjson'));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address();
  return { server: app.server, port, url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

/** A node:http server answering POST / with `pipeline(toReadable(...), res)`. */
async function pipelineServer(fn, ndjsonOptions) {
  return listen((req, res) => {
    res.setHeader('content-type', contentType('ndjson'));
    pipeline(toReadable(fn.open().feed(ndjsonEvents(req, ndjsonOptions)), 'ndjson'), res).catch(() => {});
  });
}

/** A node:http server answering POST / with `sendNdjson`. */
async function sendNdjsonServer(fn, ndjsonOptions) {
  return listen((req, res) => void sendNdjson(res, fn.open().feed(ndjsonEvents(req, ndjsonOptions))));
}

const TO_READABLE = { 'Fastify reply.send(toReadable)': fastifyApp, 'pipeline(toReadable, res)': pipelineServer };

/**
 * A chunked POST whose body opens with `first`, then one more byte every 50 ms for as long as the connection is
 * open (up to 4 s). Resolves with what the server sent, and how many bytes trickled before it closed.
 */
async function trickle(port, first) {
  let trickled = 0;
  const head = 'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n';
  const r = await deadline(
    rawExchange(port, head, async (socket) => {
      socket.write(`${Buffer.byteLength(first).toString(16)}\r\n${first}\r\n`);
      while (!socket.destroyed && !socket.readableEnded && trickled < 80) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        if (socket.destroyed || socket.readableEnded) break;
        socket.write('1\r\n \r\n');
        trickled++;
      }
    }),
    10_000,
    'the server closing the trickling connection',
  );
  return { text: r.text, trickled };
}

test('toReadable (Fastify, pipeline): a body refused before any output is answered 413 or 400 and the connection closes, though the client trickles', async () => {
  for (const [how, serve] of Object.entries(TO_READABLE)) {
    const srv = await serve(echo, { maxLineBytes: 50 });
    try {
      for (const [what, first, status, code] of [
        ['a line over maxLineBytes', `{"a":"${'x'.repeat(100)}"}\n`, 413, 'ERR_VELO_NDJSON_LINE_TOO_LARGE'],
        ['a malformed line', '{nope\n', 400, 'ERR_VELO_BAD_NDJSON'],
      ]) {
        const { text, trickled } = await trickle(srv.port, first);
        assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `), `${how}, ${what}: the status`);
        assert.match(text, /\r\nconnection: close\r\n/i, `${how}, ${what}`);
        assert.match(text, /\r\ncontent-type: application\/json; charset=utf-8\r\n/i, `${how}, ${what}`);
        assert.match(text, new RegExp(`\\{"error":\\{"message":"Line 1 [^"]*","code":"${code}"`), `${how}, ${what}: the JSON body`);
        assert.ok(trickled < 40, `${how}, ${what}: the connection closed while the client still sent (${trickled} bytes trickled)`);
      }
      await until(() => echo.stats().open === 0, 5000, 'every stream ended');
    } finally {
      await srv.close();
    }
  }
});

test('toReadable (Fastify, pipeline): once a handler returned while its client trickles a body, the answer ends and the connection closes', async () => {
  for (const [how, serve] of Object.entries(TO_READABLE)) {
    const srv = await serve(firstOnly);
    try {
      const { text, trickled } = await trickle(srv.port, '{"a":1}\n');
      assert.match(text, /^HTTP\/1\.1 200 /, how);
      assert.match(text, /\r\n8\r\n\{"a":1\}\n\r\n0\r\n\r\n$/, `${how}: the answer is complete before the close`);
      assert.ok(trickled < 40, `${how}: the connection closed while the client still sent (${trickled} bytes trickled)`);
    } finally {
      await srv.close();
    }
  }
});

/** POSTs `body` (with its Content-Length) through `agent`; resolves with the answer, or the error's code. */
function post(url, body, agent) {
  return new Promise((resolve) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection, text }));
    });
    req.on('error', (e) => resolve({ error: e.code }));
    req.end(body);
  });
}

test('a body sent whole keeps its keep-alive connection usable after a handler that failed or returned after one output', async () => {
  const serves = { sendNdjson: sendNdjsonServer, ...TO_READABLE };
  for (const [how, serve] of Object.entries(serves)) {
    for (const [what, fn, answer] of [
      ['failed', failing, '{"a":1}\n{"error":{"message":"Internal Server Error","code":"E_BAD"}}\n'],
      ['returned', firstOnly, '{"a":1}\n'],
    ]) {
      const srv = await serve(fn);
      let connections = 0;
      srv.server.on('connection', () => connections++);
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await post(srv.url, '{"a":1}\n', agent);
        assert.deepEqual(first, { status: 200, connection: 'keep-alive', text: answer }, `${how}, ${what}`);
        // Node's keep-alive agent sends the next request on the same connection as soon as the answer ended.
        const next = await post(srv.url, '{"a":1}\n', agent);
        assert.deepEqual(next, { status: 200, connection: 'keep-alive', text: answer }, `${how}, ${what}: the next request`);
        assert.equal(connections, 1, `${how}, ${what}: one connection for both`);
      } finally {
        agent.destroy();
        await srv.close();
      }
    }
  }
});

test('a handler that returns before a malformed later line keeps the connection, however the body was cut into packets', async () => {
  const serves = { sendNdjson: sendNdjsonServer, ...TO_READABLE };
  const body = '1\nnope\n2\n';
  // The same whole body, its packets cut before, inside and after the malformed line.
  const splits = { 'one packet': [body], 'after line 1': ['1\n', 'nope\n2\n'], 'after the malformed line': ['1\nnope\n', '2\n'] };
  for (const [how, serve] of Object.entries(serves)) {
    const srv = await serve(firstOnly);
    try {
      for (const [split, packets] of Object.entries(splits)) {
        const what = `${how}, ${split}`;
        let text = '';
        const { socket, closed } = await rawConnection(srv.port, (t) => (text += t));
        let open = true;
        closed.then(() => (open = false));
        socket.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
        for (const packet of packets) {
          socket.write(packet);
          // (Its own packet: the server reads it before the next is sent.)
          await new Promise((resolve) => setTimeout(resolve, 30));
        }
        await until(() => /\r\n0\r\n\r\n$/.test(text) || !open, 5000, `${what}: the answer`);
        assert.match(text, /^HTTP\/1\.1 200 /, what);
        assert.match(text, /\r\n2\r\n1\n\r\n0\r\n\r\n$/, `${what}: the output of line 1, no error: ${JSON.stringify(text)}`);
        assert.doesNotMatch(text, /connection: close/i, what);
        socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n3\n');
        await until(() => (text.match(/HTTP\/1\.1 200 /g) ?? []).length === 2 || !open, 5000, `${what}: the next answer`);
        assert.equal((text.match(/HTTP\/1\.1 200 /g) ?? []).length, 2, `${what}: the next request answered on the connection`);
        socket.destroy();
      }
    } finally {
      await srv.close();
    }
  }
});

test('a line refused after an output, in a body that had all arrived, keeps the keep-alive connection: nothing is left unread', async () => {
  const echoing = streamFn(async function* echoing(events) {
    for await (const e of events) yield e;
  });
  const srv = await sendNdjsonServer(echoing);
  try {
    let text = '';
    const { socket, closed } = await rawConnection(srv.port, (t) => (text += t));
    let open = true;
    closed.then(() => (open = false));
    socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n1\n');
    await until(() => text.includes('\r\n1\n\r\n'), 5000, 'the output of line 1');
    // The rest of the body, whole: a malformed line.
    socket.write('x\n');
    await until(() => /\r\n0\r\n\r\n$/.test(text) || !open, 5000, 'the answer');
    assert.match(text, /"code":"ERR_VELO_BAD_NDJSON","line":2/);
    socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n3\n');
    await until(() => (text.match(/HTTP\/1\.1 200 /g) ?? []).length === 2 || !open, 5000, 'the next answer');
    assert.equal((text.match(/HTTP\/1\.1 200 /g) ?? []).length, 2, 'the next request answered on the connection');
    socket.destroy();
  } finally {
    await srv.close();
  }
});

test('a body refused whole, sent with its headers, keeps the keep-alive connection: before an output, after one, and answered by the route itself', async () => {
  const echoing = streamFn(async function* echoing(events) {
    for await (const e of events) yield e;
  });
  const own = await listen(async (req, res) => {
    // The route answers the refusal itself.
    try {
      for await (const e of ndjsonEvents(req, { maxLineBytes: 8 })) void e;
      res.end('read');
    } catch (error) {
      res.writeHead(error.status).end(error.code);
    }
  });
  const serves = {
    sendNdjson: (fn) => sendNdjsonServer(fn, { maxLineBytes: 8 }),
    ...Object.fromEntries(Object.entries(TO_READABLE).map(([how, serve]) => [how, (fn) => serve(fn, { maxLineBytes: 8 })])),
  };
  const bodies = { 'a malformed line': ['nope\n', 400], 'a line too long': ['{"a":"xxxxxxxx"}\n', 413], 'a malformed line after one': ['1\nnope\n', 200] };
  for (const [how, serve] of [...Object.entries(serves), ['the route', null]]) {
    const srv = serve === null ? own : await serve(echoing);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    let connections = 0;
    srv.server.on('connection', () => connections++);
    try {
      for (const [what, [body, status]] of Object.entries(bodies)) {
        const r = await post(srv.url, body, agent);
        assert.equal(r.status, serve === null && status === 200 ? 400 : status, `${how}, ${what}`);
        assert.equal(r.connection, 'keep-alive', `${how}, ${what}`);
      }
      assert.equal((await post(srv.url, '2\n', agent)).status, 200, how);
      assert.equal(connections, 1, `${how}: one connection for every request`);
    } finally {
      agent.destroy();
      if (serve !== null) await srv.close();
    }
  }
  await own.close();
});

test('a handler error before any output keeps the keep-alive connection of a body sent whole, with the headers or after them', async () => {
  const serves = { sendNdjson: sendNdjsonServer, ...TO_READABLE };
  const answer = '{"error":{"message":"bad event {\\"a\\":1}","code":"E_BAD"}}';
  for (const [how, serve] of Object.entries(serves)) {
    const srv = await serve(failingFirst);
    let connections = 0;
    srv.server.on('connection', () => connections++);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // Node's client sends a small body with its headers.
      for (const i of [1, 2]) {
        const r = await post(srv.url, '{"a":1}\n', agent);
        assert.deepEqual(r, { status: 422, connection: 'keep-alive', text: answer }, `${how}, request ${i}`);
      }
      assert.equal(connections, 1, `${how}: one connection for both`);
      // The body in a packet of its own, after the headers.
      let text = '';
      const { socket, closed } = await rawConnection(srv.port, (t) => (text += t));
      let open = true;
      closed.then(() => (open = false));
      socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n');
      await new Promise((resolve) => setTimeout(resolve, 30));
      socket.write('{"a":1}\n');
      await until(() => /(\}\}|\r\n0\r\n\r\n)$/.test(text) || !open, 5000, `${how}: the answer`);
      assert.match(text, /^HTTP\/1\.1 422 /, how);
      assert.doesNotMatch(text, /connection: close/i, how);
      socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n{"a":1}\n');
      await until(() => (text.match(/HTTP\/1\.1 422 /g) ?? []).length === 2 || !open, 5000, `${how}: the next answer`);
      assert.equal((text.match(/HTTP\/1\.1 422 /g) ?? []).length, 2, `${how}: the next request answered on the connection`);
      socket.destroy();
    } finally {
      agent.destroy();
      await srv.close();
    }
  }
});

test("a body's reader that leaves after the answer is out, the body still arriving: the rest is dropped and the connection's next request answered", async () => {
  const srv = await listen(async (req, res) => {
    if (req.url === '/next') return void res.end('next\n');
    const lines = ndjsonEvents(req)[Symbol.asyncIterator]();
    await lines.next();
    res.end('first\n');
    await new Promise((resolve) => res.on('finish', resolve));
    // (The response has let go of the connection: nothing links it to this request's answer any more.)
    await new Promise((resolve) => setImmediate(resolve));
    await lines.return();
  });
  let text = '';
  const { socket } = await rawConnection(srv.port, (t) => (text += t));
  try {
    const line = JSON.stringify({ pad: 'x'.repeat(1000) }) + '\n';
    socket.write(`POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: ${line.length * 2000}\r\n\r\n`);
    socket.write(line.repeat(2000));
    socket.write('GET /next HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => text.includes('next\n'), 10_000, 'the next request on the connection answered');
    assert.match(text, /first\n/);
  } finally {
    socket.destroy();
    await srv.close();
  }
});

test('HEAD: the headers alone; the stream is cancelled unread, whoever writes it', async () => {
  let yielded = 0;
  let finalized = 0;
  const endless = streamFn(
    async function* endless() {
      try {
        for (;;) {
          yielded++;
          yield { t: yielded };
        }
      } finally {
        finalized++;
      }
    },
    { buffer: 16 },
  );
  const srv = await listen((req, res) => {
    const s = endless.open();
    if (req.url === '/sse') return void sendSse(res, s);
    if (req.url === '/ndjson') return void sendNdjson(res, s);
    pipeline(toReadable(s, 'ndjson'), res).catch(() => {});
  });
  try {
    for (const path of ['/sse', '/ndjson', '/readable']) {
      const before = finalized;
      const answer = await deadline(
        new Promise((resolve, reject) => {
          const req = request(`${srv.url}${path}`, { method: 'HEAD', agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'] }));
          });
          req.on('error', reject);
          req.end();
        }),
        5000,
        `the answer to HEAD ${path}`,
      );
      assert.equal(answer.status, 200, path);
      if (path === '/sse') assert.match(answer.type, /^text\/event-stream/, path);
      if (path === '/ndjson') assert.match(answer.type, /^application\/x-ndjson/, path);
      await until(() => finalized === before + 1, 5000, `${path}: the stream cancelled`);
    }
    // The buffer's worth at most, not the hundreds of thousands a handler runs to when nothing holds it back.
    assert.ok(yielded < 100, `the handlers ran ${yielded} steps for three HEAD requests`);
    assert.equal(endless.stats().cancelled, 3);
  } finally {
    await srv.close();
  }
});

test('maxConcurrent: StreamLimitError has status 503; sendError answers it as the writers answer an error, and nothing is unhandled', async () => {
  assert.equal(new StreamLimitError('x').status, 503);
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const slow = streamFn(
    async function* slow(events) {
      for await (const e of events) {
        await gate;
        yield e;
      }
    },
    { maxConcurrent: 1 },
  );
  const srv = await listen(async (req, res) => {
    // The pattern of docs/http.md for a node:http handler.
    try {
      await sendNdjson(res, slow.open().feed(ndjsonEvents(req)));
    } catch (error) {
      sendError(res, error);
    }
  });
  const app = express();
  app.set('env', 'test');
  app.post('/', async (req, res) => {
    await sendNdjson(res, slow.open().feed(ndjsonEvents(req)));
  });
  const expressSrv = await listen(app);
  try {
    const unhandled = await unhandledDuring(async () => {
      const admitted = post(srv.url, '{"a":1}\n', false);
      await until(() => slow.stats().open === 1, 5000, 'the first stream');
      // (A body nobody reads: the refusal closes the connection rather than read it.)
      const head = 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n';
      const refused = await deadline(rawExchange(srv.port, head), 5000, 'the 503');
      assert.match(refused.text, /^HTTP\/1\.1 503 /);
      assert.match(refused.text, /\r\nconnection: close\r\n/i);
      assert.deepEqual(JSON.parse(refused.text.slice(refused.text.indexOf('\r\n\r\n') + 4)), {
        error: { message: 'Service Unavailable', code: 'ERR_VELO_STREAM_LIMIT', status: 503 },
      });
      // Express 5 answers a rejected handler with the error's status.
      const viaExpress = await post(expressSrv.url, '{"a":1}\n', false);
      assert.equal(viaExpress.status, 503);
      release();
      assert.equal((await admitted).text, '{"a":1}\n');
    });
    assert.deepEqual(unhandled, []);
  } finally {
    await srv.close();
    await expressSrv.close();
  }
});

test('sendError: checks res; a response whose headers went out is destroyed, one that ended is left', async () => {
  assert.throws(() => sendError(null, new Error('x')), { code: 'ERR_INVALID_ARG_TYPE' });
  const srv = await listen((req, res) => {
    if (req.url === '/started') {
      res.writeHead(200).write('partial');
      sendError(res, new Error('late'));
      return;
    }
    res.end('done');
    sendError(res, new Error('after the end'));
  });
  try {
    const ended = await post(`${srv.url}/ended`, '', false);
    assert.deepEqual([ended.status, ended.text], [200, 'done']);
    const started = await post(`${srv.url}/started`, '', false);
    assert.ok(started.error !== undefined, 'the client sees the answer cut short');
  } finally {
    await srv.close();
  }
});

test('SSE: no Connection header of its own, so a client that asked for Connection: close gets it', async () => {
  const once = streamFn(async function* once() {
    yield { done: true };
  });
  const srv = await listen((_req, res) => void sendSse(res, once.open()));
  srv.server.keepAliveTimeout = 60_000;
  try {
    const r = await deadline(
      rawExchange(srv.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
      5000,
      'the server closing the connection',
    );
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(r.text, /\r\nconnection: keep-alive\r\n/i);
    assert.match(r.text, /\r\ncache-control: no-cache\r\n/i);
    assert.match(r.text, /data: \{"done":true\}\n\n\r\n0\r\n\r\n$/);
  } finally {
    await srv.close();
  }
});
