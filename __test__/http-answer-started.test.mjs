// Answers that start before the request body has ended. Every writer (sendNdjson, sendSse, toReadable piped into
// the response or read through gzip, Fastify's reply.send) must: reach a client that sent `Connection: close` or
// speaks HTTP/1.0 and reads only after sending (a lingering close, never a reset); deliver the outputs of every line
// before a refused line, then the error, whatever the reader's speed; close the connection after a refused body on
// every path; and keep a keep-alive connection whose large body was sent whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlibConstants, createGzip, gunzipSync } from 'node:zlib';
import Fastify from 'fastify';
import { streamFn } from 'velo-stream';
import { contentType, ndjsonEvents, sendError, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { deadline, listen, rawConnection } from './helpers/server.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Takes one line, answers it, and returns: the answer starts (and ends) while the body still arrives. */
const firstOnly = streamFn(
  async function* firstOnly(events) {
    for await (const e of events) {
      yield { got: e };
      return;
    }
  },
  { idleTimeout: 0 },
);

/** Two outputs per line (`per` of them with `pad` bytes each, when asked by the line). */
const twice = streamFn(
  async function* twice(events) {
    for await (const e of events) {
      const per = typeof e === 'object' && e !== null ? e.per : 2;
      const pad = typeof e === 'object' && e !== null ? 'p'.repeat(e.pad) : '';
      const n = typeof e === 'object' && e !== null ? e.n : e;
      for (let k = 0; k < per; k++) yield pad === '' ? `${n}.${k}` : { o: `${n}.${k}`, pad };
    }
  },
  { idleTimeout: 0 },
);

/** The writers, each in a server answering `fn`'s outputs over the request's NDJSON body. */
const WRITERS = {
  sendNdjson: (fn, ndjson) =>
    listen(async (req, res) => {
      try {
        await sendNdjson(res, fn.open().feed(ndjsonEvents(req, ndjson)));
      } catch (error) {
        sendError(res, error);
      }
    }),
  sendSse: (fn, ndjson) => listen((req, res) => void sendSse(res, fn.open().feed(ndjsonEvents(req, ndjson)))),
  'pipeline(toReadable)': (fn, ndjson) =>
    listen((req, res) => {
      res.setHeader('content-type', contentType('ndjson'));
      pipeline(toReadable(fn.open().feed(ndjsonEvents(req, ndjson)), 'ndjson'), res).catch(() => {});
    }),
  'toReadable through gzip': (fn, ndjson) =>
    listen((req, res) => {
      res.setHeader('content-type', contentType('ndjson'));
      res.setHeader('content-encoding', 'gzip');
      const gzip = createGzip({ flush: zlibConstants.Z_SYNC_FLUSH });
      pipeline(toReadable(fn.open().feed(ndjsonEvents(req, ndjson)), 'ndjson'), gzip, res).catch(() => {});
    }),
  'Fastify reply.send(toReadable)': async (fn, ndjson) => {
    const app = Fastify({ bodyLimit: 1 << 30 });
    app.addContentTypeParser('*', (_req, _payload, done) => done(null));
    app.post('/', (request, reply) => {
      reply.header('content-type', contentType('ndjson'));
      return reply.send(toReadable(fn.open().feed(ndjsonEvents(request.raw, ndjson)), 'ndjson'));
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { port: app.server.address().port, close: () => app.close() };
  },
};

/** Status line, headers (lower-cased names) and body (de-chunked, gunzipped) of one raw answer. */
function parseAnswer(raw) {
  const at = raw.indexOf('\r\n\r\n');
  if (at === -1) return { status: '', headers: {}, body: '' };
  const [status, ...lines] = raw.subarray(0, at).toString('latin1').split('\r\n');
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  let body = raw.subarray(at + 4);
  if (headers['transfer-encoding'] === 'chunked') {
    const parts = [];
    for (;;) {
      const nl = body.indexOf('\r\n');
      if (nl === -1) break;
      const size = parseInt(body.subarray(0, nl).toString('latin1'), 16);
      if (!(size > 0)) break;
      parts.push(body.subarray(nl + 2, nl + 2 + size));
      body = body.subarray(nl + 2 + size + 2);
    }
    body = Buffer.concat(parts);
  }
  if (headers['content-encoding'] === 'gzip') body = gunzipSync(body, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
  return { status, headers, body: body.toString('utf8') };
}

/**
 * A client that writes `head` and then `pieces` (strings, or `{ pause: ms }`), and reads what the server sent
 * only after `readAfter` ms (paused until then: the kernel holds it). Resolves once the server closed the
 * connection; fails if it is still open `wait` ms after the request began, with what was read and the socket's error code.
 */
async function lateReader(port, head, pieces, { readAfter = 300, wait = 10_000 } = {}) {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.pause();
  const parts = [];
  let error;
  let closed = false;
  socket.on('error', (e) => (error = e.code));
  const done = new Promise((resolve) => socket.on('close', () => ((closed = true), resolve())));
  const reading = sleep(readAfter).then(() => {
    socket.on('data', (d) => parts.push(d));
    socket.resume();
  });
  socket.write(head);
  const sending = (async () => {
    for (const piece of pieces) {
      if (closed) break;
      if (typeof piece === 'string') socket.write(piece);
      else await sleep(piece.pause);
    }
  })();
  await reading;
  await deadline(done, wait, 'the server closing the connection');
  await sending;
  return { raw: Buffer.concat(parts), error };
}

const chunk = (text) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;

/** The lines still sent after the first, slowly: the body is still arriving when the answer goes out. */
function trickle(line, count) {
  const pieces = [];
  for (let k = 0; k < count; k++) pieces.push(line, { pause: 10 });
  return pieces;
}

// H1: the answer starts before the body ends, on a connection that is not kept alive.
for (const [writer, serve] of Object.entries(WRITERS)) {
  test(`${writer}: an answer started while the body arrives reaches a Connection: close or HTTP/1.0 client that reads late`, async () => {
    const srv = await serve(firstOnly);
    try {
      const line = '{"n":1}\n';
      const requests = {
        'HTTP/1.1, Connection: close': [
          'POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n',
          [...trickle(chunk(line), 30), '0\r\n\r\n'],
        ],
        'HTTP/1.0': [`POST / HTTP/1.0\r\nHost: x\r\nContent-Length: ${line.length * 31}\r\n\r\n`, [line, ...trickle(line, 30)]],
      };
      for (const [name, [head, pieces]] of Object.entries(requests)) {
        for (let i = 0; i < 3; i++) {
          const r = await lateReader(srv.port, head, pieces);
          const answer = parseAnswer(r.raw);
          assert.match(answer.status, / 200 /, `${name}, try ${i}: the answer (socket error ${r.error})`);
          assert.match(answer.body, /"got":\{"n":1\}/, `${name}, try ${i}: the answer's body`);
        }
      }
    } finally {
      await srv.close();
    }
  });
}

// H1 with a refusal after an output: the error line too reaches the late reader.
for (const [writer, serve] of Object.entries(WRITERS)) {
  test(`${writer}: a body refused after an output is answered to a Connection: close client that reads late`, async () => {
    const srv = await serve(twice, { maxLineBytes: 64 });
    try {
      const head = 'POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n';
      for (const [name, bad] of [
        ['a malformed line', 'nope\n'],
        ['a line over maxLineBytes', `${'9'.repeat(100)}\n`],
      ]) {
        const r = await lateReader(srv.port, head, [chunk('1\n'), { pause: 20 }, chunk(bad), ...trickle(chunk('3\n'), 30)]);
        const answer = parseAnswer(r.raw);
        assert.match(answer.status, / 200 /, `${name}: the answer (socket error ${r.error})`);
        assert.match(answer.body, /1\.0[\s\S]*1\.1/, `${name}: the outputs`);
        assert.match(answer.body, /ERR_VELO_(BAD_NDJSON|NDJSON_LINE_TOO_LARGE)/, `${name}: the error`);
      }
    } finally {
      await srv.close();
    }
  });
}

/** The outputs named in an answer's body (`1.0`, `2.1`, ...) and its error codes, in order. */
function itemsOf(body) {
  return [...body.matchAll(/"?(\d+\.\d+)"?|"code":"(\w+)"/g)].map((m) => m[1] ?? m[2]);
}

// H2: the outputs of the lines before a refused line, then the error, whatever the chunking and the reader's speed.
test('feed(ndjsonEvents): the outputs of the lines before a refused line, then its error, for a slow reader too', async () => {
  for (const slow of [false, true]) {
    for (const body of ['1\n2\nnope\n', `1\n2\n${'9'.repeat(100)}\n`]) {
      const req = new Readable({ read() {} });
      req.push(Buffer.from(body));
      const got = [];
      try {
        for await (const o of twice.open().feed(ndjsonEvents(req, { maxLineBytes: 64 }))) {
          got.push(o);
          if (slow) await sleep(5);
        }
      } catch (error) {
        got.push(error.code);
      }
      assert.deepEqual(got.slice(0, 4), ['1.0', '1.1', '2.0', '2.1'], `slow ${slow}: ${got}`);
      assert.match(got[4], /^ERR_VELO_(BAD_NDJSON|NDJSON_LINE_TOO_LARGE)$/, `slow ${slow}: ${got}`);
      assert.equal(got.length, 5, `slow ${slow}: ${got}`);
    }
  }
});

test('feed(): a generic source that throws still cancels the stream (its outputs not read are dropped)', async () => {
  const gate = Promise.withResolvers?.() ?? (() => {
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    return { promise, resolve };
  })();
  async function* source() {
    yield 1;
    await gate.promise;
    throw Object.assign(new Error('source failed'), { code: 'E_SRC' });
  }
  const s = twice.open();
  const got = [];
  try {
    for await (const o of s.feed(source())) {
      got.push(o);
      gate.resolve();
      await sleep(20);
    }
  } catch (error) {
    got.push(error.code);
  }
  assert.equal(got.at(-1), 'E_SRC');
  assert.equal(s.state, 'cancelled');
});

for (const [writer, serve] of Object.entries(WRITERS)) {
  test(`${writer}: the outputs of the lines before a refused line, then the error, in one chunk or behind a slow client`, async () => {
    const srv = await serve(twice, { maxBodyBytes: 4096 });
    try {
      const head = 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n';
      const oneChunk = await lateReader(srv.port, head, [chunk('1\n2\nnope\n')], { readAfter: 0 });
      assert.deepEqual(itemsOf(parseAnswer(oneChunk.raw).body), ['1.0', '1.1', '2.0', '2.1', 'ERR_VELO_BAD_NDJSON']);
      // 300 outputs of 1 KB per line: the socket is full long before the refused line is answered.
      const big = (n) => `{"n":${n},"per":300,"pad":1000}\n`;
      const slowClient = await lateReader(srv.port, head, [chunk(`${big(1)}${big(2)}${big(3)}nope\n`)], { readAfter: 500 });
      const items = itemsOf(parseAnswer(slowClient.raw).body);
      for (const n of [1, 2, 3]) assert.equal(items.filter((o) => o.startsWith(`${n}.`)).length, 300, `line ${n}'s outputs`);
      assert.equal(items.at(-1), 'ERR_VELO_BAD_NDJSON');
      // A body over maxBodyBytes: every line within the limit is answered, then the refusal.
      const lines = Array.from({ length: 1200 }, (_, i) => `${i}\n`).join('');
      const tooLarge = await lateReader(srv.port, head, [chunk(lines)], { readAfter: 0 });
      const large = itemsOf(parseAnswer(tooLarge.raw).body);
      const within = lines.slice(0, 4096).split('\n').length - 1;
      assert.equal(large.length, within * 2 + 1, 'outputs of the lines within the limit, then the error');
      assert.equal(large.at(-1), 'ERR_VELO_BODY_TOO_LARGE');
    } finally {
      await srv.close();
    }
  });
}

// H3: a refused body closes the connection on every path, a toReadable read through gzip included.
for (const [writer, serve] of Object.entries(WRITERS)) {
  test(`${writer}: a refused body closes a keep-alive connection whose client goes on trickling`, async () => {
    const srv = await serve(twice, { maxLineBytes: 16 });
    try {
      const head = 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n';
      for (const first of [`1\n${'9'.repeat(40)}\n`, `${'9'.repeat(40)}\n`]) {
        // Trickled for far longer than the deadline below: only the server's close ends it.
        const r = await lateReader(srv.port, head, [chunk(first), ...trickle(chunk('3\n'), 2000)], { readAfter: 0, wait: 8000 });
        const answer = parseAnswer(r.raw);
        assert.match(answer.body, /ERR_VELO_NDJSON_LINE_TOO_LARGE/);
      }
    } finally {
      await srv.close();
    }
  });
}

// M1: a body sent whole, however large, keeps its keep-alive connection after a handler that left early.
for (const [writer, serve] of Object.entries(WRITERS)) {
  test(`${writer}: a 1 MB body sent whole keeps its keep-alive connection when the handler leaves after line 1`, async () => {
    const srv = await serve(firstOnly);
    try {
      const body = '{"n":1}\n'.repeat(125_000);
      let text = '';
      const { socket, closed } = await rawConnection(srv.port, (d) => (text += d));
      const answered = (n) =>
        deadline(
          (async () => {
            while ((text.match(/HTTP\/1\.1 /g) ?? []).length < n || !/(\r\n0\r\n\r\n|\n)$/.test(text)) {
              if (socket.destroyed) return;
              await sleep(5);
            }
          })(),
          10_000,
          `answer ${n}`,
        );
      socket.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      await answered(1);
      assert.doesNotMatch(text, /connection: close/i);
      socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n{"n":2}\n');
      await Promise.race([answered(2), closed]);
      assert.equal((text.match(/HTTP\/1\.1 200 /g) ?? []).length, 2, `two answers on one connection: ${text.slice(0, 400)}`);
      // (Through gzip the second answer's body is compressed.)
      if (writer !== 'toReadable through gzip') assert.match(text, /"got":\{"n":2\}/);
      socket.destroy();
    } finally {
      await srv.close();
    }
  });
}
