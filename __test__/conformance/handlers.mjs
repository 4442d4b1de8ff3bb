// The contract's handlers, the same for every kind of stream: loaded on the main thread for generator
// stages and on worker threads by workerFn. A failing event is `{ fail: true }`; the error has code E_CONTRACT.
import { isMainThread } from 'node:worker_threads';
import { context, trace } from '@opentelemetry/api';

// The tracing contract (tracing.test.mjs) reads the active span where the user's function runs. A worker
// thread sees its caller's span only through a context manager of its own, which a worker's module registers
// (docs/tracing.md): this one does when the contract asks for it.
if (!isMainThread && process.env.VELO_CONFORMANCE_TRACING === '1') {
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
}
export async function* echo(events) {
  for await (const e of events) {
    if (e !== null && typeof e === 'object' && e.fail === true)
      throw Object.assign(new Error('contract failure'), { code: 'E_CONTRACT' });
    yield made(e);
  }
}

/**
 * The output for an event: the event itself, or for `{ make }` a hostile value made where the handler runs
 * (a worker's own thread included): a revoked proxy, or a thenable whose `then` throws, or resolves twice, or
 * resolves and then throws; for `{ make: 'span' }`, the id of the span active where it runs.
 */
export function made(e) {
  switch (e !== null && typeof e === 'object' ? e.make : undefined) {
    case 'revoked': {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return proxy;
    }
    case 'then throws':
      return {
        then() {
          throw Object.assign(new Error('then threw'), { code: 'E_THEN' });
        },
      };
    case 'then twice':
      return {
        then(resolve) {
          resolve({ i: 'first' });
          resolve({ i: 'second' });
        },
      };
    case 'then resolves, throws':
      return {
        then(resolve) {
          resolve({ i: 'resolved' });
          throw new Error('after resolve');
        },
      };
    case 'span':
      // Where the function runs in the trace: the id of the active span (null when none).
      return { span: trace.getActiveSpan()?.spanContext().spanId ?? null };
    default:
      return e;
  }
}

/** Two next() calls pending at once on its input, each pair yielded as [a, b]: the worker tests' handler. */
export { pairs } from '../fixtures/worker-handlers.mjs';

/** Leaves its input loop after one event, yields it, then takes 300 ms (a timer) to clean up before it returns. */
export async function* leaveAfterOne(events) {
  for await (const e of events) {
    yield e;
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
}
