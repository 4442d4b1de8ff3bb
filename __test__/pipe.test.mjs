// pipe(): stages linked by bounded buffers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamLimitError, batch, streamFn, task } from 'velo-stream';
import { collect, deferred, settle } from './helpers/util.mjs';

const add = (k) =>
  streamFn(
    async function* add(events) {
      for await (const e of events) yield e + k;
    },
    { name: `add${k}`, buffer: 4 },
  );

test('a.pipe(b).pipe(c) runs each event through every stage in order', async () => {
  const p = add(1)
    .pipe(add(10))
    .pipe(async function* times2(events) {
      for await (const e of events) yield e * 2;
    });
  assert.equal(p.name, 'add1|add10|times2');
  const input = Array.from({ length: 1000 }, (_, i) => i);
  assert.deepEqual(
    await p.run(input),
    input.map((e) => (e + 11) * 2),
  );
  const s = p.open();
  await s.send(5);
  assert.equal(await s.recv(), 32);
  s.end();
  assert.deepEqual(await collect(s), []);
  assert.equal(s.state, 'done');
  await settle(); // a pipe's own counters follow its stages' endings by a few jobs
  assert.deepEqual(p.stats(), { open: 0, opened: 2, completed: 2, failed: 0, cancelled: 0, rejected: 0 });
});

test('one instance per stage per stream; end() flows down so every stage finishes', async () => {
  const log = [];
  const stage = (name) =>
    streamFn(
      async function* (events, ctx) {
        log.push(`${name} open ${ctx.id}`);
        let n = 0;
        for await (const e of events) {
          n++;
          yield e;
        }
        log.push(`${name} end`);
        yield `${name}:${n}`;
      },
      { name },
    );
  const p = stage('a').pipe(stage('b'));
  const out = await p.run([1, 2]);
  assert.deepEqual(out, [1, 2, 'a:2', 'b:3']);
  assert.equal(log.filter((l) => l.startsWith('a open')).length, 1);
  assert.equal(log.filter((l) => l.startsWith('b open')).length, 1);
  assert.deepEqual(
    log.filter((l) => l.endsWith('end')),
    ['a end', 'b end'],
  );
});

test('backpressure holds end to end: a stalled consumer stops the first stage', async () => {
  let produced = 0;
  const src = streamFn(
    async function* () {
      for (;;) yield ++produced;
    },
    { buffer: 4 },
  );
  const p = src.pipe(add(0)).pipe(add(0));
  const s = p.open();
  await settle(20);
  // 3 stages x (4 in + 4 out) plus one paused value per stage and the links' batches
  assert.ok(produced <= 40, `first stage ran ${produced} ahead`);
  const first = await s.recv();
  assert.equal(first, 1);
  await s.cancel();
});

// A stage that passes events on and throws on event 3 when it is stage `failAt`.
const failing = (i, failAt, boom, finals) =>
  streamFn(
    async function* (events) {
      try {
        for await (const e of events) {
          if (i === failAt && e === 3) throw boom;
          yield e;
        }
      } finally {
        finals.push(i);
      }
    },
    { name: `s${i}` },
  );

test('a stage error: every output made before it arrives in order, then the error (run, recv, iteration, feed)', async () => {
  for (const failAt of [0, 1, 2]) {
    for (const mode of ['run', 'recv', 'iterate', 'feed']) {
      const label = `stage ${failAt} fails, read by ${mode}`;
      const boom = new Error(label);
      const finals = [];
      const p = failing(0, failAt, boom, finals)
        .pipe(failing(1, failAt, boom, finals))
        .pipe(failing(2, failAt, boom, finals));
      if (mode === 'run') {
        await assert.rejects(p.run([1, 2, 3, 4, 5]), (e) => e === boom, label);
      } else {
        const s = p.open();
        const got = [];
        let error;
        try {
          if (mode === 'feed') {
            for await (const v of s.feed([1, 2, 3, 4, 5])) got.push(v);
          } else {
            for (const e of [1, 2, 3, 4, 5]) s.send(e).catch(() => {});
            s.end();
            if (mode === 'iterate') for await (const v of s) got.push(v);
            else for (;;) got.push(await s.recv());
          }
        } catch (e) {
          error = e;
        }
        assert.equal(error, boom, label);
        assert.deepEqual(got, [1, 2], label);
        assert.equal(s.state, 'failed', label);
        await s.cancel(); // resolves once every stage has finished; the error stays the pipe's
        assert.equal(s.state, 'failed', label);
      }
      assert.deepEqual(finals.sort(), [0, 1, 2], `${label}: every stage finished`);
      assert.deepEqual(p.stats(), { open: 0, opened: 1, completed: 0, failed: 1, cancelled: 0, rejected: 0 }, label);
    }
  }
});

test('a stage error reaches a pending read, after the outputs before it, with references dropped and garbage collected during the wait', async () => {
  const boom = new Error('late');
  // Only the read's promise leaves this scope.
  const reading = (() => {
    const fails = async function* fails(events) {
      for await (const e of events) {
        if (e === 3) throw boom;
        yield e;
      }
    };
    // The last stage is slow: 1 and 2 are still on their way when the middle stage fails.
    const slow = async function* slow(events) {
      for await (const e of events) {
        await new Promise((r) => setTimeout(r, 20));
        yield e;
      }
    };
    const s = add(0).pipe(fails).pipe(slow).open();
    for (const e of [1, 2, 3]) s.send(e).catch(() => {});
    s.end();
    return (async () => {
      const got = [];
      try {
        for await (const v of s) got.push(v);
      } catch (error) {
        return { got, error };
      }
      return { got };
    })();
  })();
  for (let i = 0; i < 8; i++) {
    global.gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  const { got, error } = await reading;
  assert.deepEqual(got, [1, 2]);
  assert.equal(error, boom);
});

test('a stage error stops the stages before it; the stages after it finish what it yielded before', async () => {
  const boom = new Error('middle');
  const log = [];
  const source = streamFn(
    async function* source() {
      let n = 0;
      try {
        for (;;) yield ++n; // endless: only backpressure and cancellation stop it
      } finally {
        log.push('source stopped');
      }
    },
    { buffer: 4 },
  );
  const middle = streamFn(
    async function* middle(events) {
      for await (const e of events) {
        if (e === 3) throw boom;
        yield e;
      }
    },
    { buffer: 4 },
  );
  const total = streamFn(
    async function* total(events) {
      let sum = 0;
      for await (const e of events) {
        sum += e;
        yield e;
      }
      yield `sum ${sum}`; // runs: its input ended after what the failed stage yielded
    },
    { buffer: 4 },
  );
  const s = source.pipe(middle).pipe(total).open();
  const got = [];
  await assert.rejects(
    async () => {
      for await (const v of s) got.push(v);
    },
    (e) => e === boom,
  );
  assert.deepEqual(got, [1, 2, 'sum 3']);
  await s.cancel();
  assert.deepEqual(log, ['source stopped']);
  assert.deepEqual(
    [source.stats().cancelled, middle.stats().failed, total.stats().completed],
    [1, 1, 1],
    'the stage before was stopped, the one after completed',
  );
});

test("a pipe's stats() are exact when run() settles and when cancel() resolves", async () => {
  const p = add(1).pipe(add(10));
  assert.deepEqual(await p.run([1, 2]), [12, 13]);
  assert.deepEqual(p.stats(), { open: 0, opened: 1, completed: 1, failed: 0, cancelled: 0, rejected: 0 });
  const bad = add(1).pipe(async function* bad(events) {
    for await (const e of events) throw new Error(`bad ${e}`);
  });
  await assert.rejects(bad.run([1]), /bad 2/);
  assert.deepEqual(bad.stats(), { open: 0, opened: 1, completed: 0, failed: 1, cancelled: 0, rejected: 0 });
  const s = p.open();
  await s.send(1);
  await s.cancel();
  assert.deepEqual(p.stats(), { open: 0, opened: 2, completed: 1, failed: 0, cancelled: 1, rejected: 0 });
});

test("a pipe's stats() are settled when its reader's for await or recv() sees the end, as a single stream's", async () => {
  const tails = {
    'a stream': () => add(100),
    'a task stage': () => task(async (e) => e * 2),
    'a batch stage': () => batch(async (items) => items.map((e) => -e), { maxSize: 2 }),
  };
  for (const [label, tail] of Object.entries(tails)) {
    for (const stages of [2, 3]) {
      let p = add(1);
      if (stages === 3) p = p.pipe(add(10));
      p = p.pipe(tail());
      const s = p.open();
      void (async () => {
        for (const e of [1, 2, 3]) await s.send(e);
        s.end();
      })();
      const out = [];
      for await (const x of s) out.push(x);
      assert.equal(out.length, label === 'a batch stage' ? 2 : 3, label);
      assert.deepEqual(p.stats(), { open: 0, opened: 1, completed: 1, failed: 0, cancelled: 0, rejected: 0 }, `${label}, ${stages} stages`);
      const r = p.open();
      await r.send(1);
      r.end();
      await r.recv();
      await assert.rejects(r.recv(), { code: 'ERR_VELO_STREAM_CLOSED' });
      assert.deepEqual(p.stats(), { open: 0, opened: 2, completed: 2, failed: 0, cancelled: 0, rejected: 0 }, `${label}, ${stages} stages, recv`);
    }
  }
  const single = add(1);
  const s = single.open();
  await s.send(1);
  s.end();
  for await (const _ of s);
  assert.equal(single.stats().open, 0);
});

test('an aborted pipe run() rejects at once with exact stats, even while a stage ignores its signal', async () => {
  const stuck = deferred();
  const p = add(1).pipe(async function* ignoresSignal(events) {
    for await (const e of events) {
      await stuck.promise; // its own wait, not watching ctx.signal
      yield e;
    }
  });
  const ac = new AbortController();
  const running = p.run([1, 2], { signal: ac.signal });
  await settle();
  const reason = new Error('stop');
  ac.abort(reason);
  await assert.rejects(running, (e) => e === reason);
  assert.deepEqual(p.stats(), { open: 0, opened: 1, completed: 0, failed: 0, cancelled: 1, rejected: 0 });
  stuck.resolve(); // lets the stage finish
});

test('each stage counts against its own function maxConcurrent', async () => {
  const a = add(1);
  const b = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { maxConcurrent: 1 },
  );
  const p = a.pipe(b);
  const s = p.open();
  assert.equal(a.stats().open, 1);
  assert.equal(b.stats().open, 1);
  assert.throws(() => p.open(), StreamLimitError);
  assert.equal(a.stats().open, 1, 'the first stage opened for the refused pipe was given back');
  assert.equal(p.stats().rejected, 1);
  await s.cancel();
  assert.equal(a.stats().open + b.stats().open, 0);
  assert.equal(p.stats().cancelled, 1);
});

test('cancel and break on a pipe stop every stage', async () => {
  const finals = [];
  const stage = (i) =>
    streamFn(async function* (events) {
      try {
        for await (const e of events) yield e;
      } finally {
        finals.push(i);
      }
    });
  const p = stage(0).pipe(stage(1)).pipe(stage(2));
  const s = p.open();
  await s.send(1);
  for await (const v of s) {
    assert.equal(v, 1);
    break;
  }
  assert.equal(s.state, 'cancelled');
  assert.deepEqual(finals.sort(), [0, 1, 2]);
});

test("a pipe's idle clock is its first stage's: a slow stage does not make the next one time out", async () => {
  const slow = streamFn(
    async function* slow(events) {
      for await (const e of events) {
        await new Promise((r) => setTimeout(r, 80)); // longer than the stages' idle timeout
        yield e;
      }
    },
    { idleTimeout: 30 },
  );
  const next = streamFn(
    async function* next(events) {
      for await (const e of events) yield e * 10;
    },
    { idleTimeout: 30 },
  );
  const s = slow.pipe(next).open();
  await s.send(1);
  await s.send(2);
  // No end(): the first stage's idle timeout ends the input; every output still arrives.
  assert.deepEqual(await collect(s), [10, 20]);
  assert.equal(s.state, 'done');
});

test('a pipe that can never end, unreferenced, is collected and counted cancelled, like its stages', async () => {
  const stage = async function* (events) {
    for await (const e of events) yield e;
  };
  const a = streamFn(stage, { idleTimeout: 0, name: 'a' });
  const b = streamFn(stage, { name: 'b' });
  const piped = a.pipe(b);
  (() => {
    for (let i = 0; i < 10; i++) void piped.open().send({ i });
  })();
  // (Each stage's stream is collected on its own: wait for all three counts, not only the pipe's.)
  const settled = () => piped.stats().open === 0 && a.stats().cancelled === 10 && b.stats().cancelled === 10;
  for (let i = 0; i < 200 && !settled(); i++) {
    global.gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.deepEqual(piped.stats(), { open: 0, opened: 10, completed: 0, failed: 0, cancelled: 10, rejected: 0 });
  assert.equal(a.stats().cancelled, 10);
  assert.equal(b.stats().cancelled, 10);
});

test('a pipe at maxConcurrent 1 opens again right after its last stream was read to the end (its own counters set no limit)', async () => {
  const stage = (name) =>
    streamFn(
      async function* (events) {
        for await (const e of events) yield e;
      },
      { maxConcurrent: 1, name },
    );
  const p = stage('x').pipe(stage('y'));
  for (let i = 0; i < 20; i++) {
    const s = p.open();
    await s.send(i);
    s.end();
    assert.deepEqual(await collect(s), [i]);
  }
  const s = p.open();
  await s.send('last');
  s.end();
  assert.equal(await s.recv(), 'last');
  await assert.rejects(s.recv(), { code: 'ERR_VELO_STREAM_CLOSED' });
  p.open().cancel();
  await settle();
  assert.deepEqual(p.stats(), { open: 0, opened: 22, completed: 21, failed: 0, cancelled: 1, rejected: 0 });
});

test('pipe.sessions(config) and withConfig do not copy the first stage: its stats and limit count the session streams, and name names the pipe', async () => {
  const echo = async function* (events) {
    for await (const e of events) yield e;
  };
  const a = streamFn(echo, { name: 'a', maxConcurrent: 2 });
  const b = streamFn(echo, { name: 'b' });
  const sessions = a.pipe(b).sessions({ idleTimeout: 60_000, name: 'sess' });
  assert.equal(sessions.fn.name, 'sess');
  assert.equal(sessions.fn.config.idleTimeout, 60_000);
  await sessions.send('k1', 1);
  assert.equal(a.stats().open, 1, "the session's stream is the real first stage's");
  // The real stage at its limit: a stream opened directly takes the second slot, and a new key is refused.
  const direct = a.open();
  await assert.rejects(sessions.send('k2', 2), { code: 'ERR_VELO_STREAM_LIMIT' });
  await direct.cancel();
  await sessions.send('k2', 2);
  assert.equal(a.stats().open, 2);
  // A limit of the pipe's own applies too, besides the stages'.
  const c = streamFn(echo, { name: 'c' });
  const one = c.pipe(b).sessions({ maxConcurrent: 1, idleTimeout: 60_000 });
  await one.send('x', 1);
  await assert.rejects(one.send('y', 2), { code: 'ERR_VELO_STREAM_LIMIT' });
  const outputs = [];
  const reading = (async () => {
    for await (const item of sessions) outputs.push(item);
  })();
  await sessions.close();
  await reading;
  assert.deepEqual(outputs.map((o) => [o.key, o.value]).sort(), [
    ['k1', 1],
    ['k2', 2],
  ]);
  await one.close();
  for await (const _ of one);
  // The first stage's idle clock takes the pipe's setting: 60 s, not its own default 30 s.
  assert.equal(a.config.idleTimeout, 30_000);
});
