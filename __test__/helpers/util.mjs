// Small helpers shared by the tests.
import { setImmediate as immediate } from 'node:timers/promises';

/** Lets every pending promise job and one turn of the event loop run. */
export async function settle(turns = 3) {
  for (let i = 0; i < turns; i++) await immediate();
}

/** A promise with its resolver, for handlers that must wait on the test. */
export function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Whether a promise has settled (after letting jobs run). */
export async function isSettled(promise) {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await settle();
  return done;
}

/** Collects every output of an async iterable. */
export async function collect(iterable) {
  const out = [];
  for await (const v of iterable) out.push(v);
  return out;
}

/** An async generator handler that echoes each event. */
export async function* echo(events) {
  for await (const e of events) yield e;
}

/** Records unhandled rejections while `fn` runs, and a few turns after. */
export async function unhandledDuring(fn) {
  const seen = [];
  const onUnhandled = (reason) => seen.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    await fn();
    await settle(5);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  return seen;
}
