// `migrate` at an answer in flight: v1 has written 5 tokens of question 1's answer and no end when v2 (with
// `migrate`) adopts the session; v2 answers question 1 in 2 tokens and an end. Readers must get v2's whole answer
// after v1's partial one (never v1's tokens alone with no end, nor v1's head and v2's tail), then question 2's, and
// `checkReplay` reports nothing for the adopted session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { testWorker } from 'velo-stream/testing';

/** A handler that answers each question with `answer(q, ctx)` (an async generator), sessions idle for a minute. */
const perQuestion = (answer) =>
  streamFn(
    async function* (questions, ctx) {
      for await (const q of questions) yield* answer(q, ctx);
    },
    { idleTimeout: 60_000 },
  );

/** A model whose answer to each question is `tokens` tokens and an end; v1's stalls after its tokens (in flight). */
const answering = (version, tokens, stall) =>
  streamFn(
    async function* (questions, ctx) {
      let asked = ctx.restored?.asked ?? 0;
      for await (const q of questions) {
        for (let t = 0; t < tokens; t++) yield { v: version, q, token: t };
        if (stall) await new Promise(() => {});
        yield { v: version, q, done: true };
        ctx.checkpoint({ asked: ++asked });
      }
    },
    { idleTimeout: 60_000 },
  );

test('migrate adopts a session with an answer in flight: the new version answers it whole, with its end', async () => {
  const tw = testWorker(answering('v1', 5, true), { version: 'v1', leaseTtl: 3000, checkReplay: true });
  tw.send('chat', 1);
  await tw.advance(100);
  assert.equal(tw.outputs().length, 5, "v1's five tokens are written, its end is not");
  tw.deploy(answering('v2', 2, false), { version: 'v2', migrate: (state) => state });
  tw.crash();
  await tw.advance(10_000);
  tw.send('chat', 2);
  await tw.advance(100);
  const read = tw.outputs().map((o) => o.value);
  assert.deepEqual(read, [
    ...[0, 1, 2, 3, 4].map((token) => ({ v: 'v1', q: 1, token })),
    { v: 'v2', q: 1, token: 0 },
    { v: 'v2', q: 1, token: 1 },
    { v: 'v2', q: 1, done: true },
    { v: 'v2', q: 2, token: 0 },
    { v: 'v2', q: 2, token: 1 },
    { v: 'v2', q: 2, done: true },
  ]);
  assert.deepEqual(
    tw.errors().filter((e) => e?.code !== 'ERR_VELO_REDIS_CONNECTION' && e?.code !== 'ERR_VELO_FENCED'),
    [],
  );
});

test('a session adopted by migrate that ends with nothing new to write reports no divergence (checkReplay)', async () => {
  const echo = (version) =>
    streamFn(
      async function* (questions) {
        for await (const q of questions) yield { v: version, q };
      },
      { idleTimeout: 1000 },
    );
  const tw = testWorker(echo('v1'), { version: 'v1', leaseTtl: 3000, checkReplay: true });
  tw.send('chat', 1);
  tw.send('chat', 2);
  await tw.advance(100);
  tw.deploy(echo('v2'), { version: 'v2', migrate: (state) => state });
  tw.crash();
  await tw.advance(10_000);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [
      { v: 'v1', q: 1 },
      { v: 'v1', q: 2 },
    ],
  );
  assert.deepEqual(
    tw.errors().filter((e) => e?.code !== 'ERR_VELO_REDIS_CONNECTION' && e?.code !== 'ERR_VELO_FENCED'),
    [],
  );
});

/** v1 streams its answer from `model` through the journal and stalls in flight; v2 may call `first` before it. */
const journaled = (version, first) =>
  perQuestion(async function* (q, ctx) {
    let i = 0;
    try {
      if (first === 'run') await ctx.run('moderation', () => 'ok');
      const model =
        first === 'model as run'
          ? [await ctx.run('model', () => 'whole')]
          : ctx.stream('model', ({ chunks }) =>
              (async function* () {
                for (let t = chunks.length; t < 4; t++) yield `${version}-${t}`;
                if (version === 'v1') await new Promise(() => {});
              })(),
            );
      for await (const token of model) yield { v: version, q, i: i++, token };
      yield { v: version, q, done: true };
    } catch (error) {
      yield { v: version, q, done: true, error: error.code };
    }
  });

for (const first of ['run', 'model as run']) {
  test(`migrate where the new version makes another call where the old one streamed (${first}): diverged, reported, no splice`, async () => {
    const tw = testWorker(journaled('v1', null), { version: 'v1', leaseTtl: 3000 });
    tw.send('chat', 1);
    await tw.advance(100);
    assert.equal(tw.outputs().length, 4, "v1's four tokens are written, its end is not");
    tw.deploy(journaled('v2', first), { version: 'v2', migrate: (state) => state });
    tw.crash();
    await tw.advance(10_000);
    const read = tw.outputs().map((o) => o.value);
    // v1's partial answer, then v2's end with the divergence it caught: no token of a second answer after v1's.
    assert.deepEqual(read, [
      ...[0, 1, 2, 3].map((i) => ({ v: 'v1', q: 1, i, token: `v1-${i}` })),
      { v: 'v2', q: 1, done: true, error: 'ERR_VELO_JOURNAL_DIVERGED' },
    ]);
    const diverged = tw.errors().filter((e) => e?.code === 'ERR_VELO_JOURNAL_DIVERGED');
    assert.equal(diverged.length, 1, 'reported to onError too');
    assert.equal(diverged[0].call, 1);
  });
}

test('a replay whose journaled calls come in another order: the divergence reaches onError even when the handler lets it fail the session', async () => {
  let runs = 0;
  const flipping = streamFn(
    async function* (events, ctx) {
      const order = runs++ % 2 === 0 ? ['a', 'b'] : ['b', 'a'];
      for await (const e of events) for (const name of order) yield { e, name, v: await ctx.run(name, () => name) };
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(flipping, { version: 'v1', leaseTtl: 3000 });
  tw.send('k', 1);
  await tw.advance(100);
  assert.equal(tw.outputs().length, 2);
  tw.crash();
  await tw.advance(10_000);
  const diverged = tw.errors().filter((e) => e?.code === 'ERR_VELO_JOURNAL_DIVERGED');
  assert.equal(diverged.length, 1);
  assert.equal(diverged[0].recorded, 'a');
  assert.equal(diverged[0].asked, 'b');
});

/** v1 routes (a journaled call), then streams its answer and stalls in flight; v2 adds a call between the two. */
const routed = (version, added, again) =>
  perQuestion(async function* (q, ctx) {
    let i = 0;
    try {
      await ctx.run('route', () => `${version}-route`);
      if (added) await ctx.run('moderation', () => 'ok');
      const model = ctx.stream('model', ({ chunks }) =>
        (async function* () {
          for (let t = chunks.length; t < 4; t++) yield `${version}-${t}`;
          if (version === 'v1') await new Promise(() => {});
        })(),
      );
      for await (const token of model) yield { v: version, q, i: i++, token };
    } catch (error) {
      yield { v: version, q, restart: error.code };
      if (again) for await (const token of ctx.stream('retry', () => ['r0', 'r1', 'r2'])) yield { v: version, q, i: i++, token };
    }
    yield { v: version, q, done: true };
  });

for (const again of [false, true]) {
  test(`migrate diverging after a call that matched its record: the new outputs follow the old partial answer (${again ? 'answered again' : 'ended'})`, async () => {
    const tw = testWorker(routed('v1', false, false), { version: 'v1', leaseTtl: 3000 });
    tw.send('chat', 1);
    await tw.advance(100);
    assert.equal(tw.outputs().length, 4, "v1's four tokens are written, its end is not");
    tw.deploy(routed('v2', true, again), { version: 'v2', migrate: (state) => state });
    tw.crash();
    await tw.advance(10_000);
    // v1's partial answer, then all v2 yielded after the divergence: its marker, its new answer, its end. None of
    // them is taken for one of v1's outputs (the route matched its record, but the answer diverged after it).
    assert.deepEqual(
      tw.outputs().map((o) => o.value),
      [
        ...[0, 1, 2, 3].map((i) => ({ v: 'v1', q: 1, i, token: `v1-${i}` })),
        { v: 'v2', q: 1, restart: 'ERR_VELO_JOURNAL_DIVERGED' },
        ...(again ? ['r0', 'r1', 'r2'].map((token, i) => ({ v: 'v2', q: 1, i, token })) : []),
        { v: 'v2', q: 1, done: true },
      ],
    );
    assert.equal(tw.errors().filter((e) => e?.code === 'ERR_VELO_JOURNAL_DIVERGED').length, 1);
  });
}

/** v1 routes and streams four tokens, then stalls in flight; v2 routes and ends (it dropped the model's call). */
const dropping = (version) =>
  perQuestion(async function* (q, ctx) {
    yield { v: version, q, route: await ctx.run('route', () => `${version}-route`) };
    if (version === 'v1') {
      for await (const token of ctx.stream('model', () => ['t0', 't1', 't2', 't3'])) yield { v: version, q, token };
      await new Promise(() => {});
    }
    yield { v: version, q, done: true };
  });

// Found by the simulator (`--journal --versions`, seeds 85 and 200): v2's route matched its record, so its outputs
// for the input counted as v1's answer continued, and its end, at a place v1 had written a token, was dropped as
// v1's. v2 never asks for the model's records, so no divergence is found: it asks past the input with records left.
test('migrate where the new version drops a call after one that matched its record: its answer still ends', async () => {
  const tw = testWorker(dropping('v1'), { version: 'v1', leaseTtl: 3000 });
  tw.send('chat', 1);
  await tw.advance(100);
  assert.equal(tw.outputs().length, 5, "v1's route and four tokens are written, its end is not");
  tw.deploy(dropping('v2'), { version: 'v2', migrate: (state) => state });
  tw.crash();
  await tw.advance(10_000);
  const values = tw.outputs().map((o) => o.value);
  assert.equal(values.filter((v) => v.done === true).length, 1, `one end: ${JSON.stringify(values)}`);
  assert.deepEqual(values.at(-1), { v: 'v2', q: 1, done: true });
});

// Found by the simulator (`--journal --versions --answers`, seeds 31 and 53): a version that adopted a session and
// wrote part of its new answer after the old one's, then crashed before a checkpoint, was adopted again by its next
// owner, whose replay wrote that part a second time (counted past every output written, not after the old answer).
test("migrate adopted twice mid-answer: the first adopter's part of the new answer is not written twice", async () => {
  let stall = true;
  const v2 = perQuestion(async function* (q, ctx) {
    try {
      await ctx.run('route', () => 'v2-route');
      await ctx.run('moderation', () => 'ok');
    } catch (error) {
      yield { v: 'v2', q, restart: error.code };
    }
    for await (const token of ctx.stream('retry', ({ chunks }) => ['r0', 'r1', 'r2'].slice(chunks.length))) {
      yield { v: 'v2', q, token };
      // (The first adopter stops after its first token, in flight: the test's, not the handler's, doing.)
      if (stall) await new Promise(() => {});
    }
    yield { v: 'v2', q, done: true };
  });
  const tw = testWorker(routed('v1', false, false), { version: 'v1', leaseTtl: 3000 });
  tw.send('chat', 1);
  await tw.advance(100);
  assert.equal(tw.outputs().length, 4, "v1's four tokens, no end");
  tw.deploy(v2, { version: 'v2', migrate: (state) => state });
  tw.crash();
  await tw.advance(10_000);
  const first = tw.outputs().map((o) => o.value);
  assert.deepEqual(first.slice(4), [
    { v: 'v2', q: 1, restart: 'ERR_VELO_JOURNAL_DIVERGED' },
    { v: 'v2', q: 1, token: 'r0' },
  ]);
  stall = false;
  tw.crash();
  await tw.advance(10_000);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [
      ...[0, 1, 2, 3].map((i) => ({ v: 'v1', q: 1, i, token: `v1-${i}` })),
      { v: 'v2', q: 1, restart: 'ERR_VELO_JOURNAL_DIVERGED' },
      ...['r0', 'r1', 'r2'].map((token) => ({ v: 'v2', q: 1, token })),
      { v: 'v2', q: 1, done: true },
    ],
  );
});

/**
 * v1 prices the question (a journaled call), then streams seven tokens and stalls in flight; its outputs name it
 * (`v`), unless `named` is false.
 */
const pricedBy = (named) =>
  streamFn(
    async function* (questions, ctx) {
      const v = named ? { v: 'v1' } : {};
      for await (const q of questions) {
        await ctx.run('price', () => 42);
        const model = ctx.stream('model', ({ chunks }) =>
          (async function* () {
            for (let t = chunks.length; t < 7; t++) yield `q${q}-m${t}`;
            await new Promise(() => {});
          })(),
        );
        for await (const token of model) yield { ...v, q, token };
        yield { ...v, q, done: true };
      }
    },
    { idleTimeout: 60_000 },
  );
const priced = pricedBy(true);

/**
 * A worker on which `v1` (`priced`) wrote its `written` outputs of question 1 (seven tokens) and no end, then `v2`
 * adopted the session by `migrate`.
 */
async function adoptedMidAnswer(v2, v1 = priced, written = 7) {
  const tw = testWorker(v1, { version: 'v1', leaseTtl: 3000 });
  tw.send('chat', 1);
  await tw.advance(100);
  assert.equal(tw.outputs().length, written, "v1's outputs, no end");
  tw.deploy(v2, { version: 'v2', migrate: (state) => state });
  tw.crash();
  await tw.advance(10_000);
  return tw;
}

// Found by the outside break-it pass: v2's price matched its record, then it answered without the model. With as many
// tokens as v1 had written or fewer, its answer was dropped as v1's (no end); with more, its tail was joined to v1's.
for (const n of [3, 10]) {
  test(`migrate where the new version matches a call, then answers in ${n} outputs without the model: written whole, after`, async () => {
    const v2 = perQuestion(async function* (q, ctx) {
      await ctx.run('price', () => 42);
      yield { v: 'v2', q, restart: true };
      for (let i = 0; i < n; i++) yield { v: 'v2', q, token: `local${i}` };
      yield { v: 'v2', q, done: true };
    });
    const tw = await adoptedMidAnswer(v2);
    assert.deepEqual(
      tw.outputs().map((o) => o.value),
      [
        ...Array.from({ length: 7 }, (_, t) => ({ v: 'v1', q: 1, token: `q1-m${t}` })),
        { v: 'v2', q: 1, restart: true },
        ...Array.from({ length: n }, (_, i) => ({ v: 'v2', q: 1, token: `local${i}` })),
        { v: 'v2', q: 1, done: true },
      ],
    );
  });
}

// Found by an outside break-it pass: v2 caps the model's answer at four tokens, taking four of the seven records v1
// left and the same outputs for them: its whole answer is written after v1's, and (as every restart of an answer
// continued from the journal) reported.
test("migrate where the new version takes only part of the old version's records: written whole, after, and reported", async () => {
  const v2 = perQuestion(async function* (q, ctx) {
    await ctx.run('price', () => 42);
    let tokens = 0;
    for await (const token of ctx.stream('model', ({ chunks }) => ['q1-m0', 'q1-m1'].slice(chunks.length))) {
      yield { q, token };
      if (++tokens === 4) break;
    }
    yield { q, done: true };
  });
  const tw = await adoptedMidAnswer(v2, pricedBy(false));
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [
      ...Array.from({ length: 7 }, (_, t) => ({ q: 1, token: `q1-m${t}` })),
      ...Array.from({ length: 4 }, (_, t) => ({ q: 1, token: `q1-m${t}` })),
      { q: 1, done: true },
    ],
  );
  const restarted = tw.errors().filter((e) => e?.code === 'ERR_VELO_ANSWER_RESTARTED');
  assert.equal(restarted.length, 1);
  assert.match(restarted[0].message, /left 3 of the old version's records of that answer untaken/);
});

// Found by the outside break-it pass: v2 diverged at the question in flight (it asks the model where v1 priced first),
// caught it and ended the answer; v1's records it never took stayed, and its next question's model call got them.
test("migrate: records the new version left at the question in flight reach none of its next question's calls", async () => {
  const v2 = perQuestion(async function* (q, ctx) {
    try {
      const model = ctx.stream('model', ({ chunks }) => [`q${q}-a`, `q${q}-b`].slice(chunks.length));
      for await (const token of model) yield { v: 'v2', q, token };
    } catch (error) {
      yield { v: 'v2', q, restart: error.code };
    }
    yield { v: 'v2', q, done: true };
  });
  const tw = await adoptedMidAnswer(v2);
  tw.send('chat', 2);
  await tw.advance(10_000);
  const second = tw.outputs().filter((o) => o.value.q === 2);
  assert.deepEqual(
    second.map((o) => o.value),
    [
      { v: 'v2', q: 2, token: 'q2-a' },
      { v: 'v2', q: 2, token: 'q2-b' },
      { v: 'v2', q: 2, done: true },
    ],
  );
});

// Simulator seed 206997: the new version's answer in flight was restarted (its outputs did not line up with the old
// version's records) before it asked past it, and the records it left untaken stayed for its next question's calls.
test('migrate: an answer in flight restarted before its end leaves none of its old records to the next question', async () => {
  let served = 0;
  const v1 = streamFn(
    async function* (questions, ctx) {
      for await (const q of questions) {
        yield { v: 'v1', q, start: true };
        const route = await ctx.run('route', () => `s${++served}`);
        yield { v: 'v1', q, route };
        const summary = await ctx.run('summary', () => `s${++served}`);
        yield { v: 'v1', q, summary };
        await new Promise(() => {});
      }
    },
    { idleTimeout: 60_000 },
  );
  const v2 = streamFn(
    async function* (questions, ctx) {
      for await (const q of questions) {
        // No output before its call's record (the old version yielded one there): a restart; no `summary` call.
        const route = await ctx.run('route', () => `s${++served}`);
        yield { v: 'v2', q, route, done: true };
        // (A pause before its next ask, as a handler's own work: its output is written meanwhile.)
        await new Promise((resolve) => setImmediate(resolve));
        ctx.checkpoint({ q });
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(v1, { version: 'v1', leaseTtl: 3000 });
  tw.send('chat', 1);
  await tw.advance(100);
  tw.deploy(v2, { version: 'v2', migrate: (state) => state });
  tw.crash();
  await tw.advance(10_000);
  tw.send('chat', 2);
  await tw.advance(10_000);
  assert.deepEqual(
    tw.errors().map((e) => e?.code),
    ['ERR_VELO_ANSWER_RESTARTED'],
  );
  assert.deepEqual(
    tw
      .outputs()
      .filter((o) => o.value.q === 2)
      .map((o) => o.value),
    [{ v: 'v2', q: 2, route: 's3', done: true }],
  );
});

// Found by the outside break-it pass: the records v2 left at the question in flight stayed in the log; v2 checkpointed
// after its answer, and the next owner, restored from that checkpoint, gave its next question's first call one of them.
test("migrate: records the new version left stay out of every later owner's calls, after its checkpoint too", async () => {
  const v2 = perQuestion(async function* (q, ctx) {
    const price = await ctx.run('price', () => 42);
    yield { v: 'v2', q, price, done: true };
    ctx.checkpoint({ q });
  });
  const tw = await adoptedMidAnswer(v2);
  tw.crash();
  await tw.advance(10_000);
  tw.send('chat', 2);
  await tw.advance(10_000);
  assert.deepEqual(
    tw
      .outputs()
      .filter((o) => o.value.q === 2)
      .map((o) => o.value),
    [{ v: 'v2', q: 2, price: 42, done: true }],
  );
  assert.deepEqual(
    tw.errors().filter((e) => e?.code === 'ERR_VELO_JOURNAL_DIVERGED'),
    [],
  );
});

/**
 * v2 of `pricedBy(false)`: it prices the question as v1 did and takes every token v1's model gave, continuing the
 * model to `length` tokens, but yields them in its own shape: `each` (one output per token, as v1), `pairs` (one per
 * two), `halves` (two per token), or `drop6` (one per token but the seventh, which it filters out). Its outputs are
 * v1's where they are the same (none names its version), but its end.
 */
const reshaped = (shape, length) =>
  perQuestion(async function* (q, ctx) {
    await ctx.run('price', () => 42);
    const model = ctx.stream('model', ({ chunks }) => Array.from({ length }, (_, t) => `q${q}-m${t}`).slice(chunks.length));
    let first = null;
    for await (const token of model) {
      if (shape === 'pairs') {
        if (first === null) first = token;
        else [yield { q, token: `${first}+${token}` }, (first = null)];
      } else if (shape === 'halves') {
        yield { q, token, half: 0 };
        yield { q, token, half: 1 };
      } else if (shape !== 'drop6' || token !== `q${q}-m6`) yield { q, token };
    }
    if (first !== null) yield { q, token: first };
    yield { v: 'v2', q, done: true };
  });

/** What `reshaped(shape, length)` answers question 1 with, whole. */
function reshapedAnswer(shape, length) {
  const tokens = Array.from({ length }, (_, t) => `q1-m${t}`);
  const outputs = [];
  if (shape === 'pairs') for (let t = 0; t < length; t += 2) outputs.push({ q: 1, token: tokens.slice(t, t + 2).join('+') });
  else if (shape === 'halves') for (const token of tokens) outputs.push(...[0, 1].map((half) => ({ q: 1, token, half })));
  else for (const token of tokens) if (shape !== 'drop6' || token !== 'q1-m6') outputs.push({ q: 1, token });
  return [...outputs, { v: 'v2', q: 1, done: true }];
}

const v1Tokens = Array.from({ length: 7 }, (_, t) => ({ q: 1, token: `q1-m${t}` }));

// Found by an outside break-it pass: a new version that takes every record of the answer in flight, but yields
// another number of outputs per chunk, was taken for the old answer continued, its outputs matched by their count:
// the reader got v1's tokens and then v2's tail from another point of the answer, or no end.
test('migrate where the new version yields the same outputs per record: the old answer continues, nothing reported', async () => {
  const tw = await adoptedMidAnswer(reshaped('each', 10), pricedBy(false));
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [...v1Tokens, ...reshapedAnswer('each', 10).slice(7)],
  );
  assert.deepEqual(
    tw.errors().filter((e) => e?.code === 'ERR_VELO_ANSWER_RESTARTED'),
    [],
  );
});

for (const [shape, where] of [
  ['pairs', 'yielded 0 output(s) of that answer before the record of chunk 1 of ctx.stream("model")'],
  ['halves', 'yielded 2 output(s) of that answer before the record of chunk 1 of ctx.stream("model")'],
  ['drop6', 'yielded 6 output(s) of that answer before chunk 7 of ctx.stream("model")'],
]) {
  test(`migrate where the new version takes every record but yields another number of outputs per chunk (${shape}): written whole, after, and reported`, async () => {
    const tw = await adoptedMidAnswer(reshaped(shape, 20), pricedBy(false));
    assert.deepEqual(
      tw.outputs().map((o) => o.value),
      [...v1Tokens, ...reshapedAnswer(shape, 20)],
    );
    const restarted = tw.errors().filter((e) => e?.code === 'ERR_VELO_ANSWER_RESTARTED');
    assert.equal(restarted.length, 1, 'reported to onError once');
    assert.equal(restarted[0].name, 'AnswerRestartedError');
    assert.match(restarted[0].message, /^Answer restarted: session "chat@/);
    assert.ok(restarted[0].message.includes(where), restarted[0].message);
  });
}

/** v1 streams the model's tokens in two outputs each (`half` 0 and 1), and stalls after the first half of the first. */
const halving = perQuestion(async function* (q, ctx) {
  for await (const token of ctx.stream('model', () => ['q1-m0', 'q1-m1'])) {
    yield { q, token, half: 0 };
    await new Promise(() => {});
  }
});

/** v2 of `halving`: the same model, continued to three tokens, one output per token (`each`) or two (`halves`). */
const afterHalving = (shape) =>
  perQuestion(async function* (q, ctx) {
    const model = ctx.stream('model', ({ chunks }) => ['q1-m0', 'q1-m1', 'q1-m2'].slice(chunks.length));
    for await (const token of model) {
      if (shape === 'each') yield { q, token };
      else for (const half of [0, 1]) yield { q, token, half };
    }
    yield { v: 'v2', q, done: true };
  });

// Found by the simulator: v1 wrote the first of two outputs of its first chunk; v2 yields one output per chunk. Both
// yield as many outputs before each record, and v2 yields as many as v1 wrote before its first call past them: its
// output there was taken for v1's, and the reader lost the second half of the first token.
test("migrate where the new version's output at the old version's last is another: written whole, after, and reported", async () => {
  const tw = await adoptedMidAnswer(afterHalving('each'), halving, 1);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [
      { q: 1, token: 'q1-m0', half: 0 },
      ...['q1-m0', 'q1-m1', 'q1-m2'].map((token) => ({ q: 1, token })),
      { v: 'v2', q: 1, done: true },
    ],
  );
  const restarted = tw.errors().filter((e) => e?.code === 'ERR_VELO_ANSWER_RESTARTED');
  assert.equal(restarted.length, 1, 'reported to onError once');
  assert.ok(
    restarted[0].message.includes(
      "its new version's outputs of that answer, up to its output 1, are not the ones the old version wrote",
    ),
    restarted[0].message,
  );
});

test("migrate where the new version's output at the old version's last is the same: the answer continues", async () => {
  const tw = await adoptedMidAnswer(afterHalving('halves'), halving, 1);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [
      ...['q1-m0', 'q1-m1', 'q1-m2'].flatMap((token) => [0, 1].map((half) => ({ q: 1, token, half }))),
      { v: 'v2', q: 1, done: true },
    ],
  );
  assert.deepEqual(
    tw.errors().filter((e) => e?.code === 'ERR_VELO_ANSWER_RESTARTED'),
    [],
  );
});

// The same after a checkpoint: the old version's last output is read with the session's checkpoint then, and its
// digest must come with it.
test("migrate after a checkpoint, where the new version's output at the old version's last is another: written whole, after", async () => {
  const v1 = perQuestion(async function* (q, ctx) {
    for await (const token of ctx.stream('model', () => [`q${q}-m0`, `q${q}-m1`])) {
      yield { q, token, half: 0 };
      if (q === 2) await new Promise(() => {});
      yield { q, token, half: 1 };
    }
    yield { q, done: true };
    ctx.checkpoint({ q });
  });
  const v2 = perQuestion(async function* (q, ctx) {
    for await (const token of ctx.stream('model', ({ chunks }) => [`q${q}-m0`, `q${q}-m1`].slice(chunks.length)))
      yield { q, token };
    yield { v: 'v2', q, done: true };
  });
  const tw = testWorker(v1, { version: 'v1', leaseTtl: 3000 });
  tw.send('chat', 1);
  tw.send('chat', 2);
  await tw.advance(100);
  assert.equal(tw.outputs().length, 6, "question 1's answer and the first output of question 2's");
  tw.deploy(v2, { version: 'v2', migrate: (state) => state });
  tw.crash();
  await tw.advance(10_000);
  assert.deepEqual(
    tw
      .outputs()
      .filter((o) => o.value.q === 2)
      .map((o) => o.value),
    [
      { q: 2, token: 'q2-m0', half: 0 },
      { q: 2, token: 'q2-m0' },
      { q: 2, token: 'q2-m1' },
      { v: 'v2', q: 2, done: true },
    ],
  );
  assert.equal(tw.errors().filter((e) => e?.code === 'ERR_VELO_ANSWER_RESTARTED').length, 1);
});

/**
 * v1 answers each question in three tokens and an end, then waits before it asks for its next question (bills the
 * answer, say): the first question's answer is whole, but its input is still in flight when v1 stops there.
 */
const billingAfter = perQuestion(async function* (q, ctx) {
  for await (const token of ctx.stream('model', () => ['m0', 'm1', 'm2'])) yield { q, token };
  yield { q, done: true };
  await new Promise(() => {});
});

/** v2 of `billingAfter`: the same outputs, or (`tagged`) tokens with a field of its own after the first. */
const afterBilling = (tagged) =>
  perQuestion(async function* (q, ctx) {
    let i = 0;
    for await (const token of ctx.stream('model', () => ['m0', 'm1', 'm2']))
      yield tagged && i++ > 0 ? { q, token, v: 2 } : { q, token };
    yield { q, done: true };
  });

/** Questions 1 and 2 answered once each (three tokens and an end), and no restart reported. */
function assertTwoWholeAnswers(tw) {
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [1, 2].flatMap((q) => [...['m0', 'm1', 'm2'].map((token) => ({ q, token })), { q, done: true }]),
  );
  assert.deepEqual(
    tw.errors().filter((e) => e?.code === 'ERR_VELO_ANSWER_RESTARTED'),
    [],
  );
}

// Found by an outside break-it pass: v1 wrote its whole answer and waited before asking for the next question; v2,
// whose outputs differed only in its end, was taken for another answer and sent the answer again. Outputs that are
// the same continue (nothing to write); outputs that differ anywhere before the old version's last restart it.
test('migrate where the old version wrote its whole answer but had not asked past it: the same outputs write nothing again', async () => {
  const tw = await adoptedMidAnswer(afterBilling(false), billingAfter, 4);
  tw.send('chat', 2);
  await tw.advance(10_000);
  assertTwoWholeAnswers(tw);
});

test("migrate where the new version words an output before the old version's last otherwise: written whole, after", async () => {
  const tw = await adoptedMidAnswer(afterBilling(true), billingAfter, 4);
  assert.deepEqual(
    tw.outputs().map((o) => o.value),
    [
      ...['m0', 'm1', 'm2'].map((token) => ({ q: 1, token })),
      { q: 1, done: true },
      { q: 1, token: 'm0' },
      { q: 1, token: 'm1', v: 2 },
      { q: 1, token: 'm2', v: 2 },
      { q: 1, done: true },
    ],
  );
  assert.equal(tw.errors().filter((e) => e?.code === 'ERR_VELO_ANSWER_RESTARTED').length, 1);
});

/** v1 or v2 (the same outputs): three tokens and an end per question, a checkpoint after each; v1 stalls mid-q2. */
const checkpointing = (stalls) =>
  perQuestion(async function* (q, ctx) {
    for await (const token of ctx.stream('model', ({ chunks }) => ['m0', 'm1', 'm2'].slice(chunks.length))) {
      yield { q, token };
      if (stalls && q === 2 && token === 'm1') await new Promise(() => {});
    }
    yield { q, done: true };
    ctx.checkpoint({ q });
  });

// Found by the clean-clone CI (the gateway's migrate round): outputs are counted per input from the last checkpoint,
// so the digest of a question's outputs after a checkpoint went on from the one before's, and every answer in flight
// after a checkpoint restarted, whatever its outputs.
test('migrate after a checkpoint where the new version yields the same outputs: the answer continues, nothing reported', async () => {
  const tw = testWorker(checkpointing(true), { version: 'v1', leaseTtl: 3000 });
  tw.send('chat', 1);
  tw.send('chat', 2);
  await tw.advance(100);
  assert.equal(tw.outputs().length, 6, "question 1's answer and two tokens of question 2's");
  tw.deploy(checkpointing(false), { version: 'v2', migrate: (state) => state });
  tw.crash();
  await tw.advance(10_000);
  assertTwoWholeAnswers(tw);
});

test('migrate where the old version had answered and asked for its next question: nothing in flight, nothing reported', async () => {
  // v1 answers question 1 (a journaled call, and an output before it or not) and waits for question 2; v2 adopts
  // the session, which then ends by its idle timeout with no question more. v1's answer stands whole, and no restart
  // is reported, whether v2 answers alike, words its output otherwise, or yields before the call where v1 did not.
  const shapes = {
    same: (version) =>
      async function* (q, ctx) {
        yield { q, a: await ctx.run('a', () => 'answer') };
      },
    worded: (version) =>
      async function* (q, ctx) {
        yield { q, a: await ctx.run('a', () => 'answer'), by: version };
      },
    reshaped: (version) =>
      async function* (q, ctx) {
        if (version === 'v1') yield { q, head: true };
        const a = await ctx.run('a', () => 'answer');
        if (version === 'v2') yield { q, head: true };
        yield { q, a };
      },
  };
  for (const [shape, answer] of Object.entries(shapes)) {
    const tw = testWorker(perQuestion(answer('v1')), { version: 'v1', leaseTtl: 3000 });
    tw.send('k', 1);
    await tw.advance(100);
    const v1 = tw.outputs().map((o) => o.value);
    tw.deploy(perQuestion(answer('v2')), { version: 'v2', migrate: (state) => state });
    await tw.stop('v1');
    await tw.advance(120_000);
    assert.deepEqual(
      tw.outputs().map((o) => o.value),
      v1,
      shape,
    );
    assert.deepEqual(
      tw.errors().map((e) => e.code),
      [],
      shape,
    );
    await tw.close();
  }
});
