// One 'abort' listener per signal however many streams, readers and waits watch it (`watchAbort`), and the timed wait
// the readers and `drained()` take between polls and retries (`pause`): over at its time or at the first abort of
// its signals, leaving no timer and no listener behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { pause, watchAbort } from '../dist/watch-abort.js';

const listeners = (signal) => getEventListeners(signal, 'abort').length;

test('pause: over after its time, with nothing left on its signals', async () => {
  const a = new AbortController();
  let over = false;
  const wait = pause(20, a.signal, undefined).then(() => (over = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(over, false, 'not over before its time');
  await wait;
  assert.equal(listeners(a.signal), 0);
});

test('pause: over at the first abort of any of its signals, or at once for one aborted before', async () => {
  const a = new AbortController();
  const b = new AbortController();
  let over = false;
  const wait = pause(60_000, a.signal, b.signal).then(() => (over = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(over, false);
  b.abort();
  await wait;
  assert.equal(listeners(a.signal), 0, 'the other signal is left alone');
  const aborted = AbortSignal.abort();
  const c = new AbortController();
  await pause(60_000, c.signal, aborted);
  assert.equal(listeners(c.signal), 0);
  // (Both waits were over long before a timer of a minute: the test would time out otherwise.)
});

test('pause: many waits on one signal share one listener, and leave none', async () => {
  const shared = new AbortController();
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    const waits = Array.from({ length: 30 }, () => pause(60_000, shared.signal));
    assert.equal(listeners(shared.signal), 1);
    shared.abort();
    await Promise.all(waits);
    const short = new AbortController();
    await Promise.all(Array.from({ length: 30 }, () => pause(5, short.signal)));
    assert.equal(listeners(short.signal), 0);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings, []);
  } finally {
    process.off('warning', onWarning);
  }
});

test('watchAbort: the cancel runs once per watcher, with the reason; one removed is not called', () => {
  const c = new AbortController();
  const seen = [];
  watchAbort(c.signal, (reason) => seen.push(['a', reason]));
  const stop = watchAbort(c.signal, () => seen.push(['b']));
  stop();
  c.abort('why');
  assert.deepEqual(seen, [['a', 'why']]);
  assert.equal(listeners(c.signal), 0);
});
