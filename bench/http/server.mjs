// The S9 server (bench/http.mjs starts it in a child process): POST /score
// takes an NDJSON body, runs a small stateful per-request computation over
// its lines (a running sum and a count), and streams one NDJSON line back per
// input line. `variant` velo uses velo-stream (a stream per request,
// ndjsonEvents + sendNdjson); plain is the same endpoint as a careful user
// writes it with no library: line splitting with an async generator, JSON per
// line, res.write with 'drain' backpressure.
//
//   node bench/http/server.mjs <http|fastify> <velo|plain>   (prints "listening <port>")
import { createServer } from 'node:http';
import { once } from 'node:events';
import { streamFn } from 'velo-stream';
import { ndjsonEvents, sendNdjson } from 'velo-stream/http';

const [framework, variant] = process.argv.slice(2);

const score = streamFn(
  async function* (events) {
    let sum = 0;
    let n = 0;
    for await (const e of events) {
      sum += e.amount;
      n++;
      yield { id: e.id, n, mean: sum / n };
    }
  },
  { maxConcurrent: 10_000 },
);

/** NDJSON lines of a request body, parsed (the plain variant's reader). */
async function* lines(req) {
  let rest = '';
  req.setEncoding('utf8');
  for await (const chunk of req) {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      if (line.trim() !== '') yield JSON.parse(line);
    }
  }
  if (rest.trim() !== '') yield JSON.parse(rest);
}

async function plain(req, res) {
  res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8' });
  let sum = 0;
  let n = 0;
  try {
    for await (const e of lines(req)) {
      sum += e.amount;
      n++;
      if (!res.write(JSON.stringify({ id: e.id, n, mean: sum / n }) + '\n')) await once(res, 'drain');
    }
  } catch (error) {
    res.write(JSON.stringify({ error: { message: error.message } }) + '\n');
  }
  res.end();
}

async function velo(req, res) {
  await sendNdjson(res, score.open().feed(ndjsonEvents(req)));
}

const handler = variant === 'velo' ? velo : plain;
let port;
if (framework === 'fastify') {
  const { default: Fastify } = await import('fastify');
  const app = Fastify();
  // The body is the request stream itself, unparsed.
  app.addContentTypeParser('application/x-ndjson', (_req, payload, done) => done(null));
  app.post('/score', (request, reply) => {
    reply.hijack();
    return handler(request.raw, reply.raw);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = app.server.address().port;
} else {
  const server = createServer((req, res) => void handler(req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = server.address().port;
}
console.log(`listening ${port}`);
process.on('SIGTERM', () => process.exit(0));
