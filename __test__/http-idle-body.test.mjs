// idleTimeout counts whole lines of an NDJSON body, not bytes: a stream whose input ends (idle) while a line of
// the body is still arriving is answered with 408 RequestBodyTimeoutError (an error line after outputs), never a
// silent 200 over a cut body. A client silent between whole lines loses nothing it sent, and a handler that
// stops taking lines on its own is not an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import Fastify from 'fastify';
import { streamFn } from 'velo-stream';
import { RequestBodyTimeoutError, contentType, ndjsonEvents, sendNdjson, toReadable } from 'velo-stream/http';
import { deadline, listen, rawExchange } from './helpers/server.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sums the body's events, then yields the total. */
const sum = streamFn(
  async function* sum(events) {
    let total = 0;
    let n = 0;
    for await (const e of events) {
      total += e.v;
      n++;
    }
    yield { n, total };
  },
  { idleTimeout: 300 },
);

/** Yields each event, then its count at the end. */
const echoCount = streamFn(
  async function* echoCount(events) {
    let n = 0;
    for await (const e of events) {
      n++;
      yield e;
    }
    yield { n };
  },
  { idleTimeout: 300 },
);

const SERVERS = {
  sendNdjson: (fn) => listen((req, res) => void sendNdjson(res, fn.open().feed(ndjsonEvents(req)))),
  'pipeline(toReadable)': (fn) =>
    listen((req, res) => void pipeline(toReadable(fn.open().feed(ndjsonEvents(req)), 'ndjson'), res).catch(() => {})),
  'Fastify reply.send(toReadable)': async (fn) => {
    const app = Fastify();
    app.addContentTypeParser('*', (_req, _payload, done) => done(null));
    app.post('/', (request, reply) => {
      reply.header('content-type', contentType('ndjson'));
      return reply.send(toReadable(fn.open().feed(ndjsonEvents(request.raw)), 'ndjson'));
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { port: app.server.address().port, close: () => app.close() };
  },
};

const HEAD = 'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n';

/** Sends `body` one byte every `every` ms (chunked), ends it, and resolves with the answer's status and body. */
async function trickled(port, body, every, path = '/') {
  const r = await deadline(
    rawExchange(port, HEAD.replace('POST / ', `POST ${path} `), async (socket) => {
      for (const c of body) {
        if (socket.destroyed) return;
        socket.write(`1\r\n${c}\r\n`);
        await sleep(every);
      }
      if (!socket.destroyed) socket.write('0\r\n\r\n');
    }),
    20_000,
    'the answer',
  );
  const status = Number(r.text.split(' ')[1]);
  const raw = r.text.slice(r.text.indexOf('\r\n\r\n') + 4);
  // (Chunked or not: keep the JSON lines.)
  const lines = raw
    .split('\r\n')
    .join('\n')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  return { status, lines };
}

assert.equal(new RequestBodyTimeoutError(1, 0).status, 408);

for (const [name, serve] of Object.entries(SERVERS)) {
  test(`${name}: the idle end while a line is arriving byte by byte is a 408 ERR_VELO_BODY_TIMEOUT, not a 200 over a cut body`, async () => {
    const srv = await serve(sum);
    try {
      const r = await trickled(srv.port, '{"v":1}\n{"v":2}\n{"v":3}\n', 100);
      assert.equal(r.status, 408, JSON.stringify(r));
      assert.equal(r.lines.length, 1, JSON.stringify(r.lines));
      assert.equal(r.lines[0].error.code, 'ERR_VELO_BODY_TIMEOUT');
      assert.equal(r.lines[0].error.line, 1);
    } finally {
      await srv.close();
    }
  });

  test(`${name}: after outputs, the idle end while a line is arriving ends the answer with an error line`, async () => {
    const srv = await serve(echoCount);
    try {
      const r = await deadline(
        rawExchange(srv.port, HEAD, async (socket) => {
          socket.write('8\r\n{"v":1}\n\r\n');
          await sleep(100);
          for (const c of '{"v":2}\n') {
            if (socket.destroyed) return;
            socket.write(`1\r\n${c}\r\n`);
            await sleep(150);
          }
        }),
        20_000,
        'the answer',
      );
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.match(r.text, /\{"v":1\}\n/);
      assert.match(r.text, /\{"error":\{"message":"[^"]*line 2 was arriving[^"]*","code":"ERR_VELO_BODY_TIMEOUT","line":2\}\}\n/);
      assert.doesNotMatch(r.text, /\{"n":/, 'no total over a cut body');
    } finally {
      await srv.close();
    }
  });

  test(`${name}: a client silent between whole lines past idleTimeout gets the outputs of every line it sent, no error`, async () => {
    const srv = await serve(echoCount);
    try {
      const r = await deadline(
        rawExchange(srv.port, HEAD, async (socket) => {
          socket.write('10\r\n{"v":1}\n{"v":2}\n\r\n');
          // Silent, the body not ended: the idle end closes the input; nothing sent is lost.
        }),
        20_000,
        'the answer',
      );
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.match(r.text, /\{"v":1\}\n/);
      assert.match(r.text, /\{"v":2\}\n/);
      assert.match(r.text, /\{"n":2\}\n/);
      assert.doesNotMatch(r.text, /error/);
    } finally {
      await srv.close();
    }
  });
}

/** `run()` and a `for await` over `feed()`, with no writer: what they collect, or how they fail, answered as JSON. */
const COLLECTORS = {
  'run()': (fn, req) => fn.run(ndjsonEvents(req)),
  'for await over feed()': async (fn, req) => {
    const out = [];
    for await (const o of fn.open().feed(ndjsonEvents(req))) out.push(o);
    return out;
  },
};

for (const [name, collect] of Object.entries(COLLECTORS)) {
  test(`${name}: the idle end while a line is arriving fails with ERR_VELO_BODY_TIMEOUT, never a success over a cut body; silence between whole lines is no error`, async () => {
    const srv = await listen(async (req, res) => {
      try {
        const out = await collect(req.url === '/sum' ? sum : echoCount, req);
        res.end(`${JSON.stringify({ out })}\n`);
      } catch (error) {
        res.statusCode = error.status ?? 500;
        res.end(`${JSON.stringify({ error: { code: error.code } })}\n`);
      }
    });
    try {
      const cut = await trickled(srv.port, '{"v":1}\n{"v":2}\n', 100, '/sum');
      assert.deepEqual(cut, { status: 408, lines: [{ error: { code: 'ERR_VELO_BODY_TIMEOUT' } }] });
      const r = await deadline(
        rawExchange(srv.port, HEAD.replace('POST / ', 'POST /echo '), (socket) => void socket.write('10\r\n{"v":1}\n{"v":2}\n\r\n')),
        20_000,
        'the answer',
      );
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.match(r.text, /\{"out":\[\{"v":1\},\{"v":2\},\{"n":2\}\]\}\n/);
    } finally {
      await srv.close();
    }
  });
}

test('a handler that stops taking lines on its own while a line is arriving is not an error', async () => {
  const firstOnly = streamFn(
    async function* firstOnly(events) {
      for await (const e of events) {
        yield e;
        return;
      }
    },
    { idleTimeout: 300 },
  );
  const srv = await SERVERS.sendNdjson(firstOnly);
  try {
    const r = await trickled(srv.port, '{"v":1}\n{"v":2}\n', 20);
    assert.equal(r.status, 200);
    assert.deepEqual(r.lines, [{ v: 1 }]);
  } finally {
    await srv.close();
  }
});
