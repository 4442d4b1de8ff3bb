// ndjsonEvents size limits: maxLineBytes (default 100 KiB) and maxBodyBytes.
// A line or body over its limit is refused with 413 and a JSON error, the
// parser never holds more than one line's limit, it stops reading the request,
// and the server answers, closes that connection and serves the next request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { constants as bufferConstants, isUtf8 } from 'node:buffer';
import { PassThrough, Readable } from 'node:stream';
import { streamFn } from 'velo-stream';
import { RequestBodyError, RequestTooLargeError, ndjsonEvents, sendNdjson } from 'velo-stream/http';
import { deadline, listen, rawExchange, recordWarnings } from './helpers/server.mjs';
import { unhandledDuring } from './helpers/util.mjs';

/** Parses `chunks` (Buffers or strings, one chunk each) and returns the events, or the events and the error. */
async function parse(chunks, opts) {
  const events = [];
  try {
    for await (const e of ndjsonEvents(Readable.from(chunks.map((c) => Buffer.from(c))), opts)) events.push(e);
  } catch (error) {
    return { events, error };
  }
  return { events };
}

/** A JSON line of exactly `bytes` bytes of UTF-8 (a string of `char`s, padded with ASCII). */
function lineOf(bytes, char = 'a') {
  const charBytes = Buffer.byteLength(char);
  const n = Math.floor((bytes - 2) / charBytes);
  const s = JSON.stringify(char.repeat(n) + 'a'.repeat(bytes - 2 - n * charBytes));
  assert.equal(Buffer.byteLength(s), bytes);
  return s;
}

/** Every split of `buf` into pieces of `size` bytes. */
function pieces(buf, size) {
  const out = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

test('lines up to maxLineBytes pass (LF, CRLF, last line without newline), one byte more is refused', async () => {
  const limit = 64;
  for (const ending of ['\n', '\r\n', '']) {
    const ok = await parse([`${lineOf(limit)}${ending}`], { maxLineBytes: limit });
    assert.deepEqual(ok, { events: ['a'.repeat(limit - 2)] }, `a line of exactly the limit, ending ${JSON.stringify(ending)}`);
    const over = await parse([`{"n":1}\n${lineOf(limit + 1)}${ending}{"n":3}\n`], { maxLineBytes: limit });
    assert.deepEqual(over.events, [{ n: 1 }], 'the lines before the long one are delivered');
    assert.ok(over.error instanceof RequestTooLargeError);
    assert.equal(over.error.status, 413);
    assert.equal(over.error.code, 'ERR_VELO_NDJSON_LINE_TOO_LARGE');
    assert.equal(over.error.line, 2);
    assert.equal(over.error.limit, limit);
    assert.deepEqual(over.error.toJSON(), {
      error: {
        message: 'Line 2 of the request body is larger than maxLineBytes (64 bytes)',
        code: 'ERR_VELO_NDJSON_LINE_TOO_LARGE',
        limit: 64,
        line: 2,
      },
    });
  }
  // A `\r` that is not followed by `\n` is not a line ending: it counts.
  const cr = await parse([`${lineOf(limit)}\r`], { maxLineBytes: limit });
  assert.deepEqual(cr.events, ['a'.repeat(limit - 2)], 'a final CR is stripped like the CR of CRLF');
  const inner = await parse([`${lineOf(limit - 1)}\r `], { maxLineBytes: limit });
  assert.equal(inner.error?.code, 'ERR_VELO_NDJSON_LINE_TOO_LARGE', 'a CR inside a line counts as a byte');
});

test('a line over the limit without any newline is refused after at most maxLineBytes + 1 bytes are held', async () => {
  let pulled = 0;
  // 64 MiB of one line, made as it is read: the parser must stop long before.
  async function* endless() {
    const chunk = Buffer.alloc(64 * 1024, 'x');
    for (let i = 0; i < 1024; i++) {
      pulled += chunk.length;
      yield chunk;
    }
  }
  await assert.rejects(
    (async () => {
      for await (const _ of ndjsonEvents(Readable.from(endless(), { objectMode: false })));
    })(),
    (e) => e instanceof RequestTooLargeError && e.code === 'ERR_VELO_NDJSON_LINE_TOO_LARGE' && e.line === 1 && e.limit === 100 * 1024,
  );
  // The default limit is 100 KiB; the Readable reads ahead up to its 16 KiB mark and one chunk.
  assert.ok(pulled <= 100 * 1024 + 3 * 64 * 1024, `the parse stopped early: ${pulled} of ${64 * 1024 * 1024} bytes pulled`);
});

test('multi-byte characters split across chunks at every position decode whole; limits count bytes, not characters', async () => {
  const body = Buffer.from(
    [{ t: 'é€😀 mixed' }, { t: '😀'.repeat(10) }, {}, { t: 'ß\u2028\u00a0' }].map((o) => JSON.stringify(o)).join('\r\n') + '\n\n',
  );
  const expected = body
    .toString()
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
  for (let size = 1; size <= 7; size++) {
    assert.deepEqual(await parse(pieces(body, size)), { events: expected }, `chunks of ${size} bytes`);
  }
  // 4-byte characters: 16 of them are 64 bytes but only 32 UTF-16 units.
  for (const size of [1, 3, 5]) {
    const exact = await parse(pieces(Buffer.from(`${lineOf(66, '😀')}\n`), size), { maxLineBytes: 66 });
    assert.deepEqual(exact, { events: ['😀'.repeat(16)] });
    const over = await parse(pieces(Buffer.from(`${lineOf(67, '😀')}\n`), size), { maxLineBytes: 66 });
    assert.equal(over.error?.code, 'ERR_VELO_NDJSON_LINE_TOO_LARGE', `chunks of ${size}`);
  }
});

test('maxBodyBytes: exactly the limit passes; beyond it, the lines within the limit, then ERR_VELO_BODY_TOO_LARGE, whatever the chunking', async () => {
  const body = '{"n":1}\n{"n":2}\n{"n":3}\n'; // 24 bytes
  for (const size of [1, 5, 24]) {
    const chunks = pieces(Buffer.from(body), size);
    assert.deepEqual(await parse(chunks, { maxBodyBytes: 24 }), { events: [{ n: 1 }, { n: 2 }, { n: 3 }] });
    const over = await parse(chunks, { maxBodyBytes: 23 });
    assert.deepEqual(over.events, [{ n: 1 }, { n: 2 }], `chunks of ${size}: only whole lines within the limit`);
    assert.ok(over.error instanceof RequestTooLargeError);
    assert.equal(over.error.code, 'ERR_VELO_BODY_TOO_LARGE');
    assert.equal(over.error.status, 413);
    assert.deepEqual(over.error.toJSON(), {
      error: { message: 'The request body is larger than maxBodyBytes (23 bytes)', code: 'ERR_VELO_BODY_TOO_LARGE', limit: 23 },
    });
  }
  assert.deepEqual(await parse([body], { maxBodyBytes: Infinity }), { events: [{ n: 1 }, { n: 2 }, { n: 3 }] });
});

test('blank lines are skipped but counted; a malformed line is still a 400 RequestBodyError with its line', async () => {
  const r = await parse(['\n  \r\n{"a":1}\n\nnope\n']);
  assert.deepEqual(r.events, [{ a: 1 }]);
  assert.ok(r.error instanceof RequestBodyError);
  assert.equal(r.error.line, 5);
});

/**
 * The NDJSON rules, applied the plain way to a whole body: split its bytes at
 * each newline, and check and parse one line after another.
 */
function referenceParse(body, { maxLineBytes = 100 * 1024, maxBodyBytes = Infinity } = {}) {
  const events = [];
  const within = body.subarray(0, Math.min(body.length, maxBodyBytes));
  const lines = [];
  for (let from = 0; from < within.length;) {
    const nl = within.indexOf(10, from);
    lines.push({ bytes: within.subarray(from, nl === -1 ? within.length : nl), ended: nl !== -1 });
    from = nl === -1 ? within.length : nl + 1;
  }
  let n = 0;
  for (const { bytes, ended } of lines) {
    n++;
    const end = bytes.at(-1) === 13 ? bytes.length - 1 : bytes.length;
    // A body cut by maxBodyBytes in the middle of a line: that line is not parsed, but it is refused if it is
    // already longer than a line may be (its last byte might still have been the `\r` of a CRLF).
    const cut = !ended && body.length > maxBodyBytes;
    // A byte order mark opening the body is not the first line's: its 3 bytes do not count.
    const bom = n === 1 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
    if (cut ? bytes.length - bom > maxLineBytes + 1 : end - bom > maxLineBytes)
      return { events, error: { code: 'ERR_VELO_NDJSON_LINE_TOO_LARGE', line: n } };
    if (cut) break;
    const line = bytes.subarray(0, end);
    if (!isUtf8(line)) return { events, error: { code: 'ERR_VELO_BAD_NDJSON', line: n } };
    let text = line.toString('utf8');
    if (n === 1 && text.startsWith('\ufeff')) text = text.slice(1);
    if (/^[ \t\r]*$/.test(text)) continue;
    try {
      events.push(JSON.parse(text));
    } catch {
      return { events, error: { code: 'ERR_VELO_BAD_NDJSON', line: n } };
    }
  }
  if (body.length > maxBodyBytes) return { events, error: { code: 'ERR_VELO_BODY_TOO_LARGE' } };
  return { events };
}

test('random bodies in random chunks parse as the plain line-by-line rules say', async () => {
  let seed = 12345;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const pick = (xs) => xs[Math.floor(random() * xs.length)];
  const lineKinds = [
    () => JSON.stringify({ n: Math.floor(random() * 1000) }),
    () => JSON.stringify({ s: 'é€😀'.repeat(1 + Math.floor(random() * 4)) }),
    () => JSON.stringify('x'.repeat(Math.floor(random() * 40))),
    () => pick(['', ' ', '\t \r', '\u00a0']),
    () => '{"broken":',
    () => '[1,2]\r',
  ];
  for (let round = 0; round < 400; round++) {
    const parts = [];
    if (random() < 0.1) parts.push(Buffer.from([0xef, 0xbb, 0xbf]));
    const count = 1 + Math.floor(random() * 8);
    for (let i = 0; i < count; i++) {
      // Mostly good lines, now and then a bad one.
      const kind = random() < 0.9 ? pick([lineKinds[0], lineKinds[1], lineKinds[2], lineKinds[3], lineKinds[5]]) : lineKinds[4];
      parts.push(Buffer.from(kind()));
      // A lone lead byte (not UTF-8), inside a JSON string: decoded, it would parse.
      if (random() < 0.04) parts.push(Buffer.from('{"s":"'), Buffer.from([0xc3]), Buffer.from('"}'));
      if (i < count - 1 || random() < 0.7) parts.push(Buffer.from('\n'));
    }
    const body = Buffer.concat(parts);
    const opts = {};
    if (random() < 0.3) opts.maxLineBytes = 1 + Math.floor(random() * 40);
    if (random() < 0.3) opts.maxBodyBytes = 1 + Math.floor(random() * body.length);
    const chunks = [];
    for (let i = 0; i < body.length;) {
      const size = random() < 0.5 ? 1 + Math.floor(random() * 4) : 1 + Math.floor(random() * body.length);
      chunks.push(body.subarray(i, i + size));
      i += size;
    }
    const want = referenceParse(body, opts);
    const what = `round ${round}: ${JSON.stringify(body.toString('latin1'))} in ${chunks.length} chunks, ${JSON.stringify(opts)}`;
    // One by one (for await), and a chunk's lines at a time (feed() into a stream with little room).
    for (const [how, got] of [
      ['for await', await parse(chunks, opts)],
      ['feed', await parseThroughStream(chunks, opts)],
    ]) {
      if (want.error === undefined) {
        assert.deepEqual(got.events, want.events, `${how}, ${what}`);
        assert.equal(got.error, undefined, `${how}, ${what}`);
        continue;
      }
      // (feed(): the source's error cancels the stream, which drops what it had not handed on yet.)
      if (how === 'for await') assert.deepEqual(got.events, want.events, `${how}, ${what}`);
      else assert.deepEqual(got.events, want.events.slice(0, got.events.length), `${how}, ${what}`);
      assert.equal(got.error?.code, want.error.code, `${how}, ${what}`);
      if (want.error.line !== undefined) assert.equal(got.error.line, want.error.line, `${how}, ${what}`);
    }
  }
});

/** As `parse`, through `feed()` into a stream whose input holds 2 events (lines cross a chunk's worth at a time). */
async function parseThroughStream(chunks, opts) {
  const events = [];
  const echo = streamFn(
    async function* (input) {
      for await (const e of input) yield e;
    },
    { buffer: 2 },
  );
  try {
    for await (const e of echo.open().feed(ndjsonEvents(Readable.from(chunks.map((c) => Buffer.from(c))), opts))) events.push(e);
  } catch (error) {
    return { events, error };
  }
  return { events };
}

test('a body destroyed before its end with no error of its own fails as a premature close, never as a complete body', async () => {
  const body = new Readable({ read() {} });
  body.push('{"n":1}\n{"n":2}');
  const events = [];
  const reading = (async () => {
    for await (const e of ndjsonEvents(body)) events.push(e);
  })();
  await new Promise(setImmediate);
  body.destroy();
  await assert.rejects(reading, { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  assert.deepEqual(events, [{ n: 1 }], 'the unfinished last line is not delivered');
});

test('options are checked at the call: RangeError ERR_OUT_OF_RANGE naming the field, TypeError for the rest', async () => {
  const body = () => Readable.from([]);
  for (const bad of [0, -1, 1.5, NaN, Infinity, -Infinity, '100', null, bufferConstants.MAX_STRING_LENGTH + 1]) {
    assert.throws(
      () => ndjsonEvents(body(), { maxLineBytes: bad }),
      (e) => e instanceof RangeError && e.code === 'ERR_OUT_OF_RANGE' && /"maxLineBytes"/.test(e.message),
      `maxLineBytes ${String(bad)}`,
    );
  }
  for (const bad of [0, -1, 1.5, NaN, -Infinity, '100', null, 2 ** 53]) {
    assert.throws(
      () => ndjsonEvents(body(), { maxBodyBytes: bad }),
      (e) => e instanceof RangeError && e.code === 'ERR_OUT_OF_RANGE' && /"maxBodyBytes"/.test(e.message),
      `maxBodyBytes ${String(bad)}`,
    );
  }
  assert.throws(
    () => ndjsonEvents(body(), { maxLineByte: 10 }),
    (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_VALUE',
  );
  assert.throws(
    () => ndjsonEvents(body(), 10),
    (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_TYPE',
  );
  for (const notOptions of [[], new Map([['maxLineBytes', 1]]), AbortSignal.abort()])
    assert.throws(
      () => ndjsonEvents(body(), notOptions),
      (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_TYPE',
      `options: ${Object.prototype.toString.call(notOptions)}`,
    );
  // A body something read before it (a body parser): its events would be missing, so its first read fails, as a
  // source's that throws: the stream fails before its handler takes the empty input for whole.
  const read = new PassThrough();
  read.end('{"n":1}\n{"n":2}\n');
  assert.ok(read.read(8) !== null);
  let afterLoop = 0;
  const echo = streamFn(async function* (events) {
    for await (const e of events) yield e;
    afterLoop++;
  });
  await assert.rejects(
    echo.run(ndjsonEvents(read)),
    (e) => e instanceof TypeError && e.code === 'ERR_INVALID_STATE' && /read before ndjsonEvents/.test(e.message),
  );
  assert.equal(afterLoop, 0, "the handler's code after its loop did not run");
  assert.equal(echo.stats().open, 0);
  assert.equal(echo.stats().completed, 0);
  assert.throws(
    () => ndjsonEvents('{"a":1}\n'),
    (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_TYPE',
  );
  assert.throws(
    () => ndjsonEvents(null),
    (e) => e instanceof TypeError && e.code === 'ERR_INVALID_ARG_TYPE',
  );
  ndjsonEvents(body(), { maxLineBytes: 1, maxBodyBytes: Number.MAX_SAFE_INTEGER });
  ndjsonEvents(body(), { maxLineBytes: bufferConstants.MAX_STRING_LENGTH, maxBodyBytes: undefined });
});

// ----- against a real server -----

const double = streamFn(async function* double(events) {
  for await (const e of events) yield { n: e.n * 2 };
});

/**
 * A server that answers NDJSON bodies with `double`, with the given limits,
 * recording for each request the bytes its connection read from the client.
 */
async function limitedServer(opts) {
  const seen = { sockets: [], sends: [] };
  const srv = await listen((req, res) => {
    seen.sockets.push(req.socket);
    seen.sends.push(sendNdjson(res, double.open().feed(ndjsonEvents(req, opts))));
  });
  return { ...srv, seen };
}

/**
 * POSTs `body` (an async iterable of chunks) the way a client that streams
 * does, honouring backpressure, and stops sending when the answer comes.
 * Resolves with the status, headers and body of the answer.
 */
function upload(url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers, agent: false });
    let answered = false;
    let sent = 0;
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    req.once('response', (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (s) => (text += s));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text, sent }));
    });
    (async () => {
      for await (const chunk of body) {
        if (answered || req.destroyed) return;
        sent += chunk.length;
        if (!req.write(chunk)) await drainOrClose(req);
      }
      if (!answered && !req.destroyed) req.end();
    })().catch(reject);
  });
}

/** Waits for room or the end of `req`, leaving no listener behind. */
function drainOrClose(req) {
  return new Promise((resolve) => {
    const done = () => {
      req.off('drain', done).off('close', done);
      resolve();
    };
    req.on('drain', done).on('close', done);
  });
}

async function* repeat(chunk, times) {
  for (let i = 0; i < times; i++) yield chunk;
}

/** The next request on a fresh connection is served normally. */
async function servesNext(url) {
  const r = await fetch(url, { method: 'POST', body: '{"n":21}\n' });
  assert.equal(r.status, 200);
  assert.equal(await r.text(), '{"n":42}\n');
}

test('server: a 64 MiB line without newline is a 413 after reading little of it; the server serves the next request', async () => {
  const warnings = recordWarnings();
  const srv = await limitedServer();
  try {
    const unhandled = await unhandledDuring(async () => {
      // Collections while the parser waits for more of the request: it must
      // not lose its place (the test keeps no reference to its stream).
      async function* sixtyFourMiB() {
        for (let i = 0; i < 1024; i++) {
          if (i % 16 === 0) global.gc();
          yield Buffer.alloc(64 * 1024, 'x');
        }
      }
      const r = await deadline(upload(srv.url, sixtyFourMiB()), 30_000, 'the 413');
      assert.equal(r.status, 413);
      assert.equal(r.headers.connection, 'close');
      assert.match(r.headers['content-type'], /application\/json/);
      assert.deepEqual(JSON.parse(r.text), {
        error: {
          message: 'Line 1 of the request body is larger than maxLineBytes (102400 bytes)',
          code: 'ERR_VELO_NDJSON_LINE_TOO_LARGE',
          limit: 102400,
          line: 1,
        },
      });
      const socket = srv.seen.sockets[0];
      await deadline(
        new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', resolve))),
        5000,
        'the connection to close',
      );
      // Bytes the server took from the connection: the line's limit plus
      // stream and socket buffers, and at most 4 MiB read and dropped by the
      // lingering close after the answer, not the 64 MiB the client had to send.
      assert.ok(socket.bytesRead < 5 * 1024 * 1024, `the server stopped reading: ${socket.bytesRead} bytes read of 64 MiB`);
      assert.equal(await deadline(srv.seen.sends[0], 5000, 'sendNdjson'), undefined);
      assert.equal(double.stats().open, 0);
      await servesNext(srv.url);
    });
    assert.deepEqual(unhandled, []);
    assert.deepEqual(warnings.seen, []);
  } finally {
    warnings.stop();
    await srv.close();
  }
});

test('server: a line over maxLineBytes ending in a newline, after an output, ends the 200 response with an error line and closes', async () => {
  const srv = await limitedServer({ maxLineBytes: 1000 });
  try {
    // Line 1 is answered first; line 2 is too long and the client goes on sending.
    async function* body() {
      yield Buffer.from('{"n":1}\n');
      yield Buffer.from(`{"n":2,"pad":"${'x'.repeat(2000)}"}\n`);
      yield* repeat(Buffer.from('{"n":3}\n'.repeat(4096)), 64);
    }
    const r = await deadline(upload(srv.url, body()), 30_000, 'the response');
    assert.equal(r.status, 200);
    assert.equal(
      r.text,
      '{"n":2}\n{"error":{"message":"Line 2 of the request body is larger than maxLineBytes (1000 bytes)","code":"ERR_VELO_NDJSON_LINE_TOO_LARGE","limit":1000,"line":2}}\n',
    );
    const socket = srv.seen.sockets[0];
    await deadline(
      new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', resolve))),
      5000,
      'the connection to close',
    );
    assert.equal(double.stats().open, 0);
    await servesNext(srv.url);
  } finally {
    await srv.close();
  }
});

test('server: a line refused after an output closes the connection once answered, though the client sends nothing more and keep-alive is long', async () => {
  for (const [what, line] of [
    ['too long', `{"n":2,"pad":"${'x'.repeat(2000)}"}\n`],
    ['malformed', 'nope\n'],
  ]) {
    const srv = await limitedServer({ maxLineBytes: 1000 });
    // Without the close, this connection would stay open for a minute.
    srv.server.keepAliveTimeout = 60_000;
    try {
      const head = 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n';
      const r = await deadline(
        rawExchange(srv.port, head, async (socket) => {
          socket.write('{"n":1}\n');
          // The output is out before the bad line arrives.
          await new Promise((resolve) => socket.once('data', resolve));
          socket.write(line);
        }),
        20_000,
        `the server closing the connection (${what} line)`,
      );
      assert.match(r.text, /^HTTP\/1\.1 200 /, what);
      assert.match(r.text, /\{"n":2\}\n/, what);
      assert.match(r.text, what === 'malformed' ? /"code":"ERR_VELO_BAD_NDJSON"/ : /"code":"ERR_VELO_NDJSON_LINE_TOO_LARGE"/);
      assert.match(r.text, /\r\n0\r\n\r\n$/, `${what}: the chunked answer is complete before the close`);
      assert.equal(double.stats().open, 0);
    } finally {
      await srv.close();
    }
  }
});

test('ndjsonEvents: a byte order mark opening the body is ignored; only JSON whitespace makes a blank line; bad UTF-8 is a malformed line', async () => {
  assert.deepEqual(await parse(['\uFEFF{"a":1}\n{"b":2}\n']), { events: [{ a: 1 }, { b: 2 }] });
  // Not counted against maxLineBytes: a first line of exactly the limit passes after one, one byte more does not.
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);
  for (const ending of ['\n', '\r\n', '']) {
    for (const size of [1, 2, 3, 4, 64]) {
      const what = `ending ${JSON.stringify(ending)}, chunks of ${size}`;
      const exact = await parse(pieces(Buffer.concat([bom, Buffer.from(`${lineOf(10)}${ending}`)]), size), { maxLineBytes: 10 });
      assert.deepEqual(exact, { events: ['a'.repeat(8)] }, what);
      const over = await parse(pieces(Buffer.concat([bom, Buffer.from(`${lineOf(11)}${ending}`)]), size), { maxLineBytes: 10 });
      assert.equal(over.error?.code, 'ERR_VELO_NDJSON_LINE_TOO_LARGE', what);
    }
  }
  const bomLater = await parse(['{"a":1}\n\uFEFF{"b":2}\n']);
  assert.equal(bomLater.error?.line, 2, 'a byte order mark is ignored only where the body opens');
  const nbsp = await parse(['{"a":1}\n\u00A0\n']);
  assert.deepEqual(nbsp.events, [{ a: 1 }]);
  assert.ok(nbsp.error instanceof RequestBodyError, 'a no-break space is not JSON whitespace');
  assert.equal(nbsp.error.line, 2);
  const bad = [];
  for (const bytes of [
    [0x22, 0xff, 0x22],
    [0x22, 0xc3, 0x22],
    [0x22, 0xed, 0xa0, 0x80, 0x22],
  ]) {
    const r = await parse([Buffer.concat([Buffer.from('{"a":1}\n'), Buffer.from(bytes), Buffer.from('\n')])]);
    bad.push([r.events.length, r.error instanceof RequestBodyError, r.error?.line, r.error?.cause?.message]);
  }
  assert.deepEqual(bad, Array(3).fill([1, true, 2, 'The line is not valid UTF-8']));
});

test('server: a chunked body over maxBodyBytes is a 413; exactly maxBodyBytes is served', async () => {
  const srv = await limitedServer({ maxBodyBytes: 8 * 1024 });
  try {
    const line = Buffer.from('{"n":1}\n'); // 8 bytes
    const exact = await upload(srv.url, repeat(line, 1024));
    assert.equal(exact.status, 200);
    assert.equal(exact.text, '{"n":2}\n'.repeat(1024));
    // Larger than the limit, sent in chunks without a Content-Length: one
    // long line, still within maxLineBytes, so no line is whole within the
    // limit, the handler has no output, and the answer is a 413.
    async function* oneLongLine() {
      yield Buffer.from('{"pad":"');
      yield* repeat(Buffer.alloc(1024, 'x'), 20);
      yield Buffer.from('"}\n');
    }
    const over = await deadline(upload(srv.url, oneLongLine()), 30_000, 'the 413');
    assert.equal(over.status, 413);
    assert.equal(JSON.parse(over.text).error.code, 'ERR_VELO_BODY_TOO_LARGE');
    assert.equal(over.headers.connection, 'close');
    await servesNext(srv.url);
  } finally {
    await srv.close();
  }
});

test('server: a Content-Length over maxBodyBytes is refused before reading the body', async () => {
  const srv = await limitedServer({ maxBodyBytes: 1000 });
  try {
    // The headers announce 10 MB and no body byte is ever sent: an answer
    // proves the refusal did not wait for the body.
    const head = 'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n';
    const r = await deadline(rawExchange(srv.port, head), 5000, 'the 413 without a body');
    assert.match(r.text, /^HTTP\/1\.1 413 /);
    assert.match(r.text, /\r\nconnection: close\r\n/i);
    assert.match(r.text, /"code":"ERR_VELO_BODY_TOO_LARGE","limit":1000/);
    assert.equal(double.stats().open, 0);
    assert.equal(double.stats().completed + double.stats().cancelled, double.stats().opened);
    await servesNext(srv.url);
  } finally {
    await srv.close();
  }
});

test('server: once a stream ended by its idle timeout has answered, a body that keeps trickling is no longer read: the connection closes', async () => {
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 150 },
  );
  const srv = await listen(async (req, res) => {
    const stream = echo.open();
    await sendNdjson(res, stream.feed(ndjsonEvents(req)));
  });
  // Node would read (and discard) the rest of the body to keep the connection, until its requestTimeout.
  srv.server.keepAliveTimeout = 60_000;
  srv.server.requestTimeout = 0;
  let trickled = 0;
  try {
    const head = 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n';
    const r = await deadline(
      rawExchange(srv.port, head, async (socket) => {
        const line = '{"n":1}\n';
        socket.write(`${line.length.toString(16)}\r\n${line}\r\n`);
        // Then a byte every 50 ms, never ending the body, while the socket is open.
        while (!socket.destroyed && !socket.readableEnded && trickled < 400) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          if (socket.destroyed || socket.readableEnded) break;
          socket.write('1\r\n \r\n');
          trickled++;
        }
      }),
      20_000,
      'the server closing the trickling connection',
    );
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.match(r.text, /\{"n":1\}\n/);
    assert.match(r.text, /\r\n0\r\n\r\n$/, 'the answer is complete before the close');
    assert.ok(trickled < 400, 'the connection closed while the client still had body to send');
  } finally {
    await srv.close();
  }
});
