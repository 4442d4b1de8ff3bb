// Fastify: an LLM-token post-processor as Server-Sent Events. A (simulated)
// model emits tokens; one stream per request joins them into words and
// extracts JSON objects as soon as they close, and the client sees events live.
//
//   node examples/fastify-sse.mjs               # listens on 127.0.0.1:3001
//   curl -N 'http://127.0.0.1:3001/complete?prompt=hi'
import Fastify from 'fastify';
import { pathToFileURL } from 'node:url';
import { streamFn } from 'velo-stream';
import { contentType, toReadable } from 'velo-stream/http';
import { jsonExtractor, SAMPLE, tokenize } from './llm-json-extract.mjs';

/** A stand-in for a model: tokens of a canned answer, one per `delayMs`. */
export async function* fakeModel(prompt, { delayMs = 1, signal } = {}) {
  for (const token of tokenize(`You said "${prompt}". ${SAMPLE}`)) {
    if (signal?.aborted) return;
    await new Promise((r) => setTimeout(r, delayMs));
    yield token;
  }
}

/** Words as they complete, plus every JSON object found. */
export const postProcess = streamFn(
  async function* postProcess(tokens) {
    let word = '';
    const objects = jsonExtractor.open();
    try {
      for await (const token of tokens) {
        await objects.send(token);
        for (const ch of token) {
          if (/\s/.test(ch)) {
            if (word) yield { type: 'word', word };
            word = '';
          } else word += ch;
        }
      }
      if (word) yield { type: 'word', word };
      objects.end();
      for await (const found of objects) yield { type: 'json', ...found };
    } finally {
      await objects.cancel();
    }
  },
  { buffer: 32, idleTimeout: 30_000, maxConcurrent: 200 },
);

export function createApp({ delayMs = 1 } = {}) {
  // Streams are long-lived: closing the server ends them rather than waiting.
  const app = Fastify({ forceCloseConnections: true });
  app.get('/complete', (request, reply) => {
    const stream = postProcess.open();
    const outputs = stream.feed(fakeModel(String(request.query.prompt ?? ''), { delayMs }));
    reply.header('content-type', contentType('sse')).header('cache-control', 'no-cache');
    // A Readable: Fastify streams it with backpressure and destroys it if the
    // client leaves, which cancels the stream.
    return reply.send(toReadable(outputs, 'sse'));
  });
  return app;
}

export async function start(port = 3001, opts) {
  const app = createApp(opts);
  await app.listen({ port, host: '127.0.0.1' });
  const { port: p } = app.server.address();
  return { app, url: `http://127.0.0.1:${p}`, close: () => app.close() };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { url } = await start(Number(process.env.PORT ?? 3001), { delayMs: 30 });
  console.log(`GET ${url}/complete?prompt=hello`);
}
