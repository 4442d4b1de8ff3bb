// The S9 request without sockets: each endpoint of bench/http/endpoints.mjs
// answers requests one after another on a real http.ServerResponse whose
// socket discards what it is given, so the CPU time per request is the
// endpoint's own (parsing, the stream, serializing, Node's response code)
// without the kernel or the load generator. For profiles of S9:
//
//   node bench/http/inprocess.mjs                    # both endpoints, alternating: µs per request
//   node --cpu-prof bench/http/inprocess.mjs velo    # one endpoint
import assert from 'node:assert/strict';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Duplex } from 'node:stream';
import { once } from 'node:events';
import { measured, plain, velo } from './endpoints.mjs';
import { parsed, streamed } from './parts.mjs';

const LINES = 10;
const body = Buffer.from(Array.from({ length: LINES }, (_, i) => JSON.stringify({ id: i, amount: i * 1.5 })).join('\n') + '\n');
const expected =
  Array.from({ length: LINES }, (_, i) => JSON.stringify({ id: i, n: i + 1, mean: (1.5 * i) / 2 })).join('\n') + '\n';

/** One request; returns the response body when `keep`. */
async function request(endpoint, keep) {
  const written = [];
  const socket = new Duplex({
    read() {},
    write(chunk, _encoding, callback) {
      if (keep) written.push(Buffer.from(chunk));
      callback();
    },
  });
  const req = new IncomingMessage(socket);
  req.method = 'POST';
  req.url = '/score';
  req.headers = { 'content-type': 'application/x-ndjson', 'content-length': String(body.length) };
  req.push(body);
  req.push(null);
  // (Node's parser sets this once the body is in; without it the request's
  // end would count as an abort and destroy the socket.)
  req.complete = true;
  const res = new ServerResponse(req);
  res.assignSocket(socket);
  await endpoint(req, res);
  if (!res.writableFinished) await once(res, 'finish');
  res.detachSocket(socket);
  if (!keep) return '';
  // (No keep-alive was asked for, so the response is not chunked: the body follows the headers as it is.)
  const text = Buffer.concat(written).toString('utf8');
  return text.slice(text.indexOf('\r\n\r\n') + 4);
}

// (parts.mjs: variants between the two, to measure a request part by part.)
const endpoints = { velo, plain, measured, parsed, streamed };
const [only, count = '20000'] = process.argv.slice(2);
const n = Number(count);
for (const [name, endpoint] of Object.entries(endpoints))
  assert.equal(await request(endpoint, true), expected, `${name} answers`);

async function round(name) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await request(endpoints[name], false);
    // A server's requests arrive on separate turns of the event loop: what
    // an endpoint leaves for the next turn runs before the next request.
    await new Promise(setImmediate);
  }
  return ((performance.now() - t0) * 1000) / n;
}
const names = only ? [only] : ['velo', 'plain'];
for (const name of names) await round(name); // warm-up
for (let r = 0; r < 3; r++) {
  for (const name of names) console.log(`${name.padEnd(6)} ${(await round(name)).toFixed(2)} µs/request`);
}
