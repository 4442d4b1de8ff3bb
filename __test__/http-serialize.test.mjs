// Outputs a writer cannot serialize (issue 24 #6, #7): one rule for every writer of velo-stream/http. The
// outputs before it go out, then an error line (NDJSON) or `event: error` (SSE) with the code
// ERR_VELO_SERIALIZE, and the stream is stopped: JSON has no text for undefined, a function or a symbol, and
// JSON.stringify throws for a BigInt or a cycle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { pipeline } from 'node:stream/promises';
import Fastify from 'fastify';
import { streamFn } from 'velo-stream';
import { sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { deadline, listen, until } from './helpers/server.mjs';

const cycle = () => {
  const o = { n: 'cycle' };
  o.self = o;
  return o;
};
const BAD = {
  undefined: () => undefined,
  function: () => () => 1,
  symbol: () => Symbol('s'),
  bigint: () => 10n,
  cycle,
};

/** A stream yielding {n:1}, {n:2}, the bad value, {n:3}, then waiting until it is stopped (recorded in `seen`). */
function source(bad) {
  const seen = { stopped: false };
  const fn = streamFn(async function* (events, ctx) {
    yield { n: 1 };
    yield { n: 2 };
    yield bad();
    yield { n: 3 };
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
    seen.stopped = true;
  });
  return { stream: fn.open(), seen };
}

function fetchText(url) {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, text }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

const WRITERS = {
  sendNdjson: { format: 'ndjson', serve: (res, s) => sendNdjson(res, s) },
  sendSse: { format: 'sse', serve: (res, s) => sendSse(res, s) },
  'toReadable ndjson': { format: 'ndjson', serve: (res, s) => pipeline(toReadable(s, 'ndjson'), res) },
  'toReadable sse': { format: 'sse', serve: (res, s) => pipeline(toReadable(s, 'sse'), res) },
};

function check(format, text, what) {
  if (format === 'ndjson') {
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(lines.slice(0, 2), [{ n: 1 }, { n: 2 }], what);
    assert.equal(lines.length, 3, `${what}: nothing after the error line`);
    assert.equal(lines[2].error.code, 'ERR_VELO_SERIALIZE', what);
    // (A 5xx: its message is not the client's to read; its code says what it was.)
    assert.equal(lines[2].error.message, 'Internal Server Error', what);
  } else {
    assert.match(
      text,
      /^data: \{"n":1\}\n\ndata: \{"n":2\}\n\nevent: error\ndata: \{"error":\{"message":"Internal Server Error","code":"ERR_VELO_SERIALIZE"\}\}\n\n$/,
      what,
    );
  }
}

test('every writer: the outputs before an unserializable one, then an error with code ERR_VELO_SERIALIZE, and the stream stops', async () => {
  for (const [writer, { format, serve }] of Object.entries(WRITERS)) {
    for (const [kind, bad] of Object.entries(BAD)) {
      const what = `${writer}, ${kind}`;
      let seen;
      const srv = await listen((req, res) => {
        const s = source(bad);
        seen = s.seen;
        serve(res, s.stream).catch(() => {});
      });
      try {
        const { status, text } = await fetchText(srv.url);
        assert.equal(status, 200, what);
        check(format, text, what);
        await until(() => seen.stopped, 5000, `${what}: the stream stopped`);
      } finally {
        await srv.close();
      }
    }
  }
});

test("Fastify's reply.send(toReadable(...)): the outputs before an unserializable one, then the error line", async () => {
  for (const [kind, bad] of Object.entries(BAD)) {
    const app = Fastify();
    app.get('/', (request, reply) => {
      reply.header('content-type', 'application/x-ndjson');
      return reply.send(toReadable(source(bad).stream, 'ndjson'));
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const { text } = await fetchText(url);
      check('ndjson', text, `fastify, ${kind}`);
    } finally {
      await app.close();
    }
  }
});

test('a custom serialize that returns something other than a string is refused the same way', async () => {
  const srv = await listen((req, res) => {
    void sendNdjson(res, source(() => ({ n: 'x' })).stream, { serialize: (o) => (o.n === 'x' ? 42 : JSON.stringify(o)) });
  });
  try {
    check('ndjson', (await fetchText(srv.url)).text, 'custom serialize');
  } finally {
    await srv.close();
  }
});

test('NDJSON: a custom serialize whose text has a line break is refused with ERR_VELO_SERIALIZE, not split into lines', async () => {
  const texts = { '/lf': 'a\nb', '/cr': 'a\rb', '/crlf': '{\r\n}' };
  for (const [path, text] of Object.entries(texts)) {
    for (const [writer, serve] of [
      ['sendNdjson', (res, s, opts) => sendNdjson(res, s, opts)],
      ['toReadable', (res, s, opts) => pipeline(toReadable(s, 'ndjson', opts), res)],
    ]) {
      const what = `${writer}, ${JSON.stringify(text)}`;
      let seen;
      const srv = await listen((req, res) => {
        const s = source(() => ({ n: 'x' }));
        seen = s.seen;
        serve(res, s.stream, { serialize: (o) => (o.n === 'x' ? text : JSON.stringify(o)) }).catch(() => {});
      });
      try {
        check('ndjson', (await deadline(fetchText(`${srv.url}${path}`), 5000, `${what}: the answer`)).text, what);
        await until(() => seen.stopped, 5000, `${what}: the stream stopped`);
      } finally {
        await srv.close();
      }
    }
  }
  // Before any output: the error's answer.
  const one = streamFn(async function* () {
    yield 'x';
  });
  const srv = await listen((req, res) => void sendNdjson(res, one.open(), { serialize: () => '{\n}' }));
  try {
    const { status, text } = await fetchText(srv.url);
    assert.equal(status, 500);
    assert.equal(JSON.parse(text).error.code, 'ERR_VELO_SERIALIZE');
  } finally {
    await srv.close();
  }
});
