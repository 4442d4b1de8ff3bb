// A stream's state word against the table of its legal combinations (js/core/stream-state.ts): streams driven
// through every documented path, their state checked at each step the test can see and on every turn between,
// and the table itself checked to reject what it must (a planted illegal combination).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SourceStalledError, StreamClosedError, limiter, streamFn, task } from 'velo-stream';
import { FACT_BITS, STATE_BITS, STATE_TABLE, illegalState, stateOf } from '#testing';
import { collect, deferred, echo, settle } from './helpers/util.mjs';

const kWatch = Symbol.for('velo-stream.watch');

function bit(name) {
  const i = STATE_BITS.indexOf(name);
  assert.ok(i >= 0, `no state bit ${name}`);
  return 1 << i;
}

function factBit(name) {
  const i = FACT_BITS.indexOf(name);
  assert.ok(i >= 0, `no fact ${name}`);
  return 1 << i;
}

/** Whether `view` has each named state bit set (`NAME`) or clear (`!NAME`). */
function assertBits(view, names, step) {
  for (const name of names) {
    const clear = name.startsWith('!');
    const set = (view.word & bit(clear ? name.slice(1) : name)) !== 0;
    assert.equal(set, !clear, `${step}: ${name}`);
  }
}

/**
 * Watches streams: every stream of the given functions (listed as they open) and any added by hand, checked at
 * each `step()` and, until `stop()`, on every turn of the event loop between steps.
 */
function watcher(...fns) {
  const lists = fns.map((fn) => fn[kWatch]());
  const streams = new Set();
  const broken = [];
  let checks = 0;
  const check = (step) => {
    for (const list of lists) for (const s of list.streams()) streams.add(s);
    for (const s of streams) {
      const view = stateOf(s);
      assert.ok(view !== undefined, `${step}: a stream of the library's own`);
      checks++;
      const bad = illegalState(view);
      if (bad !== undefined) broken.push(`${step}: ${bad}`);
    }
  };
  let running = true;
  const turn = () => {
    if (!running) return;
    check('a turn between steps');
    setImmediate(turn);
  };
  setImmediate(turn);
  return {
    add(s) {
      streams.add(s);
      return s;
    },
    step(step) {
      check(step);
      assert.deepEqual(broken, [], 'every state legal');
    },
    stop() {
      running = false;
      check('the end');
      assert.deepEqual(broken, [], 'every state legal');
      assert.ok(checks > 0);
      return checks;
    },
  };
}

test('send, recv, end and reading to the end: each step is legal, and the word follows the lifecycle', async () => {
  const fn = streamFn(echo, { buffer: 4 });
  const w = watcher(fn);
  const s = w.add(fn.open());
  w.step('opened');
  assertBits(stateOf(s), ['INPUT_OPEN', '!IN_PENDING', '!HANDLER_DONE', '!INPUT_RELEASED'], 'opened');
  await settle();
  w.step('the handler waits for input');
  await s.send(1);
  w.step('sent one');
  assert.equal(await s.recv(), 1);
  w.step('read one');
  await s.send(2);
  await s.send(3);
  w.step('sent two more');
  s.end();
  w.step('ended');
  assertBits(stateOf(s), ['!INPUT_OPEN', '!IDLE_ON'], 'ended');
  assert.deepEqual(await collect(s), [2, 3]);
  await settle();
  w.step('read to the end');
  assert.equal(s.state, 'done');
  assertBits(stateOf(s), ['HANDLER_DONE', 'OUT_ENDED', 'IN_PENDING', 'OUT_PENDING'], 'done');
  w.stop();
});

test('a full input buffer: parked sends, a paused handler, then drained', async () => {
  const gate = deferred();
  const fn = streamFn(
    async function* (events) {
      await gate.promise;
      for await (const e of events) yield e;
    },
    { buffer: 1 },
  );
  const w = watcher(fn);
  const s = w.add(fn.open());
  const sends = [1, 2, 3, 4].map((e) => s.send(e));
  await settle();
  w.step('sends parked at a full buffer');
  assert.ok((stateOf(s).facts & factBit('SENDERS')) !== 0, 'a send waits');
  assertBits(stateOf(s), ['IN_PENDING'], 'parked');
  gate.resolve();
  const reading = collect(s);
  await Promise.all(sends);
  w.step('every send admitted');
  s.end();
  assert.deepEqual(await reading, [1, 2, 3, 4]);
  await settle();
  w.stop();
});

test('a full output buffer: the handler paused at its yield, resumed by reads', async () => {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) for (let i = 0; i < 5; i++) yield e * 10 + i;
    },
    { buffer: 2 },
  );
  const w = watcher(fn);
  const s = w.add(fn.open());
  await s.send(1);
  await settle();
  w.step('handler paused at a full output');
  assert.ok((stateOf(s).facts & factBit('HANDLER_PAUSED')) !== 0, 'paused at its yield');
  assert.equal(await s.recv(), 10);
  w.step('one read');
  s.end();
  assert.deepEqual(await collect(s), [11, 12, 13, 14]);
  w.stop();
});

test('cancel, with sends and reads waiting: every wait answered, the word closed', async () => {
  const gate = deferred();
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        await gate.promise;
        yield e;
      }
    },
    { buffer: 1 },
  );
  const w = watcher(fn);
  const s = w.add(fn.open());
  await s.send(1);
  await s.send(2);
  const pending = s.send(3);
  const reading = s.recv();
  await settle();
  w.step('a send and a read waiting');
  const done = s.cancel('stop');
  w.step('cancelled');
  assert.equal(s.state, 'cancelled');
  assertBits(stateOf(s), ['IN_PENDING', 'OUT_PENDING', '!IDLE_ON'], 'cancelled');
  await assert.rejects(pending, StreamClosedError);
  await assert.rejects(reading, StreamClosedError);
  gate.resolve();
  await done;
  w.step('the handler finished');
  assertBits(stateOf(s), ['HANDLER_DONE'], 'finished');
  w.stop();
});

test('the idle deadline ends the input: the clock bits clear together', async () => {
  const fn = streamFn(echo, { idleTimeout: 40 });
  const w = watcher(fn);
  const s = w.add(fn.open());
  w.step('opened with an idle clock');
  assertBits(stateOf(s), ['IDLE_ON', 'INPUT_OPEN'], 'opened');
  await s.send(1);
  assert.equal(await s.recv(), 1);
  w.step('one round trip');
  const reading = collect(s);
  await new Promise((resolve) => setTimeout(resolve, 120));
  w.step('idle');
  assert.deepEqual(await reading, []);
  await settle();
  w.step('ended by its deadline');
  assertBits(stateOf(s), ['!IDLE_ON', '!IDLE_HELD', '!IDLE_WATCHED', '!STAMP_DUE', '!INPUT_OPEN', 'HANDLER_DONE'], 'idle end');
  w.stop();
});

test('the handler throws: failed, after the outputs before it', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) {
      if (e === 'boom') throw new Error('boom');
      yield e;
    }
  });
  const w = watcher(fn);
  const s = w.add(fn.open());
  await s.send(1);
  await s.send('boom');
  await settle();
  w.step('thrown');
  assert.ok((stateOf(s).facts & factBit('FAILED')) !== 0);
  assert.equal(await s.recv(), 1);
  await assert.rejects(s.recv(), /boom/);
  await assert.rejects(s.send(2), StreamClosedError);
  w.step('failed and read');
  assertBits(stateOf(s), ['HANDLER_DONE'], 'failed');
  w.stop();
});

test('the handler leaves its loop early: the input released while the handler runs on', async () => {
  const gate = deferred();
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        yield e;
        break;
      }
      await gate.promise;
      yield 'after';
    },
    { buffer: 1 },
  );
  const w = watcher(fn);
  const s = w.add(fn.open());
  await s.send(1);
  assert.equal(await s.recv(), 1);
  await settle();
  w.step('left its loop');
  assertBits(stateOf(s), ['INPUT_RELEASED', 'IN_PENDING', '!HANDLER_DONE'], 'released');
  const late = s.send(2);
  await settle();
  w.step('a send waits for the handler to finish');
  gate.resolve();
  assert.deepEqual(await collect(s), ['after']);
  await assert.rejects(late, StreamClosedError);
  w.stop();
});

test('feed: an array, a sync iterable and a pulled async source (fused, parked between reads)', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e * 2;
  });
  const w = watcher(fn);
  assert.deepEqual(await collect(fn.open().feed([1, 2, 3])), [2, 4, 6]);
  w.step('an array fed');
  assert.deepEqual(await collect(fn.open().feed(new Set([4, 5]))), [8, 10]);
  w.step('a sync iterable fed');
  async function* source() {
    for (let i = 0; i < 20; i++) {
      yield i;
      if (i % 5 === 0) await settle(1);
    }
  }
  const s = fn.open();
  const out = [];
  for await (const v of s.feed(source())) {
    out.push(v);
    if (v === 4) w.step('reading a pulled source');
    if (v % 7 === 0) await settle(1);
  }
  assert.equal(out.length, 20);
  w.step('a pulled source read to its end');
  const slow = w.add(fn.open());
  const it = slow.feed(source())[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 0, done: false });
  w.step('a fused read taken, the handler parked');
  assertBits(stateOf(slow), ['FUSED'], 'a pulled source, one reader');
  await settle(3);
  w.step('its reader slow: it runs ahead again');
  assertBits(stateOf(slow), ['!PARKED', '!FUSED'], 'unfused after a turn');
  await it.return();
  w.stop();
});

test('a stalled fed source: closed at the idle deadline, the stream fails after its outputs', async () => {
  const fn = streamFn(echo, { idleTimeout: 40 });
  // A task stage's body takes its input in batches: its source is read by a sender loop, not pulled.
  const stage = task((x) => x, { idleTimeout: 40 });
  const w = watcher(fn, stage);
  async function* stalls() {
    yield 1;
    await new Promise(() => {});
  }
  for (const pulled of [true, false]) {
    const s = w.add((pulled ? fn : stage).open());
    const outputs = s.feed(stalls());
    const out = [];
    await assert.rejects(
      (async () => {
        for await (const v of outputs) {
          out.push(v);
          w.step('an output of a source that then stalls');
        }
      })(),
      SourceStalledError,
    );
    assert.deepEqual(out, [1]);
    await settle();
    w.step('stalled');
    assertBits(stateOf(s), ['!IDLE_ON', '!PULL_HELD', '!INPUT_OPEN'], 'stalled');
  }
  w.stop();
});

test('a sender loop of an async source (a task stage), with sends beside it', async () => {
  const fn = task((x) => x, { buffer: 2, concurrency: 2 });
  const w = watcher(fn);
  const s = w.add(fn.open());
  async function* source() {
    for (let i = 0; i < 20; i++) {
      yield i;
      if (i % 4 === 0) await settle(1);
    }
  }
  const reading = collect(s.feed(source()));
  await settle(1);
  w.step('fed by a sender loop');
  const out = await reading;
  assert.equal(out.length, 20);
  await settle();
  w.step('the source done');
  w.stop();
});

test('pipe: every stage of a three-stage pipe, read in batches and one at a time', async () => {
  const a = streamFn(async function* a(events) {
    for await (const e of events) yield e + 1;
  });
  const b = streamFn(async function* b(events) {
    for await (const e of events) yield e * 2;
  });
  const c = streamFn(
    async function* c(events) {
      for await (const e of events) yield e - 1;
    },
    { buffer: 2 },
  );
  const w = watcher(a, b, c);
  const p = a.pipe(b).pipe(c);
  const values = Array.from({ length: 50 }, (_, i) => i);
  assert.deepEqual(
    await p.run(values),
    values.map((v) => (v + 1) * 2 - 1),
  );
  w.step('run through the pipe');
  const s = p.open();
  await s.send(1);
  w.step('one sent into the pipe');
  assert.equal(await s.recv(), 3);
  w.step('one read from the pipe');
  await s.cancel();
  await settle();
  w.step('the pipe cancelled');
  w.stop();
});

test('limits: refusals at maxConcurrent, and streams of run()', async () => {
  const fn = streamFn(echo, { maxConcurrent: 1 });
  const w = watcher(fn);
  const s = w.add(fn.open());
  assert.throws(() => fn.open(), { code: 'ERR_VELO_STREAM_LIMIT' });
  w.step('at the limit');
  s.end();
  await collect(s);
  assert.deepEqual(await fn.run([1, 2, 3]), [1, 2, 3]);
  w.step('run() after the slot was freed');
  w.stop();
});

test('admission: a stream waits for a limiter permit, a read holding it meanwhile', async () => {
  const l = limiter({ concurrency: 1 });
  const fn = streamFn(echo, { limiter: l, idleTimeout: 10_000 });
  const w = watcher(fn);
  const first = w.add(fn.open());
  await first.send(1);
  assert.equal(await first.recv(), 1);
  const second = w.add(fn.open());
  const reading = second.recv();
  await settle();
  w.step('the second waits for a permit, read');
  assertBits(stateOf(second), ['WAITING_ADMISSION', 'ADMISSION_HELD', 'ADMITTING'], 'waiting for admission');
  await second.send(2);
  first.end();
  await collect(first);
  assert.equal(await reading, 2);
  w.step('admitted');
  assertBits(stateOf(second), ['!WAITING_ADMISSION', '!ADMISSION_HELD', '!ADMITTING'], 'admitted');
  second.end();
  await collect(second);
  w.stop();
});

test('a task stage (a body, not a generator): timers and ordered outputs', async () => {
  const fn = task(
    async (x) => {
      await new Promise((resolve) => setTimeout(resolve, x % 3));
      return x * 2;
    },
    { concurrency: 3, retry: { attempts: 2, delay: 1 } },
  );
  const w = watcher(fn);
  const s = w.add(fn.open());
  const reading = collect(s);
  for (let i = 0; i < 10; i++) await s.send(i);
  w.step('sent into a task stage');
  s.end();
  assert.deepEqual(
    await reading,
    Array.from({ length: 10 }, (_, i) => i * 2),
  );
  w.step('a task stage done');
  w.stop();
});

// ----- the test of the test -----

/** A state that meets `rule`'s condition and breaks it. */
function breaking(rule) {
  let word = rule.if;
  let facts = rule.ifFacts ?? 0;
  if ((rule.all ?? 0) & ~word) word &= ~rule.all;
  else if ((rule.allFacts ?? 0) & ~facts) facts &= ~rule.allFacts;
  else if (rule.none) word |= rule.none & -rule.none;
  else if (rule.noneFacts) facts |= rule.noneFacts & -rule.noneFacts;
  else if (rule.any !== undefined) word &= ~rule.any;
  return { word, facts };
}

test('the table rejects a planted illegal combination, for every row, and names the row', () => {
  assert.ok(STATE_TABLE.length >= 20);
  for (const rule of STATE_TABLE) {
    const planted = breaking(rule);
    const bad = illegalState(planted, [rule]);
    assert.ok(bad !== undefined, `planted against "${rule.why}"`);
    assert.ok(bad.includes(rule.why), bad);
    assert.notEqual(illegalState(planted), undefined, `the whole table rejects what "${rule.why}" forbids`);
  }
});

test('a real stream with one bit planted wrong is rejected; as it is, it passes', async () => {
  const fn = streamFn(echo, { idleTimeout: 10_000 });
  const s = fn.open();
  await s.send(1);
  const view = stateOf(s);
  assert.equal(illegalState(view), undefined);
  // Its idle clock "off" while the stream is still held for it.
  const planted = { word: view.word & ~bit('IDLE_ON'), facts: view.facts };
  assert.match(illegalState(planted), /held for its deadline only while it has one/);
  // An ended input "open" again.
  const reopened = { word: view.word | bit('IN_ENDED') | bit('IN_PENDING'), facts: view.facts };
  assert.match(illegalState(reopened), /an ended input/);
  // Cancelled in the core, not in the stream.
  const phase = { word: view.word, facts: (view.facts & ~factBit('PHASE_OPEN')) | factBit('PHASE_CANCELLED') };
  assert.match(illegalState(phase), /only by the cancel this stream made/);
  await s.cancel();
  assert.equal(stateOf({}), undefined, 'only the library streams have a state word');
});

test('the word fits a small integer: thirty named bits, each once', () => {
  assert.equal(STATE_BITS.length, 30);
  assert.equal(new Set(STATE_BITS).size, STATE_BITS.length);
  assert.equal(new Set(FACT_BITS).size, FACT_BITS.length);
  const all = STATE_TABLE.reduce((m, r) => m | r.if | (r.all ?? 0) | (r.none ?? 0) | (r.any ?? 0), 0);
  assert.ok(all < 2 ** 30, 'no row names a bit past 29');
});
