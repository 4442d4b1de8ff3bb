// Small helpers shared by the tests.
import assert from 'node:assert/strict';
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

/**
 * Forces full collections until `done()` holds, each from a fresh turn of the
 * event loop (a timer, then immediates: finalizers and the jobs they queue
 * run in between), failing once `rounds` collections did not get there. The
 * promise under test is "eventually collected": Node's collector usually
 * gets there in the first rounds; Bun's (scripts/runtime-shims/bun-gc.mjs) scans
 * the native stack conservatively, so an object a stale stack word still points
 * at goes in a later collection, from another stack. Counts collections, not time.
 */
export async function collectUntil(done, what, rounds = 200) {
  for (let i = 0; !done(); i++) {
    if (i >= rounds) assert.fail(`${what}: not reached after ${rounds} full collections`);
    await new Promise((resolve) => setTimeout(resolve, i < 10 ? 0 : 10));
    globalThis.gc();
    await settle(2);
  }
}

/**
 * An async source (an iterator of its own, not a generator) counting what was asked (`asked`) and closed
 * (`return()` calls, `closed`): it gives `value(i)` for i < `count`, then does `then` at its next `next()`:
 * 'end', 'hang' (never settles), 'throw' (throws synchronously), 'reject' or 'bad' (answers a non-object).
 * Once closed it answers done.
 */
export function countedSource(count, { then = 'end', value = (i) => i } = {}) {
  const state = { asked: 0, closed: 0, error: new Error(`source: ${then}`) };
  const it = {
    next() {
      if (state.closed > 0) return Promise.resolve({ value: undefined, done: true });
      const i = state.asked++;
      if (i < count) return Promise.resolve({ value: value(i), done: false });
      if (then === 'hang') return new Promise(() => {});
      if (then === 'throw') throw state.error;
      if (then === 'reject') return Promise.reject(state.error);
      if (then === 'bad') return Promise.resolve(42);
      return Promise.resolve({ value: undefined, done: true });
    },
    return() {
      state.closed++;
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
  return { source: it, state };
}

/**
 * Runs `body(seen)` with the process warnings of `code` (every warning for `'*'`) collected in `seen` instead of printed (the test output
 * stays clean); other warnings print as usual. Returns `seen`.
 */
export async function warningsOf(code, body) {
  const printers = process.listeners('warning');
  process.removeAllListeners('warning');
  const seen = [];
  const listener = (warning) => {
    if (code === '*' || warning.code === code) seen.push(warning);
    else for (const print of printers) print(warning);
  };
  process.on('warning', listener);
  try {
    await body(seen);
    // (A warning is emitted on the next tick: let those of the body's last reports come in.)
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
    for (const print of printers) process.on('warning', print);
  }
  return seen;
}
