// Idle deadlines and garbage collection. A stream whose idle deadline runs is
// held until the deadline ends it, so a collection never decides how it ends:
// a read waiting on it settles, and its handler finishes (post-loop code and
// `finally` run). Only a stream that can never end (unreferenced, idleTimeout
// 0) is collected. Each test drops its own references and collects garbage
// while it waits. Needs --expose-gc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { streamFn } from 'velo-stream';
import { run } from './helpers/child.mjs';
import { settle } from './helpers/util.mjs';

const IDLE = 100;

/** Collects garbage every few ms until `promise` settles; fails (instead of hanging) if it never does. */
async function collectGarbageUntil(promise, what) {
  let settled = false;
  const watched = promise.finally(() => (settled = true));
  watched.catch(() => {});
  for (let i = 0; !settled; i++) {
    if (i === 1000) assert.fail(`${what}: still pending after the idle deadline and 1000 collections`);
    global.gc();
    await sleep(5);
  }
  return watched;
}

/** A handler that echoes, then records that it finished. */
function tracked() {
  const log = { afterLoop: 0, finally: 0 };
  const fn = streamFn(
    async function* (events) {
      try {
        for await (const e of events) yield e;
        log.afterLoop++;
        yield 'end';
      } finally {
        log.finally++;
      }
    },
    { idleTimeout: IDLE },
  );
  return { fn, log };
}

/** An async source that yields `first`, then never yields again. */
function stalledSource(first, onReturn) {
  return {
    [Symbol.asyncIterator]() {
      let sent = false;
      return {
        next: () => (sent ? new Promise(() => {}) : ((sent = true), Promise.resolve({ value: first, done: false }))),
        return: () => {
          onReturn();
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
}

const readers = {
  'for await': async (fn) => {
    const s = fn.open();
    await s.send(1);
    const out = [];
    for await (const v of s) out.push(v);
    return out;
  },
  'recv()': async (fn) => {
    const s = fn.open();
    await s.send(1);
    const out = [await s.recv(), await s.recv()];
    await assert.rejects(s.recv(), { code: 'ERR_VELO_STREAM_CLOSED' });
    return out;
  },
  // (A stalled source fails the stream: the read settles with SourceStalledError, after the outputs so far.)
  'run() over a stalled source': (fn) =>
    fn.run(stalledSource(1, () => {})).then(
      (out) => out,
      (error) => [1, error.code],
    ),
  'feed() over a stalled source': async (fn) => {
    const out = [];
    try {
      for await (const v of fn.open().feed(stalledSource(1, () => {}))) out.push(v);
    } catch (error) {
      out.push(error.code);
    }
    return out;
  },
  'a pipe, for await': async (fn) => {
    const s = fn.pipe(async function* (events) {
      for await (const e of events) yield e;
    }).open();
    await s.send(1);
    const out = [];
    for await (const v of s) out.push(v);
    return out;
  },
};

for (const [name, read] of Object.entries(readers)) {
  test(`a pending read ends with the idle deadline, however often garbage is collected meanwhile: ${name}`, async () => {
    const { fn, log } = tracked();
    const out = await collectGarbageUntil(read(fn), name);
    if (name.includes('stalled source')) {
      assert.deepEqual(out, [1, 'ERR_VELO_SOURCE_STALLED']);
      assert.deepEqual(log, { afterLoop: 0, finally: 1 });
      assert.equal(fn.stats().failed, 1);
      return;
    }
    assert.deepEqual(out, [1, 'end']);
    assert.deepEqual(log, { afterLoop: 1, finally: 1 });
    assert.equal(fn.stats().completed, 1);
  });
}

test('fire-and-forget streams end by their idle deadline, not by a collection: every handler finishes', async () => {
  const { fn, log } = tracked();
  (() => {
    for (let i = 0; i < 100; i++) void fn.open().send({ i });
  })();
  await settle();
  const done = (async () => {
    while (fn.stats().open > 0) await sleep(10);
  })();
  await collectGarbageUntil(done, 'fire-and-forget streams');
  assert.deepEqual(log, { afterLoop: 100, finally: 100 });
  assert.deepEqual(fn.stats(), { open: 0, opened: 100, completed: 100, failed: 0, cancelled: 0, rejected: 0 });
  // Once ended, they are collected as usual.
  let collected = 0;
  const registry = new FinalizationRegistry(() => collected++);
  (() => {
    for (let i = 0; i < 20; i++) {
      const s = fn.open();
      void s.send(i);
      registry.register(s, i);
    }
  })();
  const gone = (async () => {
    while (collected < 20) await sleep(10);
  })();
  await collectGarbageUntil(gone, 'ended streams');
  const { idleWatched } = await import('#testing');
  assert.equal(idleWatched(), 0, 'no idle watch left behind');
});

test('a stream that can never end (unreferenced, idleTimeout 0) is collected; its finally does not run', async () => {
  let finallyRan = 0;
  const fn = streamFn(
    async function* (events) {
      try {
        for await (const e of events) yield e;
      } finally {
        finallyRan++;
      }
    },
    { idleTimeout: 0 },
  );
  (() => {
    for (let i = 0; i < 50; i++) void fn.open().send({ i });
  })();
  const gone = (async () => {
    while (fn.stats().open > 0) await sleep(10);
  })();
  await collectGarbageUntil(gone, 'unreferenced streams without a deadline');
  assert.equal(fn.stats().cancelled, 50);
  assert.equal(finallyRan, 0);
});

test('a stream whose idle clock is paused by a waiting send stays collectable', async () => {
  // The handler never reads: the send waits for room forever, the clock is
  // paused, so nothing can end the stream; abandoned, it must not leak.
  const fn = streamFn(
    async function* (events) {
      await new Promise(() => {});
      for await (const e of events) yield e;
    },
    { buffer: 1, idleTimeout: IDLE },
  );
  (() => {
    for (let i = 0; i < 20; i++) {
      const s = fn.open();
      void s.send(1);
      void s.send(2);
    }
  })();
  const gone = (async () => {
    while (fn.stats().open > 0) await sleep(10);
  })();
  await collectGarbageUntil(gone, 'streams paused by a waiting send');
  assert.equal(fn.stats().cancelled, 20);
  const { idleWatched } = await import('#testing');
  assert.equal(idleWatched(), 0);
});

test('the script from the bug report: a read pending over a GC ends, and the process exits by itself', async () => {
  const script = `
    const { streamFn } = require('velo-stream');
    const echo = streamFn(async function* (events) { for await (const e of events) yield e; }, { idleTimeout: 200 });
    (async () => {
      const s = echo.open();
      await s.send(1);
      setTimeout(() => global.gc(), 50).unref();
      for await (const r of s) console.log('got', r);
      console.log('loop ended');
    })();`;
  const { stdout, stderr } = await run(['--expose-gc', '-e', script], { timeout: 20_000 });
  assert.equal(stderr, '');
  assert.equal(stdout, 'got 1\nloop ended\n');
});

// A stream is put in the thread's idle maps only on the turn after its open
// (js/addon/addon.ts, `watchIdleLater`): most streams end within that turn.
test('a stream whose idle deadline passes within the turn that opened it still idles out', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 1 },
  );
  // Opened in a timer's turn: the notifier's report (poll phase) then comes before that turn's immediates.
  await sleep(10);
  const s = fn.open();
  const start = performance.now();
  while (performance.now() - start < 30); // the deadline passes, and is reported, before the next turn
  const outcome = await Promise.race([
    (async () => {
      for await (const _ of s);
      return 'ended';
    })(),
    sleep(5000, 'still open'),
  ]);
  if (outcome !== 'ended') await s.cancel(); // (so that the failing run ends)
  assert.equal(outcome, 'ended');
  assert.equal(s.state, 'done');
});

test('streams opened and finished in one run that never yields to the event loop are not all held until it does', async () => {
  const { idleWatched } = await import('#testing');
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  let most = 0;
  for (let i = 0; i < 2000; i++) {
    const s = fn.open();
    await s.send(i);
    s.end();
    for await (const _ of s);
    most = Math.max(most, idleWatched());
  }
  assert.ok(most <= 257, `at most 257 watched at once (saw ${most})`);
  await settle();
  assert.equal(idleWatched(), 0);
});
