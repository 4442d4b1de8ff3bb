// An error answered while the client is still sending its body reaches a client that reads its answer only
// later: the connection is closed with a lingering close (Connection: close, the answer, the end of the server's
// side, then the rest of the body read and dropped up to a bound) rather than destroyed with body bytes unread,
// which makes the kernel send a reset that discards the answer at the client. A body that goes on past the bound
// (trickled for ever) is still cut off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import Fastify from 'fastify';
import { streamFn } from 'velo-stream';
import { contentType, ndjsonEvents, sendError, sendNdjson, toReadable } from 'velo-stream/http';
import { deadline, listen, until } from './helpers/server.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Fails at an event `{"boom":true}`, before any output. */
const planned = streamFn(
  async function* planned(events) {
    for await (const e of events) {
      if (e.boom) throw Object.assign(new Error('planned'), { status: 422 });
      yield e;
    }
  },
  { idleTimeout: 0 },
);

const SERVERS = {
  'sendNdjson (sendError on a throw)': () =>
    listen(async (req, res) => {
      try {
        await sendNdjson(res, planned.open().feed(ndjsonEvents(req)));
      } catch (error) {
        sendError(res, error);
      }
    }),
  'pipeline(toReadable)': () =>
    listen((req, res) => void pipeline(toReadable(planned.open().feed(ndjsonEvents(req)), 'ndjson'), res).catch(() => {})),
  'Fastify reply.send(toReadable)': async () => {
    const app = Fastify({ bodyLimit: 1 << 30 });
    app.addContentTypeParser('*', (_req, _payload, done) => done(null));
    app.post('/', (request, reply) => {
      reply.header('content-type', contentType('ndjson'));
      return reply.send(toReadable(planned.open().feed(ndjsonEvents(request.raw)), 'ndjson'));
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { port: app.server.address().port, close: () => app.close() };
  },
};

/**
 * A client that sends a chunked body opening with the failing line, goes on sending `more(socket)`, and reads
 * what the server sent only after `readAfter` ms. Resolves with what it read, and the socket's error, if any.
 */
async function lateReader(port, more, readAfter) {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.pause();
  let text = '';
  let error;
  let closed = false;
  socket.on('error', (e) => (error = e.code));
  const done = new Promise((resolve) => socket.on('close', () => ((closed = true), resolve())));
  setTimeout(() => {
    socket.on('data', (d) => (text += d));
    socket.resume();
  }, readAfter);
  socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n');
  socket.write('e\r\n{"boom":true}\n\r\n');
  await more(socket, () => closed);
  await deadline(done, 10_000, 'the server closing the connection');
  return { text, error };
}

for (const [name, serve] of Object.entries(SERVERS)) {
  test(`${name}: an early error answer reaches a client that is still uploading and reads it late`, async () => {
    const srv = await serve();
    try {
      const results = [];
      // Small pieces for 400 ms, read after 200 ms (the finding's client); one large write, read after 300 ms.
      const small = async (socket, closed) => {
        for (let k = 0; k < 40 && !closed(); k++) {
          socket.write('8\r\n{"z":1}\n\r\n');
          await sleep(10);
        }
        if (!closed()) socket.write('0\r\n\r\n');
      };
      const large = async (socket) => {
        const line = `{"f":"${'y'.repeat(1000)}"}\n`.repeat(1024);
        socket.write(`${Buffer.byteLength(line).toString(16)}\r\n${line}\r\n0\r\n\r\n`);
      };
      for (let i = 0; i < 4; i++) {
        results.push(await lateReader(srv.port, small, 200));
        results.push(await lateReader(srv.port, large, 300));
      }
      for (const [i, r] of results.entries()) {
        assert.match(r.text, /^HTTP\/1\.1 422 /, `try ${i}: the answer (socket error ${r.error})`);
        assert.match(r.text, /\r\nconnection: close\r\n/i, `try ${i}`);
        assert.match(r.text, /\{"error":\{"message":"planned"\}\}/, `try ${i}: the whole body`);
      }
    } finally {
      await srv.close();
    }
  });
}

test('a body trickled for ever after an early error answer is cut off after the lingering bound (about 2 s)', async () => {
  const srv = await SERVERS['sendNdjson (sendError on a throw)']();
  try {
    let trickled = 0;
    const started = Date.now();
    const r = await lateReader(
      srv.port,
      async (socket, closed) => {
        while (!closed() && trickled < 200) {
          await sleep(50);
          if (closed()) break;
          socket.write('1\r\n \r\n');
          trickled++;
        }
      },
      0,
    );
    const took = Date.now() - started;
    assert.match(r.text, /^HTTP\/1\.1 422 /);
    assert.ok(took < 5000, `closed after ${took} ms`);
    assert.ok(trickled < 200, 'the connection closed while the client still had body to send');
  } finally {
    await srv.close();
  }
});

test('a keep-alive connection lets its answered request go: the request is collected while the connection stays open', async () => {
  const echo = streamFn(async function* echo(events) {
    for await (const e of events) yield e;
  });
  const requests = [];
  const sockets = new Set();
  const srv = await listen((req, res) => {
    requests.push(new WeakRef(req));
    sockets.add(req.socket);
    if (req.url === '/readable') void pipeline(toReadable(echo.open().feed(ndjsonEvents(req)), 'ndjson'), res).catch(() => {});
    else void sendNdjson(res, echo.open().feed(ndjsonEvents(req)));
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const post = (path) =>
    new Promise((resolve, reject) => {
      const req = request(`${srv.url}${path}`, { method: 'POST', agent }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d) => (text += d));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end('{"a":1}\n');
    });
  try {
    for (const [i, path] of ['/ndjson', '/readable'].entries()) {
      assert.equal(await post(path), '{"a":1}\n', path);
      // Nothing else holds the request: the test keeps a WeakRef, Node lets it go once answered.
      await until(() => (global.gc(), requests[i].deref() === undefined), 5000, `${path}: the answered request collected`);
    }
    assert.equal(sockets.size, 1, 'both requests on one connection');
    assert.equal([...sockets][0].destroyed, false, 'the connection is still open');
  } finally {
    agent.destroy();
    await srv.close();
  }
});
