// workerFn at the edges of delivery: reads waiting for transferred buffers
// keep the process alive and the stream held; several next() calls pending on
// a handler's input; outputs and events before a clone failure still arrive;
// ctx.signal.reason after cancel(reason); SharedArrayBuffers shared; abandoned
// pipes with a worker stage first are collected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { StreamLimitError, streamFn, workerFn } from 'velo-stream';
import { pairs } from './fixtures/worker-handlers.mjs';
import { run } from './helpers/child.mjs';

const HANDLERS = new URL('./fixtures/worker-handlers.mjs', import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const handlers = (name, config = {}) => workerFn(HANDLERS, { export: name, threads: 2, ...config });

/** Messages on a fresh BroadcastChannel; `next(pred)` waits for one that matches. */
function channel() {
  const name = `velo-test-${Math.random()}`;
  const bc = new BroadcastChannel(name);
  const seen = [];
  const waiters = [];
  bc.onmessage = ({ data }) => {
    seen.push(data);
    for (const w of [...waiters]) if (w.pred(data)) waiters.splice(waiters.indexOf(w), 1) && w.resolve(data);
  };
  return {
    name,
    next(pred = () => true) {
      const found = seen.find(pred);
      if (found) {
        seen.splice(seen.indexOf(found), 1);
        return Promise.resolve(found);
      }
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
    close: () => bc.close(),
  };
}

/** Outputs read one at a time until the stream ends or fails: `{ outputs, error }`. */
async function readAll(stream) {
  const outputs = [];
  try {
    for await (const v of stream) outputs.push(v);
  } catch (error) {
    return { outputs, error };
  }
  return { outputs, error: undefined };
}

test('transfer: true: reads waiting for transferred output buffers keep the process alive until they arrive (child processes)', async () => {
  const script = `
    import { workerFn } from 'velo-stream';
    const fn = workerFn(new URL(${JSON.stringify(HANDLERS.href)}), { export: 'bigOut', threads: 2, transfer: true });
    const runs = await Promise.all(Array.from({ length: 200 }, (_, k) => fn.run([k % 250, 1, 2])));
    let ok = 0;
    for (const [k, out] of runs.entries())
      if (out.length === 3 && out[0].length === 65536 && out[0][0] === k % 250 && out[2][65535] === 2) ok++;
    console.log('done', ok);
  `;
  for (let i = 0; i < 8; i++) {
    const { stdout } = await run(['--input-type=module', '-e', script], { cwd: ROOT, timeout: 60_000 });
    assert.equal(stdout.trim(), 'done 200', `child ${i}`);
  }
});

/** Settles as `promise` does, or fails once it made no progress for `ms` (a stall: something waits forever). */
function orStall(promise, ms, what) {
  let timer;
  const stall = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no progress for ${ms} ms`)), ms)));
  return Promise.race([promise, stall]).finally(() => clearTimeout(timer));
}

test(
  'transfer: true: streams referenced only by their pending reads get every output across forced GCs',
  { skip: typeof globalThis.gc !== 'function' && 'needs --expose-gc' },
  async () => {
    const fn = handlers('bigOut', { transfer: true, idleTimeout: 0 });
    const gcs = setInterval(() => globalThis.gc(), 1);
    try {
      for (let round = 0; round < 6; round++) {
        // Nothing but the pending reads holds the streams (`recv` one at a time, or iteration).
        const counts = await orStall(
          Promise.all(
            Array.from({ length: 20 }, async (_, k) => {
              let n = 0;
              if (round % 2 === 0) {
                const s = fn.open();
                for (let i = 0; i < 4; i++) void s.send(k);
                s.end();
                for (let i = 0; i < 4; i++) {
                  const b = await s.recv();
                  assert.equal(b[0], k);
                  n++;
                }
              } else {
                for await (const b of fn.open().feed([k, k, k, k])) {
                  assert.equal(b.length, 65536);
                  n++;
                }
              }
              return n;
            }),
          ),
          10_000,
          `round ${round}`,
        );
        assert.equal(
          counts.reduce((a, b) => a + b, 0),
          80,
        );
      }
    } finally {
      clearInterval(gcs);
      await fn.close();
    }
  },
);

test('a handler with two next() calls pending on its input gets both, as in-process', { timeout: 30_000 }, async () => {
  const inProcess = streamFn(pairs);
  const fn = handlers('pairs');
  for (const input of [[1, 2, 3, 4], [1, 2, 3], []]) {
    const expected = await inProcess.run(input);
    assert.deepEqual(await fn.run(input), expected);
  }
  assert.deepEqual(await fn.run([1, 2, 3, 4]), [
    [1, 2],
    [3, 4],
  ]);
  // Live: the pair's second event comes later, in its own batch.
  const s = fn.open();
  await s.send('a');
  await sleep(20);
  await s.send('b');
  assert.deepEqual(await s.recv(), ['a', 'b']);
  await s.send('c');
  s.end();
  assert.deepEqual(await s.recv(), ['c']);
  await fn.close();
});

test('outputs yielded in the same turn before one the clone format refuses arrive before the DataCloneError', async () => {
  const fn = handlers('thenUncloneable');
  const { outputs, error } = await readAll(fn.open().feed([1]));
  assert.deepEqual(outputs, [11, 12, 13]);
  assert.equal(error?.name, 'DataCloneError');
  await assert.rejects(fn.run([1]), { name: 'DataCloneError' });
  await fn.close();
});

test('events sent before one the clone format refuses reach the handler, in the same batch or already in transit', async () => {
  const fn = handlers('echo');
  // Same batch.
  const s = fn.open();
  void s.send(1);
  void s.send({ two: 2 });
  void s.send(() => 3).catch(() => {});
  const same = await readAll(s);
  assert.deepEqual(same.outputs, [1, { two: 2 }]);
  assert.equal(same.error?.name, 'DataCloneError');

  // Earlier batches still in the lane while the handler is busy.
  const slow = handlers('slowEcho');
  const t = slow.open();
  await t.send(30);
  await t.send(2);
  await t.send(3);
  void t.send(Symbol('no')).catch(() => {});
  const transit = await readAll(t);
  assert.deepEqual(transit.outputs, [30, 2, 3]);
  assert.equal(transit.error?.name, 'DataCloneError');
  await Promise.all([fn.close(), slow.close()]);
});

test("cancel(reason): the worker handler's ctx.signal.reason is the reason, cloned (an error rebuilt with its class and code; an uncloneable reason as a documented Error)", async () => {
  const fn = handlers('reason');
  class Quota extends Error {
    code = 'E_QUOTA';
  }
  const cases = [
    ['bye', (m) => assert.equal(m.value, 'bye')],
    [{ why: [1, 2] }, (m) => assert.deepEqual(m.value, { why: [1, 2] })],
    [
      new RangeError('too far'),
      (m) => assert.deepEqual([m.className, m.message], ['RangeError', 'too far']),
    ],
    [
      new Quota('over'),
      (m) => assert.deepEqual([m.className, m.name, m.message, m.code], ['Error', 'Quota', 'over', 'E_QUOTA']),
    ],
    [
      () => 'a function',
      (m) => {
        assert.equal(m.className, 'Error');
        assert.match(m.message, /cancelled with a reason the structured clone algorithm refuses/);
      },
    ],
    [undefined, (m) => assert.deepEqual([m.className, m.name], ['DOMException', 'AbortError'])],
    // Hostile reasons: what can be read crosses; cancel() still resolves (it threw, or crashed the process from
    // an aborted signal's listener, before).
    [
      (() => {
        const { proxy, revoke } = Proxy.revocable({}, {});
        revoke();
        return proxy;
      })(),
      (m) => assert.match(m.message, /cancelled with a reason the structured clone algorithm refuses \(a revoked Proxy\)/),
    ],
    [
      Object.defineProperty(new Error('unread'), 'message', {
        get() {
          throw new Error('message getter');
        },
      }),
      (m) => assert.deepEqual([m.className, m.message], ['Error', 'an error whose message cannot be read']),
    ],
    [
      Object.defineProperty(new TypeError('kept'), 'stack', {
        get() {
          throw new Error('stack getter');
        },
      }),
      (m) => assert.deepEqual([m.className, m.message], ['TypeError', 'kept']),
    ],
  ];
  for (const [reason, check] of cases) {
    const ch = channel();
    const s = fn.open();
    await s.send(ch.name);
    assert.equal(await s.recv(), 'ready');
    await s.cancel(reason);
    check(await ch.next((m) => !m.finally));
    assert.deepEqual(await ch.next((m) => m.finally), { finally: true, aborted: true }, "the signal aborted before the handler's finally ran");
    ch.close();
  }
  // The same reasons through an AbortSignal given at open.
  for (const [reason] of cases.slice(-3)) {
    const ch = channel();
    const controller = new AbortController();
    const s = fn.open({ signal: controller.signal });
    await s.send(ch.name);
    assert.equal(await s.recv(), 'ready');
    controller.abort(reason);
    assert.deepEqual(await ch.next((m) => m.finally), { finally: true, aborted: true });
    await assert.rejects(s.recv(), { code: 'ERR_VELO_STREAM_CLOSED' });
    ch.close();
  }
  await fn.close();
});

test('a handler that leaves its input early and yields later (after a timer) still delivers, and its stream completes', { timeout: 30_000 }, async () => {
  const fn = handlers('leaveThenYield');
  assert.deepEqual(await fn.run([1, 2, 3]), [{ first: 1 }]);
  const s = fn.open();
  await s.send('a');
  assert.deepEqual(await s.recv(), { first: 'a' });
  // Its end may come in a later batch than its output (the worker thread's timing): read to it.
  await assert.rejects(s.recv(), { code: 'ERR_VELO_STREAM_CLOSED' });
  assert.equal(s.state, 'done');
  await fn.close();
});

test('SharedArrayBuffers: a view over one is shared both ways (as postMessage shares it); a bare one is refused with a coded DataCloneError', async () => {
  const fn = handlers('sabWriter');
  const sab = new SharedArrayBuffer(16);
  const view = new Int32Array(sab);
  if (typeof process.versions.bun === 'string') {
    // Bun's node:v8 has no Serializer: the memory cannot be shared, and a view over it is refused (docs/runtimes.md).
    const unsupported = { name: 'DataCloneError', code: 'ERR_VELO_RUNTIME_UNSUPPORTED' };
    await assert.rejects(fn.run([view]), unsupported);
    await assert.rejects(fn.run([{ nested: Buffer.from(new SharedArrayBuffer(8), 2, 4) }]), unsupported);
    assert.equal(view[0], 0, 'the handler never saw it');
  } else {
    const [out] = await fn.run([view]);
    assert.equal(out.shared, true);
    assert.equal(view[0], 42, "the worker's write is seen");
    assert.ok(out.view instanceof Int32Array);
    assert.ok(out.view.buffer instanceof SharedArrayBuffer);
    out.view[1] = 7;
    assert.equal(view[1], 7, 'the view that came back is over the same memory');

    const buf = Buffer.from(new SharedArrayBuffer(8), 2, 4);
    const [back] = await fn.run([buf]);
    assert.ok(Buffer.isBuffer(back.view));
    assert.equal(buf[0], 42);
    assert.equal(back.view.byteOffset, 2);
  }

  const echo = handlers('echo');
  await assert.rejects(echo.run([new SharedArrayBuffer(4)]), { name: 'DataCloneError', code: 'ERR_VELO_SHARED_ARRAY_BUFFER' });
  await assert.rejects(echo.run([{ nested: new SharedArrayBuffer(4) }]), { code: 'ERR_VELO_SHARED_ARRAY_BUFFER' });
  await Promise.all([fn.close(), echo.close()]);
});

test(
  'an abandoned pipe whose workerFn stage comes first is collected and cancelled, as one whose workerFn stage comes last',
  { skip: typeof globalThis.gc !== 'function' && 'needs --expose-gc' },
  async () => {
    const pass = async function* (events) {
      for await (const e of events) yield e;
    };
    for (const order of ['worker|gen', 'gen|worker']) {
      const w = handlers('echo', { idleTimeout: 0, maxConcurrent: 200 });
      const g = streamFn(pass, { idleTimeout: 0, maxConcurrent: 200 });
      const p = order === 'worker|gen' ? w.pipe(g) : g.pipe(w);
      for (let round = 0; round < 10; round++) {
        for (let i = 0; i < 100; i++) {
          try {
            p.open();
          } catch (error) {
            assert.fail(`${order}: round ${round}: ${error instanceof StreamLimitError ? 'maxConcurrent exhausted' : error}`);
          }
        }
        // (A held worker stage is let go once it is found waiting for input never sent: checked every 250 ms.)
        for (let waited = 0; p.stats().open > 0; waited += 20) {
          if (waited > 20_000) assert.fail(`${order}: round ${round}: no progress for 20 s: ${JSON.stringify(p.stats())}`);
          globalThis.gc();
          await sleep(20);
        }
      }
      const stats = p.stats();
      assert.equal(stats.opened, 1000, order);
      assert.ok(stats.cancelled >= 990, `${order}: ${JSON.stringify(stats)}`);
      await w.close();
    }
  },
);
