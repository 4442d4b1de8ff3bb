// The 503 at maxConcurrent, as docs/http.md shows it for Express 5 (examples/express-upload.mjs: catch, sendError)
// and Fastify (a setErrorHandler that hands the error to sendError): answered while the client is still uploading,
// with Connection: close and the library's own error body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { streamFn } from 'velo-stream';
import { contentType, ndjsonEvents, sendError, toReadable } from 'velo-stream/http';
import * as upload from '../examples/express-upload.mjs';
import { deadline, rawConnection } from './helpers/server.mjs';

/** Sends the head of a request whose body (Content-Length 1 MB) never finishes; resolves with the answer's head and body once the server closes. */
async function unfinishedUpload(port) {
  let text = '';
  const { socket, closed } = await rawConnection(port, (d) => (text += d));
  socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000000\r\n\r\n{"index":0}\n');
  await deadline(closed, 10_000, 'the answer while the body is unfinished');
  return text;
}

const LIMIT_BODY = '{"error":{"message":"Service Unavailable","code":"ERR_VELO_STREAM_LIMIT","status":503}}';

test('Express 5 (examples/express-upload.mjs): 503 at maxConcurrent answered while the upload is unfinished, Connection: close', async () => {
  const srv = await upload.start(0);
  const held = [];
  try {
    for (;;) {
      try {
        held.push(upload.motion.open());
      } catch (error) {
        assert.equal(error.code, 'ERR_VELO_STREAM_LIMIT');
        break;
      }
    }
    const text = await unfinishedUpload(srv.server.address().port);
    assert.match(text, /^HTTP\/1\.1 503 /);
    assert.match(text, /\r\nconnection: close\r\n/i);
    assert.ok(text.endsWith(LIMIT_BODY), text);
  } finally {
    await Promise.all(held.map((s) => s.cancel()));
    await srv.close();
  }
});

test('Fastify: a setErrorHandler that hands the error to sendError answers 503 with the library error body', async () => {
  const fn = streamFn(
    async function* echo(events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 0, maxConcurrent: 1 },
  );
  const app = Fastify();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));
  app.setErrorHandler((error, _request, reply) => {
    reply.hijack();
    sendError(reply.raw, error);
  });
  app.post('/upload', (request, reply) => {
    const outputs = fn.open().feed(ndjsonEvents(request.raw));
    reply.header('content-type', contentType('ndjson'));
    return reply.send(toReadable(outputs, 'ndjson'));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const held = fn.open();
  try {
    const text = await unfinishedUpload(app.server.address().port);
    assert.match(text, /^HTTP\/1\.1 503 /);
    assert.match(text, /\r\nconnection: close\r\n/i);
    assert.ok(text.endsWith(LIMIT_BODY), text);
  } finally {
    await held.cancel();
    await app.close();
  }
});
