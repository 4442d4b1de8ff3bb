// Refusals of real limiters through real servers: node:http with sendError and the writers, Express 5 and Fastify
// with their own error handlers (which read the error's `status` and `headers`). A rate refusal answers 429 with
// Retry-After (seconds, rounded up), a cost over the burst 413, a full line 503; after an output, the error line or
// event carries the code, the status and the wait, as the headers are gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import express from 'express';
import Fastify from 'fastify';
import { limiter, streamFn } from 'velo-stream';
import { contentType, ndjsonEvents, sendError, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { listen, until } from './helpers/server.mjs';

/** An LLM gateway's stream function: a tenant's tokens per minute, refused when spent (10 a minute, 10 at once). */
function gateway() {
  const tokens = limiter({
    name: 'tokens',
    rate: { limit: 10, period: 60_000 },
    key: ({ key }) => key,
    cost: ({ cost = 1 }) => cost,
    mode: 'reject',
  });
  const chat = streamFn(
    async function* chat(events) {
      for await (const e of events) yield { echo: e };
    },
    { limiter: tokens, idleTimeout: 0 },
  );
  return { tokens, chat };
}

/** The request's tenant and estimated cost, as a gateway reads them. */
const tenantOf = (url) => new URL(url, 'http://x').searchParams;

async function call(base, path, body = '{"q":1}\n') {
  const r = await fetch(base + path, { method: 'POST', body, headers: { 'content-type': 'application/x-ndjson' } });
  return {
    status: r.status,
    retryAfter: r.headers.get('retry-after'),
    text: await r.text(),
    type: r.headers.get('content-type'),
  };
}

test('node:http: sendError answers a tenant over its rate 429 with Retry-After, a cost over the burst 413', async () => {
  const { tokens, chat } = gateway();
  const srv = await listen(async (req, res) => {
    const q = tenantOf(req.url);
    try {
      const stream = chat.open({ key: q.get('tenant'), cost: Number(q.get('tokens')) });
      await sendNdjson(res, stream.feed(ndjsonEvents(req)));
    } catch (error) {
      sendError(res, error);
    }
  });
  try {
    const first = await call(srv.url, '/chat?tenant=a&tokens=10');
    assert.equal(first.status, 200);
    assert.equal(first.text, '{"echo":{"q":1}}\n');
    // Tenant a spent its minute: 429, and the wait (about 60 s) as whole seconds, rounded up.
    const refused = await call(srv.url, '/chat?tenant=a&tokens=10');
    assert.equal(refused.status, 429);
    assert.equal(refused.retryAfter, '60');
    const body = JSON.parse(refused.text);
    assert.equal(body.error.code, 'ERR_VELO_RATE_LIMITED');
    assert.equal(body.error.status, 429);
    assert.equal(body.error.retryAfter, 60);
    // Another tenant has its own minute.
    assert.equal((await call(srv.url, '/chat?tenant=b&tokens=10')).status, 200);
    // More tokens than the burst could never be granted: 413, no Retry-After.
    const tooLarge = await call(srv.url, '/chat?tenant=c&tokens=11');
    assert.equal(tooLarge.status, 413);
    assert.equal(tooLarge.retryAfter, null);
    assert.deepEqual(JSON.parse(tooLarge.text).error, {
      message: 'Limiter "tokens": the cost 11 is above the rate\'s burst (10), so it could never be granted',
      code: 'ERR_VELO_LIMIT_COST',
      status: 413,
    });
    assert.equal(tokens.stats().rejected, 2);
  } finally {
    await srv.close();
  }
});

test('node:http: a full line answers 503 before the first output (sendNdjson), and a closed limiter 503 too', async () => {
  // A throttling limiter: one stream at a time, one more may wait; the third is refused inside its stream.
  const line = limiter({ name: 'line', concurrency: 1, maxWaiting: 1 });
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const slow = streamFn(
    async function* slow(events) {
      for await (const e of events) {
        await gate;
        yield e;
      }
    },
    { limiter: line, idleTimeout: 0 },
  );
  const srv = await listen(async (req, res) => {
    try {
      await sendNdjson(res, slow.open().feed(ndjsonEvents(req)));
    } catch (error) {
      sendError(res, error);
    }
  });
  try {
    const held = call(srv.url, '/');
    await until(() => line.stats().inUse === 1, 5000, 'the first stream admitted');
    const waiting = call(srv.url, '/');
    await until(() => line.stats().waiting === 1, 5000, 'the second stream waiting');
    const full = await call(srv.url, '/');
    assert.equal(full.status, 503);
    assert.equal(full.retryAfter, null);
    assert.deepEqual(JSON.parse(full.text).error, {
      message: 'Service Unavailable',
      code: 'ERR_VELO_LIMIT_QUEUE_FULL',
      status: 503,
    });
    release();
    assert.equal((await held).status, 200);
    assert.equal((await waiting).status, 200);
    await line.close();
    const closed = await call(srv.url, '/');
    assert.equal(closed.status, 503);
    assert.equal(JSON.parse(closed.text).error.code, 'ERR_VELO_LIMITER_CLOSED');
  } finally {
    release();
    await srv.close();
  }
});

for (const format of ['ndjson', 'sse']) {
  test(`node:http (${format}): a refusal after an output ends the 200 answer with an error carrying its code, status and wait`, async () => {
    // Each event costs one call of a tool the tenant may use once a minute.
    const tool = limiter({ name: 'tool', rate: { limit: 1, period: 60_000 }, mode: 'reject' });
    const agent = streamFn(
      async function* agent(events) {
        for await (const e of events) {
          await tool.acquire(e);
          yield { called: e };
        }
      },
      { idleTimeout: 0 },
    );
    const srv = await listen(async (req, res) => {
      const outputs = agent.open().feed(ndjsonEvents(req));
      await (format === 'sse' ? sendSse(res, outputs) : sendNdjson(res, outputs));
    });
    try {
      const r = await call(srv.url, '/', '1\n2\n');
      assert.equal(r.status, 200);
      const errorText = format === 'sse' ? r.text.split('\n\n')[1] : r.text.split('\n')[1];
      assert.ok(r.text.startsWith(format === 'sse' ? 'data: {"called":1}\n\n' : '{"called":1}\n'), r.text);
      const json = format === 'sse' ? errorText.replace(/^event: error\ndata: /, '') : errorText;
      const { error } = JSON.parse(json);
      assert.equal(error.code, 'ERR_VELO_RATE_LIMITED');
      assert.equal(error.status, 429);
      assert.equal(error.retryAfter, 60);
    } finally {
      await srv.close();
    }
  });
}

test('Express 5: its own error handler answers a rate refusal 429 with Retry-After, and a cost over the burst 413', async () => {
  const { chat } = gateway();
  const app = express();
  app.set('env', 'test');
  app.post('/chat', async (req, res) => {
    const q = tenantOf(req.url);
    // No try/catch: Express answers the rejection with the error's status and headers.
    await sendNdjson(res, chat.open({ key: q.get('tenant'), cost: Number(q.get('tokens')) }).feed(ndjsonEvents(req)));
  });
  const srv = await listen(app);
  try {
    assert.equal((await call(srv.url, '/chat?tenant=a&tokens=6')).status, 200);
    const refused = await call(srv.url, '/chat?tenant=a&tokens=6');
    assert.equal(refused.status, 429);
    // 2 tokens short at 10 a minute: 12 s.
    assert.equal(refused.retryAfter, '12');
    assert.equal((await call(srv.url, '/chat?tenant=a&tokens=11')).status, 413);
  } finally {
    await srv.close();
  }
});

test('Fastify: its default error handler answers 429 with Retry-After and 413; toReadable answers a full line 503', async () => {
  const { chat } = gateway();
  const line = limiter({ name: 'fastify-line', concurrency: 1, maxWaiting: 1 });
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const slow = streamFn(
    async function* slow(events) {
      for await (const e of events) {
        await gate;
        yield e;
      }
    },
    { limiter: line, idleTimeout: 0 },
  );
  const app = Fastify();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));
  app.post('/chat', (request, reply) => {
    const q = tenantOf(request.url);
    const outputs = chat.open({ key: q.get('tenant'), cost: Number(q.get('tokens')) }).feed(ndjsonEvents(request.raw));
    reply.header('content-type', contentType('ndjson'));
    return reply.send(toReadable(outputs, 'ndjson'));
  });
  app.post('/slow', (request, reply) => {
    reply.header('content-type', contentType('ndjson'));
    return reply.send(toReadable(slow.open().feed(ndjsonEvents(request.raw)), 'ndjson'));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${app.server.address().port}`;
  try {
    assert.equal((await call(base, '/chat?tenant=a&tokens=10')).status, 200);
    const refused = await call(base, '/chat?tenant=a&tokens=5');
    assert.equal(refused.status, 429);
    assert.equal(refused.retryAfter, '30');
    assert.equal(JSON.parse(refused.text).code, 'ERR_VELO_RATE_LIMITED');
    const tooLarge = await call(base, '/chat?tenant=b&tokens=50');
    assert.equal(tooLarge.status, 413);
    assert.equal(tooLarge.retryAfter, null);
    const held = call(base, '/slow');
    await until(() => line.stats().inUse === 1, 5000, 'the first stream admitted');
    const waiting = call(base, '/slow');
    await until(() => line.stats().waiting === 1, 5000, 'the second stream waiting');
    const full = await call(base, '/slow');
    assert.equal(full.status, 503);
    assert.equal(JSON.parse(full.text).error.code, 'ERR_VELO_LIMIT_QUEUE_FULL');
    release();
    assert.equal((await held).status, 200);
    assert.equal((await waiting).status, 200);
  } finally {
    release();
    await app.close();
  }
});
