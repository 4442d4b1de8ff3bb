// The contract's handlers, the same for every kind of stream: loaded on the main thread for generator
// stages and on worker threads by workerFn. A failing event is `{ fail: true }`; the error has code E_CONTRACT.
export async function* echo(events) {
  for await (const e of events) {
    if (e !== null && typeof e === 'object' && e.fail === true)
      throw Object.assign(new Error('contract failure'), { code: 'E_CONTRACT' });
    yield e;
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
