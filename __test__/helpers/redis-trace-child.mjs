// A traced worker process for redis-tracing.test.mjs. Args: url name leaseTtl idleTimeout. Registers its own
// tracer provider (unless `TRACE=0` in the environment) and context manager (unless `TRACE_CM=0`), whose exporter prints each finished span as a line
// `span <json>` on stdout (names, ids, parent, links, attributes). The handler starts a span `handle <n>` at each
// event and `after <n>` after an await, and yields n. Otherwise the protocol of redis-worker-child.mjs.
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { createClient } from 'redis';
import { redisWorker } from 'velo-stream/redis';
import { streamFn } from '../../index.mjs';
import { serveChildProtocol } from './redis-fixtures.mjs';

const [url, name, leaseTtl, idleTimeout] = process.argv.slice(2);

/** A finished span as JSON. */
export function spanJson(s) {
  return {
    name: s.name,
    traceId: s.spanContext().traceId,
    spanId: s.spanContext().spanId,
    parent: s.parentSpanContext?.spanId,
    parentTrace: s.parentSpanContext?.traceId,
    links: s.links.map((l) => ({ traceId: l.context.traceId, spanId: l.context.spanId })),
    attributes: s.attributes,
  };
}

if (process.env.TRACE !== '0') {
  const exporter = {
    export(spans, done) {
      for (const s of spans) console.log(`span ${JSON.stringify(spanJson(s))}`);
      done({ code: 0 });
    },
    shutdown: () => Promise.resolve(),
  };
  // TRACE_CM=0: a provider without a context manager (an application that registered only the provider).
  if (process.env.TRACE_CM !== '0') context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
}
const tracer = trace.getTracer('handler');

const fn = streamFn(
  async function* traced(events) {
    for await (const e of events) {
      tracer.startSpan(`handle ${e.n}`).end();
      await new Promise((resolve) => setTimeout(resolve, 1));
      tracer.startSpan(`after ${e.n}`).end();
      yield e.n;
    }
  },
  { idleTimeout: Number(idleTimeout) },
);

const client = createClient({ url });
client.on('error', () => {});
await client.connect();
const worker = redisWorker(fn, {
  client,
  name,
  partitions: 1,
  leaseTtl: Number(leaseTtl),
  onError: (error) => console.log(`error ${error?.code} ${error?.message}`),
});
serveChildProtocol(worker, client);
