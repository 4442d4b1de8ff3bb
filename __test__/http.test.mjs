// velo-stream/http against a real server and client on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { streamFn } from 'velo-stream';
import { RequestBodyError, ndjsonEvents, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { client, deadline, listen, until } from './helpers/server.mjs';
import { request } from 'node:http';
import { createGunzip } from 'node:zlib';
import compression from 'compression';

const double = streamFn(async function* double(events) {
  for await (const e of events) yield { n: e.n * 2 };
});

test('NDJSON: request body lines in, one JSON line per output out, response ended', async () => {
  const srv = await listen((req, res) => void sendNdjson(res, double.open().feed(ndjsonEvents(req))));
  try {
    const body = [1, 2, 3].map((n) => JSON.stringify({ n })).join('\n') + '\n\n';
    const r = await fetch(`${srv.url}/`, { method: 'POST', body });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /application\/x-ndjson/);
    assert.equal(await r.text(), '{"n":2}\n{"n":4}\n{"n":6}\n');
  } finally {
    await srv.close();
  }
});

test('NDJSON: the stream counts every event in and every output out, those the writer took in runs included', async () => {
  const streams = [];
  const srv = await listen((req, res) => {
    const stream = double.open();
    streams.push(stream);
    return void sendNdjson(res, stream.feed(ndjsonEvents(req)));
  });
  try {
    const body = Array.from({ length: 10 }, (_, i) => `{"n":${i}}\n`).join('');
    const r = await fetch(srv.url, { method: 'POST', body });
    assert.equal((await r.text()).split('\n').length, 11);
    const m = streams[0].metrics;
    assert.equal(streams[0].state, 'done');
    assert.equal(m.eventsIn, 10);
    assert.equal(m.eventsOut, 10);
  } finally {
    await srv.close();
  }
});

test('NDJSON: a malformed line before any output is a 400 with a clear error object', async () => {
  const srv = await listen((req, res) => void sendNdjson(res, double.open().feed(ndjsonEvents(req))));
  try {
    const r = await fetch(srv.url, { method: 'POST', body: '{"n":1\n' });
    assert.equal(r.status, 400);
    const body = await r.json();
    assert.equal(body.error.code, 'ERR_VELO_BAD_NDJSON');
    assert.equal(body.error.line, 1);
    assert.match(body.error.message, /Line 1 of the request body is not valid JSON/);
  } finally {
    await srv.close();
  }
  const parse = async (text) => {
    const out = [];
    for await (const e of ndjsonEvents(Readable.from([text]))) out.push(e);
    return out;
  };
  await assert.rejects(parse('{"a":1}\n\nnope\n'), (e) => e instanceof RequestBodyError && e.line === 3 && e.status === 400);
});

test('a handler error after some outputs ends the response with an error line (NDJSON) or event (SSE); expose: true shows its message', async () => {
  const failing = streamFn(async function* () {
    yield { ok: 1 };
    throw Object.assign(new Error('model crashed'), { code: 'E_MODEL', expose: true });
  });
  const srv = await listen((req, res) => {
    const s = failing.open();
    void (req.url === '/sse' ? sendSse(res, s) : sendNdjson(res, s));
  });
  try {
    assert.equal(
      await (await fetch(`${srv.url}/ndjson`)).text(),
      '{"ok":1}\n{"error":{"message":"model crashed","code":"E_MODEL"}}\n',
    );
    const sse = await fetch(`${srv.url}/sse`);
    assert.match(sse.headers.get('content-type'), /text\/event-stream/);
    assert.equal(
      await sse.text(),
      'data: {"ok":1}\n\nevent: error\ndata: {"error":{"message":"model crashed","code":"E_MODEL"}}\n\n',
    );
  } finally {
    await srv.close();
  }
});

test('outputs ready together go out in one write; one the serializer refuses comes after those before it; a feed being read is read on', async () => {
  const burst = streamFn(async function* (events) {
    for await (const e of events) {
      for (let i = 1; i <= 4; i++) yield { n: e.n * 10 + i };
      if (e.bad) yield 5n;
    }
  });
  const writes = [];
  const srv = await listen(async (req, res) => {
    const write = res.write;
    res.write = function (...args) {
      writes.push(String(args[0]));
      return write.apply(this, args);
    };
    if (req.url === '/bad') return sendNdjson(res, burst.open().feed([{ n: 1, bad: true }]));
    if (req.url === '/readable') {
      // A Readable made first, then one output read here: the rest comes through the Readable, once.
      const outputs = burst.open().feed([{ n: 1 }, { n: 2 }]);
      const readable = toReadable(outputs, 'ndjson');
      const first = await outputs.next();
      res.write(`${JSON.stringify(first.value)}\n`);
      return pipeline(readable, res);
    }
    if (req.url === '/started') {
      // One output read here, the rest by sendNdjson: the feed's source is read once.
      const outputs = burst.open().feed([{ n: 1 }, { n: 2 }]);
      const first = await outputs.next();
      res.write(`${JSON.stringify(first.value)}\n`);
      return sendNdjson(res, outputs);
    }
    return sendNdjson(res, burst.open().feed([{ n: 1 }]));
  });
  const lines = (n) => Array.from({ length: 4 }, (_, i) => `{"n":${n * 10 + i + 1}}\n`).join('');
  try {
    assert.equal(await (await fetch(srv.url)).text(), lines(1));
    assert.deepEqual(writes.splice(0), [lines(1)], 'the four outputs in one write');
    const bad = await fetch(`${srv.url}/bad`);
    assert.equal(bad.status, 200);
    const text = await bad.text();
    assert.equal(text.slice(0, lines(1).length), lines(1), 'the outputs before the refused one');
    assert.equal(text.slice(lines(1).length), '{"error":{"message":"Internal Server Error","code":"ERR_VELO_SERIALIZE"}}\n');
    writes.length = 0;
    assert.equal(await (await fetch(`${srv.url}/started`)).text(), lines(1) + lines(2));
    assert.equal(await (await fetch(`${srv.url}/readable`)).text(), lines(1) + lines(2));
    assert.equal(burst.stats().open, 0);
  } finally {
    await srv.close();
  }
});

test('NDJSON in one chunk: the lines before a malformed one are answered before its error; lines read before feed() are not lost', async () => {
  const processed = [];
  const save = streamFn(async function* (events) {
    for await (const e of events) {
      processed.push(e.i);
      yield { saved: e.i };
    }
  });
  const srv = await listen(async (req, res) => {
    const events = ndjsonEvents(req);
    // A header line read by the route itself; the rest of its chunk goes to the stream.
    if (req.url === '/peek') res.setHeader('x-first', JSON.stringify((await events.next()).value));
    return sendNdjson(res, save.open().feed(events));
  });
  try {
    const bad = await fetch(srv.url, { method: 'POST', body: '{"i":1}\n{"i":2}\n{"i":3}\nnope\n' });
    assert.equal(bad.status, 200, 'outputs went out before the error');
    const lines = (await bad.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(lines.slice(0, 3), [{ saved: 1 }, { saved: 2 }, { saved: 3 }]);
    assert.equal(lines[3].error.code, 'ERR_VELO_BAD_NDJSON');
    assert.equal(lines.length, 4);
    assert.deepEqual(processed, [1, 2, 3]);

    const body = Array.from({ length: 10 }, (_, i) => JSON.stringify({ i })).join('\n') + '\n';
    const peeked = await fetch(`${srv.url}/peek`, { method: 'POST', body });
    assert.equal(peeked.headers.get('x-first'), '{"i":0}');
    assert.equal(await peeked.text(), Array.from({ length: 9 }, (_, i) => `{"saved":${i + 1}}\n`).join(''));
    assert.equal(save.stats().open, 0);
  } finally {
    await srv.close();
  }
});

test('a request read as text (req.setEncoding) gives the same events, characters split across packets included', async () => {
  const srv = await listen(async (req, res) => {
    const encoding = req.headers['x-encoding'];
    if (encoding !== 'none') req.setEncoding(encoding);
    const got = [];
    try {
      for await (const e of ndjsonEvents(req)) got.push(e);
    } catch (error) {
      got.push({ error: error.code });
    }
    res.end(JSON.stringify(got));
  });
  const post = (encoding, bytes) =>
    new Promise((resolve, reject) => {
      const req = request(srv.url, { method: 'POST', headers: { 'x-encoding': encoding } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve(JSON.parse(text)));
      });
      req.on('error', reject);
      // One byte per packet: every multi-byte character split.
      let i = 0;
      const next = () => {
        if (i === bytes.length) return req.end();
        req.write(bytes.subarray(i, ++i));
        setImmediate(next);
      };
      next();
    });
  try {
    const good = Buffer.from('{"a":"😀é"}\n{"b":2}\n');
    for (const encoding of ['none', 'utf8', 'latin1', 'hex', 'base64', 'utf16le'])
      assert.deepEqual(await post(encoding, good), [{ a: '😀é' }, { b: 2 }], encoding);
    // Bytes that are not UTF-8: refused unless Node decoded them as UTF-8 first.
    const bad = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff]), Buffer.from('"}\n')]);
    for (const encoding of ['none', 'latin1', 'hex'])
      assert.deepEqual(await post(encoding, bad), [{ error: 'ERR_VELO_BAD_NDJSON' }], encoding);
    assert.deepEqual(await post('utf8', bad), [{ a: '\ufffd' }]);
  } finally {
    await srv.close();
  }
});

test('an output is written while its handler awaits something else, and a handler that never stops does not starve the event loop', async () => {
  // Output 0, then a wait that only the client's receipt of output 0 ends.
  let received;
  const gotFirst = new Promise((resolve) => (received = resolve));
  const waits = streamFn(async function* () {
    yield { i: 0 };
    await gotFirst;
    yield { i: 1 };
  });
  // Tiny outputs, forever, never awaiting anything but its own yields.
  const endless = streamFn(async function* () {
    for (let i = 0; ; i++) yield i;
  });
  const srv = await listen((req, res) => {
    if (req.url === '/waits/sse') return sendSse(res, waits.open());
    if (req.url === '/waits/readable') return pipeline(toReadable(waits.open(), 'ndjson'), res).catch(() => {});
    if (req.url === '/waits') return sendNdjson(res, waits.open().feed([]));
    if (req.url === '/endless/readable') return pipeline(toReadable(endless.open(), 'ndjson'), res).catch(() => {});
    return sendNdjson(res, endless.open());
  });
  try {
    for (const path of ['/waits', '/waits/sse', '/waits/readable']) {
      const c = client(`${srv.url}${path}`);
      await deadline(
        until(() => c.text.includes('"i":0'), 4000, `output 0 of ${path}`),
        5000,
        `output 0 of ${path} while its handler waits`,
      );
      received();
      await deadline(c.closed, 5000, `the end of ${path}`);
      assert.match(c.text, /"i":1/);
    }
    for (const path of ['/endless', '/endless/readable']) {
      // Turns of the event loop while 200,000 outputs stream out.
      let turns = 0;
      let counting = true;
      const count = () => {
        turns++;
        if (counting) setImmediate(count);
      };
      setImmediate(count);
      const c = client(`${srv.url}${path}`);
      await until(() => c.text.length > 200_000 * 2, 20_000, `200,000 outputs of ${path}`);
      counting = false;
      c.destroy();
      assert.ok(turns > 10, `the event loop turned while ${path} streamed (${turns} turns)`);
    }
    await until(() => waits.stats().open + endless.stats().open === 0, 5000, 'every stream ended');
  } finally {
    await srv.close();
  }
});

test('behind compression() middleware, each write reaches the client as it is made: an output while its handler waits', async () => {
  let received;
  let gotFirst;
  const waits = streamFn(async function* () {
    yield { i: 0 };
    await gotFirst;
    yield { i: 1 };
  });
  // (Every type compressed: by default `compression` leaves NDJSON alone.)
  const compress = compression({ filter: () => true });
  const srv = await listen((req, res) =>
    compress(req, res, () => (req.url === '/sse' ? sendSse(res, waits.open()) : sendNdjson(res, waits.open()))),
  );
  try {
    for (const path of ['/ndjson', '/sse']) {
      gotFirst = new Promise((resolve) => (received = resolve));
      let text = '';
      let encoding;
      const done = new Promise((resolve, reject) => {
        const req = request(`${srv.url}${path}`, { headers: { 'accept-encoding': 'gzip' }, agent: false }, (res) => {
          encoding = res.headers['content-encoding'];
          const gunzip = createGunzip();
          res.pipe(gunzip);
          gunzip.setEncoding('utf8');
          gunzip.on('data', (s) => (text += s));
          gunzip.on('end', resolve);
          gunzip.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
      await deadline(until(() => text.includes('"i":0'), 4000, `output 0 of ${path}`), 5000, `output 0 of ${path}`);
      assert.equal(encoding, 'gzip', `${path} was compressed`);
      assert.doesNotMatch(text, /"i":1/);
      received();
      await deadline(done, 5000, `the end of ${path}`);
      assert.match(text, /"i":1/);
    }
  } finally {
    received?.();
    await srv.close();
  }
});

test('SSE: multi-line data is split into data fields; a named event is used when given', async () => {
  const lines = streamFn(async function* () {
    yield 'a\nb';
  });
  const srv = await listen((_req, res) => void sendSse(res, lines.open(), { serialize: String, event: 'text' }));
  try {
    assert.equal(await (await fetch(srv.url)).text(), 'event: text\ndata: a\ndata: b\n\n');
  } finally {
    await srv.close();
  }
});

test('a slow client: the handler is paused by the full socket, memory stays bounded', async () => {
  let produced = 0;
  const big = 'x'.repeat(1024);
  const firehose = streamFn(
    async function* () {
      for (let i = 0; i < 1_000_000; i++) {
        produced++;
        yield { i, big };
      }
    },
    { buffer: 16 },
  );
  const srv = await listen((_req, res) => void sendNdjson(res, firehose.open()));
  try {
    const r = await fetch(srv.url);
    const reader = r.body.getReader();
    await reader.read(); // read a little, then stop reading
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stalled = produced;
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(produced, stalled, 'the handler is not running ahead of the client');
    assert.ok(produced < 50_000, `only socket and stream buffers were filled (${produced} of 1,000,000 outputs)`);
    await reader.cancel();
    await until(() => firehose.stats().open === 0, 5000, 'the stream to be cancelled');
  } finally {
    await srv.close();
  }
});

test('a handler that stops taking events stops the reading of its request body; taken again, every line comes in order', async () => {
  // A body of 200 chunks of 128 lines each, made as the reader asks for it.
  const chunk = (k) => Buffer.from(Array.from({ length: 128 }, (_, i) => `{"n":${k * 128 + i}}\n`).join(''));
  let made = 0;
  const body = new Readable({
    read() {
      this.push(made < 200 ? chunk(made++) : null);
    },
  });
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const seen = [];
  const slow = streamFn(async function* (events) {
    for await (const e of events) {
      if (seen.push(e.n) === 1) await gate;
      yield e.n;
    }
  });
  const outputs = slow.open().feed(ndjsonEvents(body));
  const first = outputs.next();
  for (let i = 0; i < 50; i++) await new Promise(setImmediate);
  assert.deepEqual(seen, [0], 'the handler holds its first event');
  // The chunk whose line it holds, and what the Readable buffers by itself (16 KiB, about 11 chunks).
  assert.ok(made <= 20, `the body was read only as the handler asked: ${made} of 200 chunks made`);
  release();
  assert.equal((await first).value, 0);
  let next = 1;
  for await (const n of outputs) assert.equal(n, next++);
  assert.equal(next, 200 * 128);
  assert.equal(made, 200);
});

test('a client that disconnects mid-stream cancels it: the handler finally runs, the slot frees', async () => {
  let finalized = 0;
  const ticker = streamFn(async function* (_events, ctx) {
    try {
      for (let i = 0; ; i++) {
        yield { i };
        await new Promise((resolve) => setTimeout(resolve, 2));
        if (ctx.signal.aborted) return;
      }
    } finally {
      finalized++;
    }
  });
  const srv = await listen((req, res) => {
    const s = ticker.open();
    if (req.url === '/readable') void pipeline(toReadable(s, 'ndjson'), res).catch(() => {});
    else void sendNdjson(res, s);
  });
  try {
    for (const path of ['/', '/readable']) {
      const before = finalized;
      const ac = new AbortController();
      const r = await fetch(srv.url + path, { signal: ac.signal });
      const reader = r.body.getReader();
      await reader.read();
      ac.abort();
      await until(() => finalized === before + 1 && ticker.stats().open === 0, 5000, `cleanup after ${path}`);
    }
    assert.equal(ticker.stats().cancelled, 2);
  } finally {
    await srv.close();
  }
});

test('an output the serializer rejects is reported like a handler error, and the stream is cancelled', async () => {
  let finalized = 0;
  // JSON.stringify throws on a bigint; the handler would go on forever.
  const bigints = (first) =>
    streamFn(
      async function* () {
        try {
          if (first !== undefined) yield first;
          for (let i = 0n; ; i++) yield i;
        } finally {
          finalized++;
        }
      },
      { idleTimeout: 0 },
    );
  const badFirst = bigints(undefined);
  const badLater = bigints({ ok: 1 });
  const sends = [];
  const srv = await listen((req, res) => void sends.push(sendNdjson(res, (req.url === '/first' ? badFirst : badLater).open())));
  try {
    const first = await fetch(`${srv.url}/first`);
    assert.equal(first.status, 500, 'nothing was sent yet: an error status');
    assert.deepEqual(await first.json(), { error: { message: 'Internal Server Error', code: 'ERR_VELO_SERIALIZE' } });
    const later = await fetch(`${srv.url}/later`);
    assert.equal(later.status, 200);
    const lines = (await later.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(lines[0], { ok: 1 });
    assert.deepEqual(lines[1], { error: { message: 'Internal Server Error', code: 'ERR_VELO_SERIALIZE' } });
    assert.equal(lines.length, 2);
    assert.deepEqual(await Promise.all(sends), [undefined, undefined], 'sendNdjson resolves');
    await until(() => finalized === 2, 5000, "both handlers' finally");
    assert.equal(badFirst.stats().open + badLater.stats().open, 0);
  } finally {
    await srv.close();
  }
});

test('sendNdjson, sendSse and toReadable check their arguments at the call', async () => {
  const http = { sendNdjson, sendSse, toReadable };
  const echo = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  const code = (c) => (e) => e.code === c;
  const bad = [
    ['format', ['xml', undefined], 'ERR_INVALID_ARG_VALUE'],
    ['unknown key', ['ndjson', { serialise: JSON.stringify }], 'ERR_INVALID_ARG_VALUE'],
    ['serialize', ['ndjson', { serialize: 5 }], 'ERR_INVALID_ARG_TYPE'],
    ['event type', ['sse', { event: 5 }], 'ERR_INVALID_ARG_TYPE'],
    ['event with LF', ['sse', { event: 'x\ndata: injected' }], 'ERR_INVALID_ARG_VALUE'],
    ['event with CR', ['sse', { event: 'x\rid: 1' }], 'ERR_INVALID_ARG_VALUE'],
    ['headers', ['ndjson', { headers: 'x' }], 'ERR_INVALID_ARG_TYPE'],
    ['header value', ['ndjson', { headers: { a: {} } }], 'ERR_INVALID_ARG_TYPE'],
    // Node's rules for a header, at the call (before, Node refused them at the first output, which was lost).
    ['header name', ['ndjson', { headers: { 'bad header': 'x' } }], 'ERR_INVALID_ARG_VALUE'],
    ['header value with CRLF', ['ndjson', { headers: { a: 'v\r\nSet-Cookie: a=1' } }], 'ERR_INVALID_ARG_VALUE'],
    ['options', ['ndjson', 5], 'ERR_INVALID_ARG_TYPE'],
  ];
  for (const [what, [format, opts], c] of bad) {
    const s = echo.open();
    assert.throws(() => http.toReadable(s, format, opts), code(c), `toReadable: ${what}`);
    if (format === 'ndjson' || format === 'sse') {
      const send = format === 'ndjson' ? http.sendNdjson : http.sendSse;
      const res = { write() {}, end() {}, setHeader() {}, on() {}, once() {}, off() {}, removeListener() {} };
      await assert.rejects(send(res, s, opts), code(c), `${format}: ${what}`);
    }
    await s.cancel();
  }
  for (const send of [http.sendNdjson, http.sendSse]) {
    const s = echo.open();
    await assert.rejects(send(null, s), code('ERR_INVALID_ARG_TYPE'), 'res: null');
    // A Writable that is not a response (no setHeader) is refused at the call too.
    await assert.rejects(send(new PassThrough(), s), code('ERR_INVALID_ARG_TYPE'), 'res: a PassThrough');
    await s.cancel();
  }
});

test('a second writer on a response that has one fails at once with ERR_INVALID_STATE', async () => {
  const echo = streamFn(
    async function* echo(events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 0 },
  );
  const second = [];
  const srv = await listen((req, res) => {
    const first = echo.open();
    // The second writer's stream waits on an input that never comes: before, that writer waited for ever.
    const other = echo.open();
    const settled = (outcome) => second.push({ url: req.url, ...outcome });
    const refused = (e) => (settled({ code: e.code, message: e.message }), other.cancel());
    if (req.url === '/readable-first') {
      void pipeline(toReadable(first.feed(ndjsonEvents(req)), 'ndjson'), res).catch(() => {});
      sendSse(res, other).then(() => settled({ code: 'resolved' }), refused);
      return;
    }
    void sendNdjson(res, first.feed(ndjsonEvents(req)));
    const late = req.url === '/readable-second' ? pipeline(toReadable(other, 'ndjson'), res) : sendNdjson(res, other);
    late.then(() => settled({ code: 'resolved' }), refused);
  });
  try {
    for (const url of ['/writer-second', '/readable-first', '/readable-second']) {
      const before = second.length;
      const answer = deadline(fetch(`${srv.url}${url}`, { method: 'POST', body: '{"a":1}\n{"a":2}\n' }), 5000, url).then(
        async (r) => ({ status: r.status, text: await r.text() }),
        (e) => ({ error: e.message }),
      );
      await until(() => second.length === before + 1, 5000, `${url}: the second writer settled`);
      assert.equal(second[before].code, 'ERR_INVALID_STATE', url);
      assert.match(second[before].message, /has a writer already/, url);
      // A second writer call leaves the first to answer alone; `pipeline` destroys the response it failed on.
      if (url !== '/readable-second') assert.deepEqual(await answer, { status: 200, text: '{"a":1}\n{"a":2}\n' }, url);
      else await answer;
    }
    await until(() => echo.stats().open === 0, 5000, 'every stream ended');
  } finally {
    await srv.close();
  }
});
