// What an error answer carries, whoever writes it (sendNdjson, sendSse, pipeline(toReadable), Fastify's
// reply.send(toReadable), sendError), before any output and after some: one fixed shape,
// `{"error":{"message","code"?}}` (plus `line`/`limit` for the library's own body errors), never the error's own
// toJSON() (an AxiosError's would carry its request's Authorization header), a 5xx's message hidden unless
// `expose: true`; an error whose fields cannot be read (throwing getters, proxies, null prototype, BigInt or
// Symbol codes, huge messages) is still answered, non-2xx before outputs and with an error line after, and nothing
// is left unhandled; the `headers` option reaches an early error answer; an answer to a request without a body
// keeps its keep-alive connection. A cancel of the stream by the server (`cancel()`, the feed's, an aborted signal)
// is an error, never a whole answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import { streamFn } from 'velo-stream';
import { contentType, ndjsonEvents, sendError, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { client, deadline, listen, until } from './helpers/server.mjs';
import { unhandledDuring } from './helpers/util.mjs';

const SECRET = 'Bearer sk-live-SECRET-TOKEN';

/** An error shaped as axios makes one for an upstream 401: its toJSON() holds the request's config and a stack. */
function axiosLike() {
  const e = new Error('Request failed with status code 401');
  e.name = 'AxiosError';
  e.code = 'ERR_BAD_REQUEST';
  e.status = 401;
  e.config = { url: 'http://upstream/v1/secret', headers: { Authorization: SECRET } };
  e.toJSON = function toJSON() {
    return {
      message: this.message,
      name: this.name,
      stack: this.stack,
      config: this.config,
      code: this.code,
      status: this.status,
    };
  };
  return e;
}

/** Thrown values whose fields cannot be read plainly. */
const HOSTILE = {
  'toJSON with a BigInt': () =>
    Object.assign(new Error('row conflict'), {
      rowId: 1n,
      toJSON() {
        return { message: this.message, rowId: this.rowId };
      },
    }),
  'a throwing message getter': () => {
    const e = new Error('x');
    Object.defineProperty(e, 'message', {
      get() {
        throw new Error('getter');
      },
    });
    return e;
  },
  'throwing status, code and toJSON getters': () => {
    const e = new Error('x');
    for (const k of ['status', 'code', 'toJSON', 'expose'])
      Object.defineProperty(e, k, {
        get() {
          throw new Error(k);
        },
      });
    return e;
  },
  'a null-prototype object': () => Object.assign(Object.create(null), { reason: 'x', message: 'visible?' }),
  'a revoked Proxy': () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  },
  'a Proxy whose every trap throws': () =>
    new Proxy(new Error('x'), {
      get() {
        throw new Error('trap');
      },
      has() {
        throw new Error('trap');
      },
      getPrototypeOf() {
        throw new Error('trap');
      },
    }),
  'a Symbol code and a BigInt status': () => Object.assign(new Error('x'), { code: Symbol('c'), status: 400n }),
  'a BigInt code': () => Object.assign(new Error('x'), { code: 12n, status: 400 }),
  'a huge 4xx message': () => Object.assign(new Error('m'.repeat(1_000_000)), { status: 422 }),
  'a fractional status': () => Object.assign(new Error('x'), { status: 404.5 }),
  null: () => null,
  undefined: () => undefined,
  'a Symbol': () => Symbol('thrown'),
  'a string': () => 'a string with a secret in it',
  'an object whose toString throws': () => ({
    toString() {
      throw new Error('toString');
    },
    [Symbol.toPrimitive]() {
      throw new Error('prim');
    },
  }),
};

/** A stream function that throws `make()` at once, or after one output (`after`). */
function thrower(make, after) {
  return streamFn(
    async function* thrower() {
      if (after) yield { first: true };
      throw make();
    },
    { idleTimeout: 0 },
  );
}

/** One way of answering: a server whose GET / answers `fn`'s stream. */
const WRITERS = {
  sendNdjson: (fn) =>
    listen(async (req, res) => {
      try {
        await sendNdjson(res, fn.open());
      } catch (error) {
        sendError(res, error);
      }
    }),
  sendSse: (fn) => listen((req, res) => void sendSse(res, fn.open())),
  'pipeline(toReadable)': (fn) => listen((req, res) => void pipeline(toReadable(fn.open(), 'ndjson'), res).catch(() => {})),
  'Fastify reply.send(toReadable)': async (fn) => {
    const app = Fastify();
    app.get('/', (request, reply) => {
      reply.header('content-type', contentType('ndjson'));
      return reply.send(toReadable(fn.open(), 'ndjson'));
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { url: `http://127.0.0.1:${app.server.address().port}`, close: () => app.close() };
  },
};

/** The error object of a body: the JSON body before outputs, the last line (or `event: error`'s data) after. */
function errorOf(text, writer, after) {
  if (!after) return JSON.parse(text);
  if (writer === 'sendSse') {
    const frame = text.split('\n\n').find((f) => f.startsWith('event: error\n'));
    assert.ok(frame !== undefined, `an error event in ${JSON.stringify(text.slice(0, 300))}`);
    return JSON.parse(frame.slice('event: error\ndata: '.length));
  }
  const lines = text.trimEnd().split('\n');
  assert.deepEqual(JSON.parse(lines[0]), { first: true });
  return JSON.parse(lines.at(-1));
}

/** The fixed shape: `{ error: { message: string, code?: string } }`, nothing else. */
function assertShape(body, what) {
  assert.deepEqual(Object.keys(body), ['error'], what);
  const keys = Object.keys(body.error);
  assert.ok(
    keys.every((k) => k === 'message' || k === 'code'),
    `${what}: ${keys}`,
  );
  assert.equal(typeof body.error.message, 'string', what);
  assert.ok(
    body.error.message.length > 0 && body.error.message.length <= 1024,
    `${what}: message of ${body.error.message.length}`,
  );
  if ('code' in body.error) assert.equal(typeof body.error.code, 'string', what);
}

async function get(url, headers = {}) {
  const r = await deadline(fetch(url, { headers }), 10_000, `GET ${url}`);
  return { status: r.status, headers: r.headers, text: await r.text() };
}

for (const [writer, serve] of Object.entries(WRITERS)) {
  test(`${writer}: an error's toJSON() never reaches the client, before or after outputs; 4xx messages shown, 5xx hidden unless expose`, async () => {
    const unhandled = await unhandledDuring(async () => {
      for (const after of [false, true]) {
        const cases = [
          [axiosLike, 401, { message: 'Request failed with status code 401', code: 'ERR_BAD_REQUEST' }],
          [
            () => Object.assign(new Error('db at 10.0.0.5 refused'), { code: 'ECONNREFUSED' }),
            500,
            { message: 'Internal Server Error', code: 'ECONNREFUSED' },
          ],
          [() => Object.assign(new Error('upstream down'), { status: 502, expose: true }), 502, { message: 'upstream down' }],
          [() => Object.assign(new Error('internal detail'), { status: 403, expose: false }), 403, { message: 'Forbidden' }],
          [
            () => Object.assign(new Error('bad field'), { status: 422, code: 'E_FIELD' }),
            422,
            { message: 'bad field', code: 'E_FIELD' },
          ],
        ];
        for (const [make, status, expected] of cases) {
          const srv = await serve(thrower(make, after));
          try {
            const r = await get(srv.url);
            const what = `${after ? 'after' : 'before'} outputs, ${expected.message}`;
            assert.equal(r.status, after ? 200 : status, what);
            assert.ok(
              !r.text.includes('SECRET') && !r.text.includes('    at ') && !r.text.includes('config'),
              `${what}: ${r.text.slice(0, 300)}`,
            );
            const body = errorOf(r.text, writer, after);
            assertShape(body, what);
            assert.deepEqual(body, { error: expected }, what);
            if (!after) assert.match(r.headers.get('content-type'), /^application\/json/);
          } finally {
            await srv.close();
          }
        }
      }
    });
    assert.deepEqual(unhandled, []);
  });

  test(`${writer}: an error whose fields cannot be read is still answered (non-2xx before outputs, an error line after), nothing unhandled`, async () => {
    const unhandled = await unhandledDuring(async () => {
      for (const after of [false, true]) {
        for (const [name, make] of Object.entries(HOSTILE)) {
          const srv = await serve(thrower(make, after));
          const what = `${name}, ${after ? 'after' : 'before'} outputs`;
          try {
            const r = await get(srv.url);
            if (after) assert.equal(r.status, 200, what);
            else assert.ok(r.status >= 400 && r.status < 600 && Number.isInteger(r.status), `${what}: status ${r.status}`);
            const body = errorOf(r.text, writer, after);
            assertShape(body, what);
            assert.ok(!body.error.message.includes('secret') && !body.error.message.includes('visible'), what);
            if (name === 'a huge 4xx message') {
              assert.equal(r.status, after ? 200 : 422);
              assert.ok(body.error.message.startsWith('mmm'), what);
            }
          } finally {
            await srv.close();
          }
        }
      }
    });
    assert.deepEqual(unhandled, []);
  });
}

test('sendError: the fixed shape, never toJSON(); hostile errors answered 500 or their status; nothing thrown', async () => {
  const thrown = [];
  const srv = await listen((req, res) => {
    const name = decodeURIComponent(req.url.slice(1));
    try {
      sendError(res, name === 'axios' ? axiosLike() : HOSTILE[name]());
    } catch (error) {
      thrown.push(error);
      res.destroy();
    }
  });
  try {
    const axios = await get(`${srv.url}/axios`);
    assert.equal(axios.status, 401);
    assert.deepEqual(JSON.parse(axios.text), {
      error: { message: 'Request failed with status code 401', code: 'ERR_BAD_REQUEST' },
    });
    for (const name of Object.keys(HOSTILE)) {
      const r = await get(`${srv.url}/${encodeURIComponent(name)}`);
      assert.ok(r.status >= 400 && r.status < 600, `${name}: ${r.status}`);
      assertShape(JSON.parse(r.text), name);
    }
    assert.deepEqual(thrown, []);
  } finally {
    await srv.close();
  }
});

test("the library's own body errors keep their fields (line, limit) in the same shape, before and after outputs", async () => {
  const echo = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  const srv = await listen((req, res) => void sendNdjson(res, echo.open().feed(ndjsonEvents(req, { maxLineBytes: 16 }))));
  try {
    const post = async (body) => {
      const r = await fetch(srv.url, { method: 'POST', body });
      return { status: r.status, text: await r.text() };
    };
    const bad = await post('{"a":1}\nnope\n');
    assert.equal(bad.status, 200);
    const [first, line] = bad.text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(first, { a: 1 });
    assert.equal(line.error.code, 'ERR_VELO_BAD_NDJSON');
    assert.equal(line.error.line, 2);
    assert.match(line.error.message, /^Line 2 of the request body is not valid JSON/);
    const big = await post(`"${'x'.repeat(40)}"\n`);
    assert.equal(big.status, 413);
    assert.deepEqual(JSON.parse(big.text), {
      error: {
        message: 'Line 1 of the request body is larger than maxLineBytes (16 bytes)',
        code: 'ERR_VELO_NDJSON_LINE_TOO_LARGE',
        limit: 16,
        line: 1,
      },
    });
  } finally {
    await srv.close();
  }
});

test('the headers option (CORS, say) is on an error answered before any output, as on the outputs', async () => {
  const headers = { 'access-control-allow-origin': 'https://app.example', 'cache-control': 'no-store' };
  const ok = streamFn(async function* () {
    yield 1;
  });
  for (const [path, fn] of [
    ['/ok', ok],
    ['/err', thrower(() => Object.assign(new Error('nope'), { status: 400 }), false)],
  ]) {
    for (const send of [sendNdjson, sendSse]) {
      const srv = await listen((req, res) => void send(res, fn.open(), { headers }));
      try {
        const r = await get(`${srv.url}${path}`);
        assert.equal(r.headers.get('access-control-allow-origin'), 'https://app.example', `${send.name} ${path}`);
        assert.equal(r.headers.get('cache-control'), 'no-store', `${send.name} ${path}`);
        if (path === '/err') {
          assert.equal(r.status, 400);
          assert.match(r.headers.get('content-type'), /^application\/json/);
        }
      } finally {
        await srv.close();
      }
    }
  }
});

test('sendError keeps the keep-alive connection of a request with no body (GET, Content-Length: 0), answered at once', async () => {
  const srv = await listen((req, res) => {
    sendError(res, Object.assign(new Error('busy'), { status: 503, code: 'ERR_X' }));
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const sockets = new Set();
    for (const method of ['GET', 'POST', 'GET', 'DELETE']) {
      const r = await new Promise((resolve, reject) => {
        const q = request(srv.url, { method, agent, headers: method === 'POST' ? { 'content-length': 0 } : {} }, (res) => {
          sockets.add(res.socket);
          res.resume();
          res.on('end', () => resolve([res.statusCode, res.headers.connection]));
        });
        q.on('error', reject);
        q.end();
      });
      assert.deepEqual(r, [503, 'keep-alive'], method);
    }
    assert.equal(sockets.size, 1, 'one connection served every request');
  } finally {
    agent.destroy();
    await srv.close();
  }
});

/** A stream function whose handler yields `{ first: true }` (with `after`), then waits on its input for ever. */
function parked(after) {
  return streamFn(
    async function* parked(events) {
      if (after) yield { first: true };
      for await (const e of events) yield e;
    },
    { idleTimeout: 0 },
  );
}

/** How the server stops a stream it answers: the stream's cancel(), its feed's, or its open signal. */
const SERVER_CANCELS = {
  'stream.cancel()': (fn) => {
    const s = fn.open();
    return { outputs: s, cancel: () => s.cancel(new Error('shutting down')) };
  },
  'feed.cancel()': (fn) => {
    // A source that never sends: the feed's stream waits on it.
    const outputs = fn.open().feed(
      (async function* silent() {
        await new Promise(() => {});
      })(),
    );
    return { outputs, cancel: () => outputs.cancel() };
  },
  'an aborted open signal': (fn) => {
    const abort = new AbortController();
    return { outputs: fn.open({ signal: abort.signal }), cancel: () => abort.abort() };
  },
};

/** Deadlines of `AbortSignal.timeout()` that pass while a stream answers, by how they reach the writer. */
const DEADLINES = {
  // A call given the signal that rejects with its reason, a DOMException named TimeoutError (as `fetch` does).
  'fetch-like call': {
    handler: async () => {
      const signal = AbortSignal.timeout(1);
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
      throw signal.reason;
    },
  },
  // Node's own APIs reject with an AbortError (code ABORT_ERR) whose cause is the TimeoutError.
  'timers/promises setTimeout': {
    handler: () => sleep(60_000, undefined, { signal: AbortSignal.timeout(1) }),
    code: 'ABORT_ERR',
  },
  // The request's deadline on the stream: it is cancelled with the TimeoutError as its reason.
  'open({ signal })': { open: () => ({ signal: AbortSignal.timeout(20) }), code: 'ERR_VELO_STREAM_CLOSED' },
};

for (const [writer, serve] of Object.entries(WRITERS)) {
  test(`${writer}: a deadline of AbortSignal.timeout() that passed answers 504 (before outputs) or an error line`, async () => {
    for (const [how, make] of Object.entries(DEADLINES)) {
      for (const after of [false, true]) {
        const fn = streamFn(
          async function* timedOut(events) {
            if (after) yield { first: true };
            await make.handler?.();
            for await (const e of events) yield e;
          },
          { idleTimeout: 0 },
        );
        const srv = await serve({ open: () => fn.open(make.open?.()) });
        const what = `${how}, ${after ? 'after an output' : 'before any output'}`;
        try {
          const c = client(srv.url);
          await deadline(c.closed, 5000, `${what}: the answer`);
          await until(() => c.res?.complete || c.errors.length > 0, 5000, `${what}: the whole answer`);
          assert.equal(c.res.statusCode, after ? 200 : 504, what);
          const body = errorOf(c.text, writer, after);
          assert.deepEqual(body, { error: { message: 'Gateway Timeout', ...(make.code && { code: make.code }) } }, what);
          assert.equal(fn.stats().open, 0, what);
        } finally {
          await srv.close();
        }
      }
    }
  });

  test(`${writer}: a stream the server cancels mid-answer ends it with an error, not as a whole answer (before outputs: a 500)`, async () => {
    const unhandled = await unhandledDuring(async () => {
      for (const [how, make] of Object.entries(SERVER_CANCELS)) {
        for (const after of [false, true]) {
          const fn = parked(after);
          const cancels = [];
          // The writers of WRITERS call `open()` on what they are given.
          const srv = await serve({
            open() {
              const { outputs, cancel } = make(fn);
              cancels.push(cancel);
              return outputs;
            },
          });
          const what = `${how}, ${after ? 'after an output' : 'before any output'}`;
          try {
            const c = client(srv.url);
            await until(() => cancels.length === 1 && fn.stats().open === 1, 5000, `${what}: the stream open`);
            if (after) await until(() => c.text.includes('first'), 5000, `${what}: the first output`);
            // The handler is parked on its input; nothing but the test's cancel can end it.
            global.gc();
            cancels[0]();
            await deadline(c.closed, 5000, `${what}: the answer`);
            await until(() => c.res?.complete || c.errors.length > 0, 5000, `${what}: the whole answer`);
            assert.deepEqual(c.errors, [], what);
            assert.equal(c.res.statusCode, after ? 200 : 500, what);
            const body = errorOf(c.text, writer, after);
            assert.deepEqual(body, { error: { message: 'Internal Server Error', code: 'ERR_VELO_STREAM_CLOSED' } }, what);
            if (!after) assert.match(c.res.headers['content-type'], /^application\/json/, what);
            assert.equal(fn.stats().open, 0, what);
          } finally {
            await srv.close();
          }
        }
      }
    });
    assert.deepEqual(unhandled, []);
  });
}

test("sendError: Retry-After is digits only, whatever the error's retryAfter: rounded up, at most 2^31 - 1 seconds", async () => {
  const waits = {
    '1e300': 1e300,
    max: Number.MAX_VALUE,
    '1e15': 1e15,
    half: 500,
    zero: 0,
    'just past': 2 ** 31 * 1000 + 1,
    negative: -1,
    nan: NaN,
  };
  const srv = await listen((req, res) => {
    const [status, name] = decodeURIComponent(req.url.slice(1)).split('/');
    sendError(res, Object.assign(new Error('slow down'), { status: Number(status), retryAfter: waits[name] }));
  });
  try {
    const expected = {
      '1e300': '2147483647',
      max: '2147483647',
      '1e15': '2147483647',
      half: '1',
      zero: '0',
      'just past': '2147483647',
      negative: null,
      nan: null,
    };
    for (const status of [429, 503]) {
      for (const [name, header] of Object.entries(expected)) {
        const r = await get(`${srv.url}/${status}/${encodeURIComponent(name)}`);
        assert.equal(r.status, status);
        assert.equal(r.headers.get('retry-after'), header, `${status} ${name}`);
      }
    }
    // Only a 429 or a 503 says when to come back.
    assert.equal((await get(`${srv.url}/500/half`)).headers.get('retry-after'), null);
  } finally {
    await srv.close();
  }
});
