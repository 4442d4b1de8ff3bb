// The cost of tracing, in instructions (callgrind), for BENCHMARKS.md and docs/tracing.md:
//
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//     node --single-threaded bench/tracing.cjs <workload> <none|context|sdk>
//
// runs a workload of bench/instructions.cjs with: `none`, no OpenTelemetry set up; `context`, only the
// AsyncLocalStorage context manager registered and the workload run inside a context (what an application
// that traces pays with or without velo-stream); `sdk`, the context manager and a tracer provider whose spans go to an exporter that drops them.
// velo-stream's own share is `sdk` minus `context`.
const [workload = 'open', mode = 'none'] = process.argv.slice(2);
if (mode !== 'none') {
  const { context, trace } = require('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  if (mode === 'sdk') {
    const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
    const dropped = { export: (spans, done) => done({ code: 0 }), shutdown: async () => {} };
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(dropped)] }));
  }
}
process.argv = [process.argv[0], require.resolve('./instructions.cjs'), workload];
if (mode === 'none') require('./instructions.cjs');
// Inside a context, as the code of an application that traces runs (a request's): AsyncLocalStorage then
// tracks every promise, whatever velo-stream does.
else require('@opentelemetry/api').context.with(require('@opentelemetry/api').context.active(), () => require('./instructions.cjs'));
