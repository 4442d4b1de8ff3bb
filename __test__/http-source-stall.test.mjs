// A model (an async source given to feed()) that stalls mid-answer is an error on the wire, not a success: the
// client gets the outputs so far, then an error event with ERR_VELO_SOURCE_STALLED, and no `done`; the source is
// closed (its return(), and the signal of feed((signal) => ...) aborted). One test per pattern of the HTTP page:
// node:http with sendNdjson and sendSse, Express, Fastify's reply.send(toReadable). A source that ends, and an
// explicit end(), stay clean ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import express from 'express';
import Fastify from 'fastify';
import { streamFn } from 'velo-stream';
import { contentType, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { client, deadline, listen, until } from './helpers/server.mjs';

const IDLE = 150;

/** The post-processing stage of a gateway: each token out, then `done` once the model's answer ended. */
const postProcess = streamFn(
  async function* postProcess(tokens) {
    let n = 0;
    for await (const token of tokens) {
      n++;
      yield { token };
    }
    yield { done: true, n };
  },
  { idleTimeout: IDLE },
);

/**
 * A model's answer: `tokens`, then, unless `ends`, silence for ever (an upstream that stopped answering). Records
 * the calls of its iterator's `return()`, and the abort of the signal it was given.
 */
function model(tokens, { ends = false, signal } = {}) {
  const state = { returned: 0, aborted: undefined, source: undefined };
  signal?.addEventListener('abort', () => (state.aborted = signal.reason), { once: true });
  let i = 0;
  state.source = {
    [Symbol.asyncIterator]() {
      return this;
    },
    next() {
      if (i < tokens.length) return Promise.resolve({ value: tokens[i++], done: false });
      return ends ? Promise.resolve({ value: undefined, done: true }) : new Promise(() => {});
    },
    return() {
      state.returned++;
      return Promise.resolve({ value: undefined, done: true });
    },
  };
  return state;
}

/** GETs `url` and resolves with the status and the whole body once the server closed the answer. */
async function get(url) {
  const c = client(url, { headers: { connection: 'close' } });
  const res = await deadline(c.response, 5000, 'the response');
  await deadline(c.closed, 5000, 'the end of the answer');
  return { status: res.statusCode, type: res.headers['content-type'], text: c.text };
}

const ndjsonLines = (text) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));

/** SSE events as `{ event, data }` (data parsed). */
const sseEvents = (text) =>
  text
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
      const data = lines
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      return { event, data: JSON.parse(data) };
    });

const TOKENS = ['The', ' sky', ' is'];
const STALLED = { error: { message: 'Gateway Timeout', code: 'ERR_VELO_SOURCE_STALLED' } };

test('node:http sendNdjson: a model that stalls after its third token ends the answer with an error line', async () => {
  const models = [];
  const srv = await listen((req, res) => {
    const m = model(TOKENS, { ends: req.url === '/ends' });
    models.push(m);
    void sendNdjson(res, postProcess.open().feed(m.source));
  });
  try {
    const stalled = await get(`${srv.url}/stalls`);
    assert.equal(stalled.status, 200);
    assert.deepEqual(ndjsonLines(stalled.text), [...TOKENS.map((token) => ({ token })), STALLED]);
    await until(() => models[0].returned === 1, 2000, "the model's return()");
    // A model whose answer ends is a clean end: every token, then `done`, and no error.
    const ended = await get(`${srv.url}/ends`);
    assert.deepEqual(ndjsonLines(ended.text), [...TOKENS.map((token) => ({ token })), { done: true, n: 3 }]);
    assert.equal(postProcess.stats().open, 0);
  } finally {
    await srv.close();
  }
});

test('node:http sendSse: a model that stalls gets an error event after the tokens, and its signal aborts', async () => {
  const models = [];
  const srv = await listen((req, res) => {
    let m;
    const outputs = postProcess.open().feed((signal) => {
      m = model(TOKENS, { signal });
      return m.source;
    });
    models.push(m);
    void sendSse(res, outputs);
  });
  try {
    const r = await get(`${srv.url}/`);
    assert.equal(r.status, 200);
    assert.deepEqual(sseEvents(r.text), [
      ...TOKENS.map((token) => ({ event: 'message', data: { token } })),
      { event: 'error', data: STALLED },
    ]);
    await until(() => models[0].returned === 1, 2000, "the model's return()");
    assert.equal(models[0].aborted?.code, 'ERR_VELO_SOURCE_STALLED', "the model's signal aborted with the stall");
  } finally {
    await srv.close();
  }
});

test('node:http: a model that stalls before its first token is answered 504 with the error', async () => {
  const srv = await listen((req, res) => void sendNdjson(res, postProcess.open().feed(model([]).source)));
  try {
    const r = await get(`${srv.url}/`);
    assert.equal(r.status, 504);
    assert.deepEqual(JSON.parse(r.text), STALLED);
  } finally {
    await srv.close();
  }
});

test('Express: a model that stalls after its third token ends the NDJSON answer with an error line', async () => {
  const models = [];
  const app = express();
  app.get('/complete', async (req, res) => {
    const m = model(TOKENS);
    models.push(m);
    await sendNdjson(res, postProcess.open().feed(m.source));
  });
  const srv = await listen(app);
  try {
    const r = await get(`${srv.url}/complete`);
    assert.equal(r.status, 200);
    assert.deepEqual(ndjsonLines(r.text), [...TOKENS.map((token) => ({ token })), STALLED]);
    await until(() => models[0].returned === 1, 2000, "the model's return()");
  } finally {
    await srv.close();
  }
});

test('Fastify reply.send(toReadable): a model that stalls gets an error event after the tokens, its signal aborted', async () => {
  const models = [];
  const app = Fastify();
  app.get('/complete', (request, reply) => {
    const outputs = postProcess.open().feed((signal) => {
      const m = model(TOKENS, { signal, ends: request.query.ends === '1' });
      models.push(m);
      return m.source;
    });
    reply.header('content-type', contentType('sse'));
    return reply.send(toReadable(outputs, 'sse'));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${app.server.address().port}`;
  try {
    const r = await get(`${url}/complete`);
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/event-stream/);
    assert.deepEqual(sseEvents(r.text), [
      ...TOKENS.map((token) => ({ event: 'message', data: { token } })),
      { event: 'error', data: STALLED },
    ]);
    await until(() => models[0].returned === 1, 2000, "the model's return()");
    assert.equal(models[0].aborted?.code, 'ERR_VELO_SOURCE_STALLED');
    // An answer that ends: `done`, no error, and the signal is not aborted after the end.
    const ended = await get(`${url}/complete?ends=1`);
    assert.deepEqual(sseEvents(ended.text).at(-1), { event: 'message', data: { done: true, n: 3 } });
    assert.equal(models[1].aborted, undefined);
  } finally {
    await app.close();
  }
});

test('an explicit end() while the source waits stays a clean end, and idle ends of live streams are unchanged', async () => {
  const m = model(TOKENS);
  const s = postProcess.open();
  const out = [];
  const reading = (async () => {
    for await (const v of s.feed(m.source)) {
      out.push(v);
      if (out.length === 3) s.end();
    }
  })();
  await reading;
  assert.deepEqual(out, [...TOKENS.map((token) => ({ token })), { done: true, n: 3 }]);
  // A live stream (sends, no source) idles out as by end(): its final yield, no error.
  const live = postProcess.open();
  await live.send('a');
  assert.deepEqual(await live.recv(), { token: 'a' });
  assert.deepEqual(await live.recv(), { done: true, n: 1 });
});
