// Contract for every cell (cells.mjs) behind each writer of velo-stream/http (a real server on 127.0.0.1),
// through duplex() in a pipeline, and under sessions(): order and exactly once, and the outputs before a
// failure first, then the failure (an error line or event, the pipeline's error, a { key, error } item).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Fastify from 'fastify';
import { contentType, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { listen } from '../helpers/server.mjs';
import { EVENTS, cells } from './cells.mjs';

const FAIL = { fail: true };
const WRITERS = {
  sendNdjson: { format: 'ndjson', serve: (res, outputs) => sendNdjson(res, outputs) },
  sendSse: { format: 'sse', serve: (res, outputs) => sendSse(res, outputs) },
  'toReadable ndjson': { format: 'ndjson', serve: (res, outputs) => pipeline(toReadable(outputs, 'ndjson'), res) },
  'toReadable sse': { format: 'sse', serve: (res, outputs) => pipeline(toReadable(outputs, 'sse'), res) },
  // Node's own pipe(), as Express code writes it.
  'toReadable ndjson .pipe(res)': {
    format: 'ndjson',
    serve: async (res, outputs) => void toReadable(outputs, 'ndjson').pipe(res),
  },
  'toReadable sse .pipe(res)': { format: 'sse', serve: async (res, outputs) => void toReadable(outputs, 'sse').pipe(res) },
};

function fetchText(url) {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => (text += d));
      res.on('end', () => resolve(text));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** The items of a response: outputs, and `{ error }` for an error line or event. */
function items(format, text) {
  if (format === 'ndjson')
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  return (
    text
      .split('\n\n')
      .filter(Boolean)
      // (An `event: error` frame's data is the `{ error }` object itself.)
      .map((frame) => JSON.parse(frame.slice(frame.indexOf('data: ') + 6)))
  );
}

/** Fastify's ways to answer with a stream: its reply sending a Readable, and a writer on its raw response. */
const FASTIFY_WRITERS = {
  'Fastify reply.send(toReadable ndjson)': {
    format: 'ndjson',
    serve: (reply, outputs) => reply.header('content-type', contentType('ndjson')).send(toReadable(outputs, 'ndjson')),
  },
  'Fastify reply.send(toReadable sse)': {
    format: 'sse',
    serve: (reply, outputs) => reply.header('content-type', contentType('sse')).send(toReadable(outputs, 'sse')),
  },
  'Fastify sendNdjson(reply.raw)': {
    format: 'ndjson',
    serve: (reply, outputs) => {
      reply.hijack();
      sendNdjson(reply.raw, outputs).catch(() => {});
    },
  },
};

for (const cell of cells()) {
  test(`${cell.name}: behind Fastify's reply, the outputs in order, and those before a failure, then its error`, async () => {
    for (const [writer, { format, serve }] of Object.entries(FASTIFY_WRITERS)) {
      const fn = cell.make({ buffer: 4 });
      const app = Fastify();
      app.get('/*', (request, reply) => {
        const events = request.url === '/fail' ? [...EVENTS.slice(0, 3), FAIL, ...EVENTS.slice(3)] : EVENTS;
        return serve(reply, fn.open().feed(events));
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const url = `http://127.0.0.1:${app.server.address().port}`;
      try {
        assert.deepEqual(items(format, await fetchText(`${url}/`)), EVENTS, writer);
        const failed = items(format, await fetchText(`${url}/fail`));
        // (An error with no status is a 500: its code goes out, its message does not; docs/http.md.)
        assert.deepEqual(failed.slice(0, 3), EVENTS.slice(0, 3), writer);
        assert.deepEqual(failed.slice(3), [{ error: { message: 'Internal Server Error', code: 'E_CONTRACT' } }], writer);
        assert.equal(fn.stats().open, 0, writer);
      } finally {
        await app.close();
      }
    }
  });

  test(`${cell.name}: behind every HTTP writer, the outputs in order, and those before a failure, then its error`, async () => {
    for (const [writer, { format, serve }] of Object.entries(WRITERS)) {
      const fn = cell.make({ buffer: 4 });
      const srv = await listen((req, res) => {
        const events = req.url === '/fail' ? [...EVENTS.slice(0, 3), FAIL, ...EVENTS.slice(3)] : EVENTS;
        serve(res, fn.open().feed(events)).catch(() => {});
      });
      try {
        assert.deepEqual(items(format, await fetchText(srv.url)), EVENTS, writer);
        const failed = items(format, await fetchText(`${srv.url}/fail`));
        assert.deepEqual(failed.slice(0, 3), EVENTS.slice(0, 3), writer);
        assert.deepEqual(failed.slice(3), [{ error: { message: 'Internal Server Error', code: 'E_CONTRACT' } }], writer);
      } finally {
        await srv.close();
      }
    }
  });

  test(`${cell.name}: through duplex() in a pipeline, in order; a failure rejects the pipeline after the outputs before it`, async () => {
    const collect = (out) =>
      new Writable({
        objectMode: true,
        write(chunk, _, callback) {
          out.push(chunk);
          callback();
        },
      });
    const out = [];
    await pipeline(Readable.from(EVENTS), cell.make({ buffer: 4 }).open().duplex(), collect(out));
    assert.deepEqual(out, EVENTS);
    const before = [];
    await assert.rejects(
      pipeline(Readable.from([...EVENTS.slice(0, 3), FAIL]), cell.make({ buffer: 4 }).open().duplex(), collect(before)),
      (e) => e.code === 'E_CONTRACT',
    );
    assert.deepEqual(before, EVENTS.slice(0, 3));
  });

  test(`${cell.name}: through duplex() in a pipeline whose source stalls: SourceStalledError after the outputs before it, the source destroyed`, async () => {
    const out = [];
    const sink = new Writable({
      objectMode: true,
      write(chunk, _, callback) {
        out.push(chunk);
        callback();
      },
    });
    // Three events, then neither an end nor an error.
    const source = new Readable({ objectMode: true, read() {} });
    for (const e of EVENTS.slice(0, 3)) source.push(e);
    await assert.rejects(
      pipeline(source, cell.make({ buffer: 4, idleTimeout: 100 }).open().duplex(), sink),
      (e) => e.code === 'ERR_VELO_SOURCE_STALLED',
    );
    assert.deepEqual(out, EVENTS.slice(0, 3));
    assert.equal(source.destroyed, true);
  });

  test(`${cell.name}: through duplex() in a pipeline into a slow sink, in order; a failure rejects the pipeline with its own error after the outputs before it`, async () => {
    // The sink finishes each write on a later turn: outputs wait in its buffer (highWaterMark 1 and 16)
    // while the failure comes, and the events sent after the failing one are refused meanwhile.
    const slow = (out, highWaterMark) =>
      new Writable({
        objectMode: true,
        highWaterMark,
        write(chunk, _, callback) {
          out.push(chunk);
          setImmediate(callback);
        },
      });
    for (const highWaterMark of [1, 16]) {
      const out = [];
      await pipeline(Readable.from(EVENTS), cell.make({ buffer: 4 }).open().duplex(), slow(out, highWaterMark));
      assert.deepEqual(out, EVENTS, `highWaterMark ${highWaterMark}`);
      const before = [];
      await assert.rejects(
        pipeline(
          Readable.from([...EVENTS.slice(0, 3), FAIL, ...EVENTS.slice(3, 10)]),
          cell.make({ buffer: 4 }).open().duplex(),
          slow(before, highWaterMark),
        ),
        (e) => e.code === 'E_CONTRACT',
        `highWaterMark ${highWaterMark}`,
      );
      assert.deepEqual(before, EVENTS.slice(0, 3), `highWaterMark ${highWaterMark}`);
    }
  });

  test(`${cell.name}: under sessions(), each key's outputs in order; a failing session gives { key, error } after its outputs`, async () => {
    const sessions = cell.make({ buffer: 4 }).sessions({ idleTimeout: 0 });
    const reading = (async () => {
      const got = new Map();
      for await (const item of sessions) {
        if (!got.has(item.key)) got.set(item.key, []);
        got.get(item.key).push('error' in item ? { code: item.error.code } : item.value);
      }
      return got;
    })();
    for (const e of EVENTS.slice(0, 10)) {
      await sessions.send('a', e);
      await sessions.send('b', { ...e, b: true });
    }
    await sessions.send('c', EVENTS[0]);
    await sessions.send('c', FAIL).catch(() => {});
    await sessions.close();
    const got = await reading;
    assert.deepEqual(got.get('a'), EVENTS.slice(0, 10));
    assert.deepEqual(
      got.get('b'),
      EVENTS.slice(0, 10).map((e) => ({ ...e, b: true })),
    );
    assert.deepEqual(got.get('c'), [EVENTS[0], { code: 'E_CONTRACT' }]);
  });

  test(`${cell.name}: under sessions(), nothing accepted is dropped: events a failed session never took open the key's next session, in order`, async () => {
    // Sent in one burst, all within the buffer: every send resolves before the handler runs. The handler
    // (the first stage, which fails at FAIL too) takes the events up to FAIL; the rest open the next session.
    const sessions = cell.make({ buffer: 16 }).sessions({ idleTimeout: 0 });
    const reading = (async () => {
      const got = [];
      for await (const item of sessions) got.push('error' in item ? { code: item.error.code } : item.value);
      return got;
    })();
    const sent = await Promise.allSettled([...EVENTS.slice(0, 3), FAIL, ...EVENTS.slice(3, 9)].map((e) => sessions.send('k', e)));
    assert.deepEqual(new Set(sent.map((r) => r.status)), new Set(['fulfilled']));
    // (close() ends the next session too, once it has opened with them.)
    await sessions.close();
    assert.deepEqual(await reading, [...EVENTS.slice(0, 3), { code: 'E_CONTRACT' }, ...EVENTS.slice(3, 9)]);
  });
}
