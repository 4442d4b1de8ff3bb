// Journaled calls (`ctx.run`) and streams (`ctx.stream`): in-process they call as they are; on a durable session
// (the testing kit's worker, on the in-memory log) the result, error or chunks are recorded with the outputs, and a
// replay after a crash gets them back at their place, calling again only what was never committed, with the same
// idempotency key. A replay that asks another name is told; a journal past `maxJournalBytes` is refused; bad
// arguments are refused with codes; a stage of a pipe run by a worker has no journal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { streamFn } from 'velo-stream';
import { testWorker } from 'velo-stream/testing';

const other = (tw) => tw.errors().filter((e) => e?.code !== 'ERR_VELO_REDIS_CONNECTION' && e?.code !== 'ERR_VELO_FENCED');

test('in-process: ctx.run calls its body with a key per call, ctx.stream iterates its factory with no chunks', async () => {
  const seen = [];
  const fn = streamFn(async function* (events, ctx) {
    for await (const e of events) {
      const r = await ctx.run('double', ({ key, signal }) => {
        seen.push(signal instanceof AbortSignal ? key.slice(key.lastIndexOf('/')) : 'no signal');
        return e * 2;
      });
      const chunks = [];
      for await (const c of ctx.stream('count', ({ chunks: before }) => [before.length, 1, 2])) chunks.push(c);
      yield { r, chunks };
    }
  });
  assert.deepEqual(await fn.run([1, 2]), [
    { r: 2, chunks: [0, 1, 2] },
    { r: 4, chunks: [0, 1, 2] },
  ]);
  // A key per journaled call of the stream, runs and streams counted alike.
  assert.deepEqual(seen, ['/1', '/3']);
});

test("the call object's key, signal (the handler's ctx.signal) and chunks are its own: kept by a spread and through a proxy", async () => {
  const seen = [];
  /** What a body or factory sees of `call`: its own keys, and whether a spread and a proxy keep ctx.signal. */
  const look = (call, ctx) =>
    seen.push([Object.keys(call).join(','), { ...call }.signal === ctx.signal, new Proxy(call, {}).signal === ctx.signal]);
  const handler = async function* (events, ctx) {
    for await (const e of events) {
      const r = await ctx.run('run', (call) => {
        look(call, ctx);
        return e;
      });
      for await (const c of ctx.stream('stream', (call) => {
        look(call, ctx);
        return [c0(call)];
      }))
        yield { r, c };
    }
  };
  const c0 = (call) => call.chunks.length;
  // In-process, and on a durable session.
  assert.deepEqual(await streamFn(handler).run([1]), [{ r: 1, c: 0 }]);
  const tw = testWorker(streamFn(handler, { idleTimeout: 60_000 }));
  tw.send('k', 1);
  await tw.advance(100);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [{ r: 1, c: 0 }],
  );
  await tw.close();
  const want = [
    ['key,signal', true, true],
    ['key,signal,chunks', true, true],
  ];
  assert.deepEqual(seen, [...want, ...want]);
});

test('a crash after a call is committed: the replay gets the recorded result and calls nothing again', async () => {
  let calls = 0;
  const keys = [];
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        const quote = await ctx.run('quote', ({ key }) => {
          keys.push(key);
          return `q${++calls}`;
        });
        yield { e, quote };
        yield { e, quote, again: true };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { leaseTtl: 3000 });
  tw.send('k', 1);
  await tw.advance(100);
  tw.crash();
  await tw.advance(10_000);
  tw.send('k', 2);
  await tw.advance(100);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [
      { e: 1, quote: 'q1' },
      { e: 1, quote: 'q1', again: true },
      { e: 2, quote: 'q2' },
      { e: 2, quote: 'q2', again: true },
    ],
  );
  assert.equal(calls, 2, 'the replay of event 1 did not call again');
  assert.match(keys[0], /^k@.+\/1$/);
  assert.match(keys[1], /^k@.+\/2$/);
  assert.deepEqual(other(tw), []);
});

test('a streamed answer cut by a crash continues after its recorded chunks; a recorded error is thrown again', async () => {
  let answers = 0;
  let failures = 0;
  const given = [];
  async function* model(chunks) {
    given.push(chunks.length);
    const id = chunks.length > 0 ? chunks[0].id : `a${++answers}`;
    for (let i = chunks.length; i < 4; i++) {
      yield { id, i };
      if (i === 1) await new Promise(() => {}); // the first run stalls here: the crash comes mid-answer
    }
  }
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        try {
          await ctx.run('flaky', () => {
            failures++;
            throw Object.assign(new Error('upstream 503'), { code: 'E_UPSTREAM' });
          });
        } catch (error) {
          yield { e, failed: error.code };
        }
        for await (const chunk of ctx.stream('model', ({ chunks }) => model(chunks))) yield { e, chunk };
        yield { e, done: true };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { leaseTtl: 3000 });
  tw.send('k', 1);
  await tw.advance(100);
  tw.crash();
  await tw.advance(10_000);
  const values = tw.outputs().map((o) => o.value);
  assert.deepEqual(values, [
    { e: 1, failed: 'E_UPSTREAM' },
    { e: 1, chunk: { id: 'a1', i: 0 } },
    { e: 1, chunk: { id: 'a1', i: 1 } },
    { e: 1, chunk: { id: 'a1', i: 2 } },
    { e: 1, chunk: { id: 'a1', i: 3 } },
    { e: 1, done: true },
  ]);
  assert.equal(failures, 1, 'the recorded error was thrown again, the body not called');
  assert.ok(given.at(-1) >= 1, `the continuation was given the recorded chunks (${given})`);
  assert.deepEqual(other(tw), []);
});

test('a replay that asks another call at a recorded place gets JournalDivergedError, naming both', async () => {
  let name = 'price';
  const diverged = [];
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        try {
          yield { e, got: await ctx.run(name, () => 1) };
        } catch (error) {
          diverged.push({ code: error.code, recorded: error.recorded, asked: error.asked, call: error.call });
          yield { e, diverged: true };
        }
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { leaseTtl: 3000 });
  tw.send('k', 1);
  await tw.advance(100);
  name = 'discount';
  tw.crash();
  await tw.advance(10_000);
  assert.deepEqual(diverged, [{ code: 'ERR_VELO_JOURNAL_DIVERGED', recorded: 'price', asked: 'discount', call: 1 }]);
  // The output written before stands (readers keep the first written).
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [{ e: 1, got: 1 }],
  );
});

test('a journal past maxJournalBytes is refused at the call, with ERR_VELO_JOURNAL_TOO_LARGE', async () => {
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        try {
          yield { e, got: (await ctx.run('big', () => 'x'.repeat(e))).length };
        } catch (error) {
          yield { e, code: error.code };
        }
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { leaseTtl: 3000, maxJournalBytes: 100 });
  tw.send('k', 50);
  tw.send('k', 80);
  await tw.advance(100);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [
      { e: 50, got: 50 },
      { e: 80, code: 'ERR_VELO_JOURNAL_TOO_LARGE' },
    ],
  );
});

test('maxJournalBytes counts the records since the last checkpoint call, whatever the timing of the inputs', async () => {
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        if (e.checkpoint) {
          ctx.checkpoint({ at: e.n });
          yield { n: e.n, checkpointed: true };
          continue;
        }
        for (let j = 0; j < e.calls; j++) {
          try {
            yield { n: e.n, got: (await ctx.run(`r${e.n}.${j}`, () => 'a'.repeat(1898))).length };
          } catch (error) {
            yield { n: e.n, code: error.code };
          }
        }
      }
    },
    { idleTimeout: 60_000 },
  );
  const events = [
    { n: 1, calls: 4 },
    { n: 2, checkpoint: true },
    { n: 3, calls: 2 },
    { n: 4, calls: 2 },
    { n: 5, calls: 2 },
  ];
  const runs = [];
  // All at once (the checkpoint's commit queued inputs later), and one at a time.
  for (const apart of [0, 100]) {
    const tw = testWorker(fn, { leaseTtl: 3000, maxJournalBytes: 10_000 });
    for (const e of events) {
      tw.send('k', e);
      if (apart > 0) await tw.advance(apart);
    }
    await tw.advance(1000);
    runs.push(tw.outputs().map((o) => o.value));
    await tw.close();
  }
  assert.deepEqual(runs[0], runs[1]);
  // 7.6 kB before the checkpoint, then 11.4 kB after it: the fifth result after it is refused, at every timing.
  assert.deepEqual(
    runs[0].filter((v) => v.code !== undefined),
    [{ n: 5, code: 'ERR_VELO_JOURNAL_TOO_LARGE' }],
  );
  assert.equal(runs[0].length, 11);
});

test('a call refused past maxJournalBytes is recorded: the replay throws the refusal again, its body not run, whatever it would answer now', async () => {
  // Each body answers smaller on every call, as a model or a service may: run again, it would fit.
  const bodies = { run: 0, stream: 0 };
  const seen = [];
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        const run = [];
        try {
          const got = await ctx.run('big', () => 'x'.repeat(bodies.run++ === 0 ? 500 : 10));
          run.push({ got: got.length });
        } catch (error) {
          run.push({ name: error?.name, code: error?.code, message: error?.message });
        }
        yield { e, run: run[0].got ?? run[0].code };
        try {
          for await (const chunk of ctx.stream('model', ({ chunks }) => {
            const first = bodies.stream++ === 0;
            return ['a'.repeat(40), first ? 'b'.repeat(80) : 'b', 'c'].slice(chunks.length);
          })) {
            run.push({ chunk: chunk.length });
            yield { e, chunk: chunk.length };
          }
        } catch (error) {
          run.push({ name: error?.name, code: error?.code, message: error?.message });
        }
        seen.push(run);
        yield { e, done: true };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { leaseTtl: 3000, maxJournalBytes: 100 });
  tw.send('k', 1);
  await tw.advance(100);
  tw.crash();
  await tw.advance(10_000);
  assert.equal(seen.length, 2, 'the first run and the replay');
  assert.deepEqual(bodies, { run: 1, stream: 1 }, 'neither body ran again');
  assert.deepEqual(seen[1], seen[0], 'the replay threw what the first run did, where it did');
  assert.deepEqual(
    seen[0].map((r) => r.code ?? r.chunk),
    ['ERR_VELO_JOURNAL_TOO_LARGE', 40, 'ERR_VELO_JOURNAL_TOO_LARGE'],
  );
  assert.equal(seen[0][0].name, 'JournalTooLargeError');
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [
      { e: 1, run: 'ERR_VELO_JOURNAL_TOO_LARGE' },
      { e: 1, chunk: 40 },
      { e: 1, done: true },
    ],
  );
  assert.deepEqual(other(tw), []);
});

test('bad arguments are refused with codes; a pipe stage run by a worker has no journal', async () => {
  const codes = [];
  const fn = streamFn(async function* (events, ctx) {
    for await (const e of events) {
      for (const [name, body] of [
        [7, () => 1],
        ['', () => 1],
        ['a\nb', () => 1],
        ['a\u0000b', () => 1],
        ['a\u2028b', () => 1],
        ['a\u007fb', () => 1],
        ['a\u0085b', () => 1],
        ['a\u009fb', () => 1],
        ['x'.repeat(201), () => 1],
        ['ok', 'not a function'],
      ]) {
        await ctx.run(name, body).catch((error) => codes.push(error.code));
      }
      try {
        ctx.stream('s', () => 42);
      } catch (error) {
        codes.push(error.code);
      }
      yield e;
    }
  });
  await fn.run([1]);
  assert.deepEqual(codes, [
    'ERR_INVALID_ARG_TYPE',
    'ERR_INVALID_ARG_VALUE',
    'ERR_INVALID_ARG_VALUE',
    'ERR_INVALID_ARG_VALUE',
    'ERR_INVALID_ARG_VALUE',
    'ERR_INVALID_ARG_VALUE',
    'ERR_INVALID_ARG_VALUE',
    'ERR_INVALID_ARG_VALUE',
    'ERR_INVALID_ARG_VALUE',
    'ERR_INVALID_ARG_TYPE',
    'ERR_INVALID_ARG_TYPE',
  ]);
  const stage = streamFn(async function* (events, ctx) {
    for await (const e of events) {
      try {
        yield await ctx.run('svc', () => e);
      } catch (error) {
        yield { code: error.code };
      }
    }
  });
  const tw = testWorker(
    stage.pipe(
      streamFn(async function* (xs) {
        for await (const x of xs) yield x;
      }),
    ),
    { leaseTtl: 3000 },
  );
  tw.send('k', 1);
  await tw.advance(100);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [{ code: 'ERR_VELO_PIPE_SESSION_CALL' }],
  );
});

test('fakeModel answers differently on every call: a plain call splices two answers after a crash, ctx.stream gives one', async () => {
  const { fakeModel } = await import('velo-stream/testing');
  const run = async (journaled) => {
    let paced = 0;
    // The first answer stalls after its second token: the crash comes mid-answer.
    const model = fakeModel({ tokens: [5, 5], pace: () => (++paced === 3 ? new Promise(() => {}) : Promise.resolve()) });
    const fn = streamFn(
      async function* (prompts, ctx) {
        for await (const prompt of prompts) {
          const tokens = journaled ? ctx.stream('model', ({ chunks }) => model.stream(prompt, chunks)) : model.stream(prompt);
          for await (const t of tokens) yield { answer: t.answer, i: t.i };
          yield { done: true };
        }
      },
      { idleTimeout: 60_000 },
    );
    const tw = testWorker(fn, { leaseTtl: 3000 });
    tw.send('chat', 'hello');
    await tw.advance(100);
    tw.crash();
    await tw.advance(10_000);
    const values = tw.outputs().map((o) => o.value);
    return { values, answers: new Set(values.filter((v) => !v.done).map((v) => v.answer)).size, started: model.answers };
  };
  const plain = await run(false);
  assert.equal(plain.answers, 2, `a plain call: two answers spliced (${JSON.stringify(plain.values)})`);
  const journaled = await run(true);
  assert.equal(journaled.answers, 1, `ctx.stream: one answer (${JSON.stringify(journaled.values)})`);
  assert.deepEqual(
    journaled.values.map((v) => (v.done ? 'done' : v.i)),
    [0, 1, 2, 3, 4, 'done'],
  );
  assert.equal(journaled.started, 1, 'the model was asked once; the takeover continued its answer');
  assert.throws(() => fakeModel({ tokens: [0, 2] }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => fakeModel({ pace: 1 }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => fakeModel({ token: [1, 2] }), { code: 'ERR_INVALID_ARG_VALUE', message: /unknown option "token"/ });
  // `after` must be the head of one of its answers: else refused, not taken for a new answer.
  const model = fakeModel({ tokens: [4, 4] });
  const head = [];
  for await (const t of model.stream('q')) if (head.push(t) === 2) break;
  const rest = [];
  for await (const t of model.stream('q', head)) rest.push(t);
  assert.deepEqual(
    rest.map((t) => [t.answer, t.i]),
    [
      [head[0].answer, 2],
      [head[0].answer, 3],
    ],
  );
  assert.throws(() => model.stream('q', 'x'), { code: 'ERR_INVALID_ARG_TYPE' });
  for (const bad of [
    [5, 'x'],
    [head[1]],
    [head[0], { ...head[1], answer: 'other' }],
    [head[0], head[0]],
    [...head, ...rest, rest[1]],
    // An answer it never gave, its own chunk with another text, its own chunk with another length.
    [{ ...head[0], answer: 'never-given' }],
    [head[0], { ...head[1], text: 'edited' }],
    [{ ...head[0], of: 99 }],
    [head[0], { ...head[1], of: 99 }],
  ])
    assert.throws(() => model.stream('q', bad), { code: 'ERR_INVALID_ARG_VALUE', message: /"after" must be the first chunks/ });
  assert.equal(model.answers, 1);
  // Another process's model (a worker that took over): it continues the answer as its chunks carry it, read back
  // from the log, and gives the same chunks the first model would have; it started no answer.
  const other = fakeModel({ tokens: [4, 4] });
  const carried = JSON.parse(JSON.stringify(head));
  const continued = [];
  for await (const t of other.stream('q', carried)) continued.push(t);
  assert.deepEqual(continued, rest);
  assert.equal(other.answers, 0);
  const again = [];
  for await (const t of other.stream('q', [...carried, continued[0]])) again.push(t);
  assert.deepEqual(again, [rest[1]]);
  for (const bad of [
    [{ ...head[0], answer: 'never-given' }],
    [{ ...head[0], of: 0 }],
    [{ ...head[0], answer: '' }],
    [head[0], { ...head[1], of: 9 }],
  ])
    assert.throws(() => other.stream('q', bad), { code: 'ERR_INVALID_ARG_VALUE', message: /"after" must be the first chunks/ });
});

/** A worker whose session of `fn` took one event, was committed, and was replayed by the next owner after a crash. */
async function firstRunAndReplay(fn) {
  const tw = testWorker(fn, { leaseTtl: 3000 });
  tw.send('k', 1);
  await tw.advance(100);
  tw.crash();
  await tw.advance(10_000);
  return tw;
}

test('a first run sees what its replay sees: results decoded from their records, undefined kept, built-in error classes', async () => {
  let mails = 0;
  let reads = 0;
  const seen = [];
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        const at = await ctx.run('clock', () => new Date(Date.UTC(2026, 10, 28)));
        // A plain object with a Date inside (not copied: its text decoded) and a getter, read once.
        const priced = await ctx.run('price', () =>
          Object.defineProperty({ at: new Date(0) }, 'cents', { get: () => ++reads, enumerable: true }),
        );
        const sent = await ctx.run('send-mail', () => {
          mails++;
        });
        let error;
        try {
          await ctx.run('parse', () => {
            throw Object.assign(new RangeError('out of range'), { code: 'E_RANGE' });
          });
        } catch (caught) {
          error = caught;
        }
        const chunks = [];
        for await (const chunk of ctx.stream('model', () => [new Date(0), undefined, 'tail'])) chunks.push(chunk);
        seen.push({ at, priced, sent, range: error instanceof RangeError, name: error.name, code: error.code, chunks });
        yield { e };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = await firstRunAndReplay(fn);
  assert.equal(seen.length, 2, 'the first run and the replay');
  assert.deepEqual(seen[0], {
    at: '2026-11-28T00:00:00.000Z',
    priced: { at: '1970-01-01T00:00:00.000Z', cents: 1 },
    sent: undefined,
    range: true,
    name: 'RangeError',
    code: 'E_RANGE',
    chunks: ['1970-01-01T00:00:00.000Z', undefined, 'tail'],
  });
  assert.deepEqual(seen[1], seen[0], 'the replay saw the same');
  assert.equal(mails, 1, 'a body that returns nothing is recorded: the replay did not send again');
  assert.equal(reads, 1, 'the getter was read once, by the first run');
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [{ e: 1 }],
  );
  assert.deepEqual(other(tw), []);
});

test('a first run gets a copy of its plain result: later changes on either side reach neither the other nor the record', async () => {
  const kept = { total: 1, items: [{ sku: 'a', qty: -0 }], ratio: NaN, gone: undefined };
  const tagged = { '$velo:buffer': 'AAE=' };
  const seen = [];
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        const got = await ctx.run('cart', () => kept);
        // The body's object changes after the call; the handler changes what it got.
        kept.total = 99;
        const before = JSON.stringify(got);
        got.items.push({ sku: 'mine' });
        const bytes = await ctx.run('tagged', () => tagged);
        seen.push({
          before,
          bytes: Buffer.isBuffer(bytes) ? [...bytes] : bytes,
          proto: Object.getPrototypeOf(got) === Object.prototype,
        });
        yield { e };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = await firstRunAndReplay(fn);
  assert.equal(seen.length, 2, 'the first run and the replay');
  assert.deepEqual(seen[0], {
    before: '{"total":1,"items":[{"sku":"a","qty":0}],"ratio":null}',
    bytes: [0, 1],
    proto: true,
  });
  assert.deepEqual(seen[1], seen[0], 'the replay saw the same');
  assert.deepEqual(other(tw), []);
});

test('a thrown error reaches the first run as its replay rebuilds it: class, name, message and code alike', async () => {
  class QuotaError extends Error {
    name = 'QuotaError';
    code = 'E_QUOTA';
  }
  const thrown = [() => new QuotaError('over quota'), () => 'a string', () => null, () => new AggregateError([], 'many')];
  const seen = [];
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        const run = [];
        for (const [i, make] of thrown.entries()) {
          try {
            await ctx.run(`fail-${i}`, () => {
              throw make();
            });
          } catch (error) {
            run.push({
              type: typeof error,
              error: error instanceof Error,
              quota: error instanceof QuotaError,
              name: error?.name,
              message: error?.message,
              code: error?.code,
            });
          }
        }
        seen.push(run);
        yield { e };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = await firstRunAndReplay(fn);
  assert.equal(seen.length, 2, 'the first run and the replay');
  assert.deepEqual(seen[1], seen[0], 'the replay saw what the first run saw');
  assert.deepEqual(seen[0][0], {
    type: 'object',
    error: true,
    quota: false,
    name: 'QuotaError',
    message: 'over quota',
    code: 'E_QUOTA',
  });
  assert.deepEqual(other(tw), []);
});

test('ctx.run("") is refused on the first call of a process, as on every other', () => {
  // (A child process: the name check keeps the last good name, and a fresh process has checked none.)
  const script = `
    import { streamFn } from 'velo-stream';
    const fn = streamFn(async function* (events, ctx) {
      for await (const e of events) {
        try { await ctx.run('', () => 1); yield 'accepted'; } catch (error) { yield error.code; }
      }
    });
    console.log((await fn.run([1])).join(' '));
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), encoding: 'utf8' });
  assert.equal(child.stderr, '');
  assert.equal(child.status, 0);
  assert.equal(child.stdout.trim(), 'ERR_INVALID_ARG_VALUE');
});

test("a result the codec refuses is the call's failure, recorded: the replay throws it again without running the body", async () => {
  const bodies = { sync: 0, async: 0, large: 0 };
  const seen = [];
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        const run = [];
        for (const [name, body] of [
          ['sync', () => 10n],
          ['async', async () => ({ big: 1n })],
          ['large', () => 'x'.repeat(4096)],
        ]) {
          try {
            await ctx.run(name, () => {
              bodies[name]++;
              return body();
            });
            run.push('accepted');
          } catch (error) {
            run.push({ name: error?.name, code: error?.code, message: error?.message });
          }
        }
        seen.push(run);
        yield { e };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { leaseTtl: 3000, maxEventBytes: 1024 });
  tw.send('k', 1);
  await tw.advance(100);
  tw.crash();
  await tw.advance(10_000);
  assert.equal(seen.length, 2, 'the first run and the replay');
  assert.deepEqual(bodies, { sync: 1, async: 1, large: 1 }, 'each body ran once');
  assert.deepEqual(seen[1], seen[0], 'the replay threw what the first run did');
  assert.ok(
    seen[0].every((r) => typeof r === 'object' && typeof r.code === 'string'),
    JSON.stringify(seen[0]),
  );
  assert.equal(seen[0][2].code, 'ERR_VELO_EVENT_TOO_LARGE');
  assert.deepEqual(other(tw), []);
});

test('a call whose session is handed off is not recorded: its answer then (an AbortError) is not its answer, and the next owner calls again', async () => {
  let calls = 0;
  const keys = [];
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        const answer = await ctx.run('model', ({ key, signal }) => {
          calls++;
          keys.push(key);
          // The first call answers only its cancellation, as fetch() does.
          if (calls === 1) return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
          return `answer to ${e}`;
        });
        yield { answer };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { version: 'v1', leaseTtl: 3000 });
  tw.send('k', 1);
  await tw.advance(100);
  assert.equal(calls, 1);
  tw.deploy(fn, { version: 'v2', migrate: (state) => state });
  await tw.stop('v1');
  await tw.advance(10_000);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [{ answer: 'answer to 1' }],
  );
  assert.equal(calls, 2, 'called again by the next owner');
  assert.equal(keys[1], keys[0], 'with the same key');
  assert.deepEqual(other(tw), []);
});

test('a body that never reads its signal: what it answers after its session is handed off is not recorded either', async () => {
  let calls = 0;
  let late = () => {};
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        // (The body never looks at its signal: the journal knows the session is cancelled without a listener of its own.)
        const answer = await ctx.run('model', () => {
          calls++;
          if (calls === 1) return new Promise((resolve) => (late = () => resolve('stale answer')));
          return `answer to ${e}`;
        });
        yield { answer };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { version: 'v1', leaseTtl: 3000 });
  tw.send('k', 1);
  await tw.advance(100);
  assert.equal(calls, 1);
  tw.deploy(fn, { version: 'v2', migrate: (state) => state });
  // (Answered once the stop has begun: after the session's cancel.)
  const stopped = tw.stop('v1');
  setImmediate(late);
  await stopped;
  await tw.advance(10_000);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [{ answer: 'answer to 1' }],
  );
  assert.equal(calls, 2, 'called again by the next owner');
  assert.deepEqual(other(tw), []);
});

test("a replayed chunk is the handler's own: changing it changes nothing the factory gets in `chunks`", async () => {
  const given = [];
  let calls = 0;
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        for await (const chunk of ctx.stream('model', ({ chunks }) => {
          given.push(JSON.stringify(chunks));
          return (async function* () {
            for (let i = chunks.length; i < 3; i++) {
              calls++;
              yield { i };
            }
          })();
        })) {
          chunk.seen = true;
          yield { e, i: chunk.i };
        }
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = await firstRunAndReplay(fn);
  assert.deepEqual(given, ['[]'], 'the first run started with no chunks; the replay had them all');
  assert.equal(calls, 3);
  // A replay that continues: crash after two chunks are committed.
  const tw2 = testWorker(
    streamFn(
      async function* (events, ctx) {
        for await (const e of events) {
          for await (const chunk of ctx.stream('model', ({ chunks }) => {
            given.push(JSON.stringify(chunks));
            return (async function* () {
              for (let i = chunks.length; i < 3; i++) {
                yield { i };
                if (i === 1 && given.length === 2) await new Promise(() => {});
              }
            })();
          })) {
            chunk.seen = true;
            yield { e, i: chunk.i };
          }
        }
      },
      { idleTimeout: 60_000 },
    ),
    { leaseTtl: 3000 },
  );
  tw2.send('k', 1);
  await tw2.advance(100);
  tw2.crash();
  await tw2.advance(10_000);
  assert.deepEqual(
    given.slice(1),
    ['[]', '[{"i":0},{"i":1}]'],
    "the factory got the recorded chunks as recorded, not the handler's changes",
  );
  assert.deepEqual(
    tw2.outputs().map((o) => o.value.i),
    [0, 1, 2],
  );
  assert.deepEqual(other(tw), []);
  assert.deepEqual(other(tw2), []);
});

test('a result whose text would pass maxEventBytes is refused before it is made, recorded as the call failure', async () => {
  const seen = [];
  let calls = 0;
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        try {
          await ctx.run('wide', () => {
            calls++;
            let shared = { v: 1 };
            for (let i = 0; i < 40; i++) shared = { a: shared, b: shared };
            return shared;
          });
        } catch (error) {
          seen.push([error.code, /at least \d+ bytes/.test(error.message)]);
        }
        yield { e };
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = await firstRunAndReplay(fn);
  assert.deepEqual(seen, [
    ['ERR_VELO_EVENT_TOO_LARGE', true],
    ['ERR_VELO_EVENT_TOO_LARGE', true],
  ]);
  assert.equal(calls, 1, 'recorded: the replay did not call again');
});
