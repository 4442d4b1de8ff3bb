// The S9 server (bench/http.mjs starts it in a child process), serving one of
// the two endpoints of bench/http/endpoints.mjs at POST /score.
//
//   node bench/http/server.mjs <http|fastify> <velo|plain|measured>   (prints "listening <port>")
import { createServer } from 'node:http';
import { once } from 'node:events';
import * as endpoints from './endpoints.mjs';

const [framework, variant] = process.argv.slice(2);

const handler = endpoints[variant];
if (typeof handler !== 'function') throw new Error(`no endpoint ${variant}`);
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
