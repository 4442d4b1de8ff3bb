// velo-stream/testing at its edges: a handler that loops at one virtual time ends with ERR_VELO_TEST_STEPS, at
// once and within a small heap (each run in a child process: a loop in promise jobs never gives the test's own
// thread back, and an unbounded one ends the process, so only a child with a deadline and a heap limit can fail
// here rather than hang); Date.now and Math.random are the originals after every way a check ends; hostile options
// and events get coded errors; a wake time past a Date's range is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { checkDeterminism, testWorker } from 'velo-stream/testing';
import { run } from './helpers/child.mjs';

/**
 * Runs `body` (module code with `fn`, `testWorker` and `checkDeterminism` in scope, printing what it found) in a
 * child with a 128 MB heap, within 60 s. Its stdout.
 */
async function child(handler, body) {
  const script = `
    import { streamFn } from 'velo-stream';
    import { checkDeterminism, testWorker } from 'velo-stream/testing';
    const fn = streamFn(${handler}, { idleTimeout: 1000 });
    ${body}
  `;
  const { stdout } = await run(['--max-old-space-size=128', '--input-type=module', '-e', script], { timeout: 60_000 });
  return stdout.trim().split('\n');
}

/** The child's code: each of testWorker's advance(), settle() and a check ends with its code; the stand-ins are gone. */
const PROBE = `
  const realNow = Date.now;
  const realRandom = Math.random;
  const code = (p) => p.then(() => 'resolved', (e) => e.code + ' ' + /at one virtual time/.test(e.message));
  let w = testWorker(fn);
  w.send('k', 1);
  console.log('advance', await code(w.advance(10)));
  console.log('settle', await code(w.settle()));
  await w.close();
  // (What it wrote is let go: the heap bounds each run, not the three together.)
  w = null;
  console.log('check', await code(checkDeterminism(fn, [{ key: 'k', event: 1 }])));
  console.log('restored', Date.now === realNow && Math.random === realRandom);
`;
const EXPECTED = [
  'advance ERR_VELO_TEST_STEPS true',
  'settle ERR_VELO_TEST_STEPS true',
  'check ERR_VELO_TEST_STEPS true',
  'restored true',
];

test('a handler that makes a timer due now on every input, wake-ups included, ends with ERR_VELO_TEST_STEPS (testWorker and checkDeterminism)', async () => {
  const handler = `async function* (events, ctx) {
    for await (const e of events) ctx.wakeAt(ctx.entry.time, { again: true });
  }`;
  assert.deepEqual(await child(handler, PROBE), EXPECTED);
});

test('a handler that yields without end and never awaits its input ends with ERR_VELO_TEST_STEPS within a 128 MB heap', async () => {
  const handler = `async function* () {
    for (;;) yield 1;
  }`;
  assert.deepEqual(await child(handler, PROBE), EXPECTED);
});

test('Date.now and Math.random are the originals after a check that ends by any error', async () => {
  const realNow = Date.now;
  const realRandom = Math.random;
  const start = Date.UTC(2024, 0, 1);
  // A session that never ends within settleWithin: ERR_VELO_TEST_NOT_SETTLED.
  const open = streamFn(
    async function* (events, ctx) {
      for await (const e of events) ctx.wakeAt(e.at + 10_000, 'later');
    },
    { idleTimeout: 100 },
  );
  await assert.rejects(checkDeterminism(open, [{ key: 'a', event: { at: start } }], { settleWithin: 1000 }), {
    code: 'ERR_VELO_TEST_NOT_SETTLED',
  });
  assert.equal(Date.now, realNow);
  assert.equal(Math.random, realRandom);
  // A codec that fails once the run is under way (at its append of the event, after the check's own encode):
  // the check rejects with its error, and the originals are back.
  let encodes = 0;
  const codec = {
    encode: (v) => {
      if (++encodes > 1) throw new Error('encode broke');
      return Buffer.from(JSON.stringify(v));
    },
    decode: (b) => JSON.parse(b.toString()),
  };
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 100 },
  );
  await assert.rejects(checkDeterminism(echo, [{ key: 'a', event: 1 }], { codec }), /encode broke/);
  assert.equal(Date.now, realNow);
  assert.equal(Math.random, realRandom);
});

test('revoked proxies and getters that throw, as options or events: ERR_INVALID_ARG_TYPE naming what could not be read', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  const revoked = () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  };
  const revokedArray = () => {
    const { proxy, revoke } = Proxy.revocable([], {});
    revoke();
    return proxy;
  };
  /** `base` with a getter `name` that throws. */
  const boom = (name, base = {}) =>
    Object.defineProperty(base, name, {
      enumerable: true,
      get() {
        throw new Error('boom');
      },
    });
  const cannot = (name) => ({
    code: 'ERR_INVALID_ARG_TYPE',
    message: new RegExp(`: ${name.replace(/[[\]]/g, '\\$&')} cannot be read \\(a revoked Proxy, or a getter that throws: `),
  });
  for (const options of [revoked(), boom('leaseTtl'), boom('start'), { codec: boom('encode', { decode: () => 1 }) }]) {
    assert.throws(() => testWorker(fn, options), cannot('options'));
    await assert.rejects(checkDeterminism(fn, [], options), cannot('options'));
  }
  await assert.rejects(checkDeterminism(fn, [], boom('settleWithin')), cannot('options'));
  assert.throws(() => testWorker(revoked()), { code: 'ERR_INVALID_ARG_TYPE', message: /fn must be a stream function/ });
  await assert.rejects(checkDeterminism(fn, revokedArray()), cannot('events'));
  await assert.rejects(checkDeterminism(fn, [revoked()]), cannot('events[0]'));
  await assert.rejects(checkDeterminism(fn, [{ key: 'a', event: 1 }, boom('event', { key: 'a' })]), cannot('events[1]'));
  await assert.rejects(checkDeterminism(fn, [boom('at', { key: 'a', event: 1 })]), cannot('events[0]'));
  const trapped = new Proxy([{ key: 'a', event: 1 }], {
    get(target, name) {
      if (name === '0') throw new Error('trap');
      return target[name];
    },
  });
  await assert.rejects(checkDeterminism(fn, trapped), cannot('events[0]'));
});

test('ctx.wakeAt past the largest Date (8.64e15) is refused as a non-finite time is, in the simulator and in-process', async () => {
  const made = [];
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        try {
          ctx.wakeAt(Number(e), 'x');
          made.push([e, 'made']);
        } catch (error) {
          made.push([e, error.code]);
        }
      }
    },
    { idleTimeout: 100 },
  );
  const worker = testWorker(fn);
  // (As strings: JSON has no Infinity.)
  for (const time of ['8640000000000001', '-8640000000000001', 'Infinity', '8640000000000000']) worker.send('k', time);
  await worker.advance(10);
  await worker.close();
  assert.deepEqual(made, [
    ['8640000000000001', 'ERR_INVALID_ARG_TYPE'],
    ['-8640000000000001', 'ERR_INVALID_ARG_TYPE'],
    ['Infinity', 'ERR_INVALID_ARG_TYPE'],
    ['8640000000000000', 'made'],
  ]);
  // In-process (no durable side): the same check, the same code.
  const local = streamFn(async function* (events, ctx) {
    for await (const _ of events) {
      try {
        ctx.wakeAt(8.64e15 + 1, 'x');
      } catch (error) {
        yield [error.code, /within a Date's range/.test(error.message)];
      }
    }
  });
  assert.deepEqual(await local.run([1]), [['ERR_INVALID_ARG_TYPE', true]]);
});

test('ctx.wakeAt options that cannot be read, and a codec whose encode() returns a revoked Proxy, get coded errors', async () => {
  const revoked = () => {
    const p = Proxy.revocable({}, {});
    p.revoke();
    return p.proxy;
  };
  const getterError = new Error('getter broke');
  const hostile = {
    revoked: revoked(),
    getter: {
      get key() {
        throw getterError;
      },
    },
  };
  for (const [name, options] of Object.entries(hostile)) {
    let caught;
    const fn = streamFn(
      async function* (events, ctx) {
        for await (const _ of events) {
          try {
            ctx.wakeAt(ctx.entry.time + 10, 'p', options);
          } catch (error) {
            caught = error;
          }
        }
      },
      { idleTimeout: 1000 },
    );
    const w = testWorker(fn);
    w.send('k', 1);
    await w.settle();
    await w.close();
    assert.equal(caught?.code, 'ERR_INVALID_ARG_TYPE', `${name}: ${caught}`);
    assert.match(caught.message, /ctx\.wakeAt\(\): the "options" argument cannot be read/);
    assert.notEqual(caught.cause, undefined, `${name}: the read's error is the cause`);
    if (name === 'getter') assert.equal(caught.cause, getterError);
  }
  const codec = { encode: () => revoked(), decode: () => 1 };
  const w = testWorker(
    streamFn(async function* (events) {
      for await (const e of events) yield e;
    }),
    { codec },
  );
  assert.throws(() => w.send('k', 1), { code: 'ERR_VELO_ENCODE', message: /revoked Proxy/ });
  await w.close();
});
