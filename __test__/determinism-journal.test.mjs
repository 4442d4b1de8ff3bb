// checkDeterminism with journaled calls: a service or model that answers differently on every call passes when
// called through ctx.run or ctx.stream (each run with a crash gets the crash-free run's answer at the same place),
// and fails when called plainly, the report naming the call (fetch(), crypto.randomUUID(), a fakeModel's
// stream()) with where; Date.now() and Math.random() inside a journaled body are not named. A streamed answer is
// also crashed in its middle (after its first chunk): a factory that does not continue after `chunks` fails, named.
// The stand-ins are gone after the check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { streamFn } from 'velo-stream';
import { checkDeterminism, fakeModel } from 'velo-stream/testing';

const start = Date.UTC(2024, 0, 1);
const HERE = /determinism-journal\.test\.mjs:\d+/;

/** Three events of one key, then one of another, a ms apart. */
const EVENTS = [
  ...[1, 2, 3].map((n) => ({ key: 'ada', event: { n }, at: start + n })),
  { key: 'bob', event: { n: 4 }, at: start + 4 },
];

/** A service that answers differently on every call (a counter and a fresh id). */
function service() {
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    quote: async (n) => ({ n, quote: ++calls, id: randomUUID() }),
  };
}

test('a service that answers differently on every call passes through ctx.run, and fails called plainly', async () => {
  const make = (journal) => {
    const s = service();
    return streamFn(
      async function* (events, ctx) {
        let seen = ctx.restored ?? 0;
        for await (const e of events) {
          const q = journal ? await ctx.run('quote', () => s.quote(e.n)) : await s.quote(e.n);
          seen++;
          yield { n: e.n, quote: q.quote, id: q.id, seen };
          if (e.n === 2) ctx.checkpoint(seen); // a restore from here gets no call before the checkpoint's again
        }
      },
      { idleTimeout: 1000 },
    );
  };
  const journaled = await checkDeterminism(make(true), EVENTS);
  assert.equal(journaled.ok, true, journaled.message);
  assert.ok(journaled.crashes >= 4, `crash points: ${journaled.crashes}`);

  const plain = await checkDeterminism(make(false), EVENTS);
  assert.equal(plain.ok, false);
  // The service's randomUUID is called outside a journaled call: named, where it was called.
  assert.match(plain.message, /It called crypto\.randomUUID\(\) .*determinism-journal\.test\.mjs:\d+/);
  assert.match(plain.message, /inside ctx\.run\(\) or ctx\.stream\(\)/);
});

test('a streamed model (fakeModel) passes through ctx.stream, and fails called plainly, named', async () => {
  const make = (journal) => {
    const model = fakeModel({ tokens: [2, 4] });
    return streamFn(
      async function* (prompts, ctx) {
        for await (const p of prompts) {
          const tokens = journal ? ctx.stream('model', ({ chunks }) => model.stream(`q${p.n}`, chunks)) : model.stream(`q${p.n}`);
          for await (const t of tokens) yield { answer: t.answer, i: t.i, of: t.of };
          yield { done: p.n };
        }
      },
      { idleTimeout: 1000 },
    );
  };
  const journaled = await checkDeterminism(make(true), EVENTS);
  assert.equal(journaled.ok, true, journaled.message);

  const plain = await checkDeterminism(make(false), EVENTS);
  assert.equal(plain.ok, false);
  assert.match(plain.message, /It called fakeModel\(\)\.stream\(\) .*determinism-journal\.test\.mjs:\d+/);
});

/** A handler streaming a model per event, its factory as `factory(model, prompt, chunks)` gives it; `asked` counts its calls by chunks given. */
function streaming(factory) {
  const model = fakeModel({ tokens: [2, 4] });
  const asked = { fresh: 0, continued: 0 };
  const fn = streamFn(
    async function* (prompts, ctx) {
      for await (const p of prompts) {
        const tokens = ctx.stream('model', ({ chunks }) => {
          asked[chunks.length === 0 ? 'fresh' : 'continued']++;
          return factory(model, `q${p.n}`, chunks);
        });
        for await (const t of tokens) yield { t };
        yield { done: p.n };
      }
    },
    { idleTimeout: 1000 },
  );
  return { fn, asked };
}

test('a streamed answer is crashed in its middle: a factory that continues after chunks passes, one that drops them fails, named', async () => {
  // Continues: each answer's crash after its first chunk replays that chunk and asks the model for the rest.
  const ok = streaming((model, prompt, chunks) => model.stream(prompt, chunks));
  const passed = await checkDeterminism(ok.fn, EVENTS);
  assert.equal(passed.ok, true, passed.message);
  // Four answers of 2-4 chunks: at least one run per answer crashed after its first chunk alone, continued.
  assert.ok(ok.asked.continued >= 4, `continuations asked: ${ok.asked.continued}`);

  // Drops chunks: a new answer after the recorded head.
  const dropped = await checkDeterminism(streaming((model, prompt) => model.stream(prompt)).fn, EVENTS);
  assert.equal(dropped.ok, false);
  assert.match(
    dropped.message,
    /ctx\.stream\("model"\) \(its key "ada@[^"]+\/1"\), given the first 1 chunk\(s\) of its answer after the crash, gave /,
  );
  assert.match(dropped.message, /its factory must continue that answer after `chunks`/);
  // The reader's view: the crash-free answer's first chunk, then a whole other answer.
  const [first, second] = dropped.divergence.actual;
  assert.notEqual(first.t.answer, second.t.answer);
  assert.equal(second.t.i, 0);

  // A model of the test's own that ignores chunks: the first chunk twice.
  const fixed = await checkDeterminism(
    streaming(() =>
      (function* () {
        yield 'a';
        yield 'b';
        yield 'c';
      })(),
    ).fn,
    EVENTS,
  );
  assert.equal(fixed.ok, false);
  assert.deepEqual(fixed.divergence.actual.slice(0, 5), [{ t: 'a' }, { t: 'a' }, { t: 'b' }, { t: 'c' }, { done: 1 }]);
  assert.match(fixed.message, /gave "a" as chunk 1 \(from 0\) where the crash-free run's answer had "b"/);

  // One that ends early after a continuation (it skips one chunk too many): named by its count.
  const short = await checkDeterminism(
    streaming(async function* (model, prompt, chunks) {
      let i = 0;
      for await (const t of model.stream(prompt, chunks)) if (chunks.length === 0 || i++ > 0) yield t;
    }).fn,
    EVENTS,
  );
  assert.equal(short.ok, false);
  assert.match(short.message, /(ended after \d+ chunks|as chunk 1 \(from 0\) where)/);

  // Answers of one chunk: the crash falls between the chunk and the stream's end, and the factory is asked to go on.
  const singleModel = fakeModel({ tokens: [1, 1] });
  const singleOk = streaming((_, prompt, chunks) => singleModel.stream(prompt, chunks));
  const passedOne = await checkDeterminism(singleOk.fn, EVENTS);
  assert.equal(passedOne.ok, true, passedOne.message);
  assert.ok(singleOk.asked.continued >= 4, `continuations of one-chunk answers: ${singleOk.asked.continued}`);
  const droppedOne = await checkDeterminism(streaming((_, prompt) => singleModel.stream(prompt)).fn, EVENTS);
  assert.equal(droppedOne.ok, false);
  assert.match(droppedOne.message, /^A crash after commit \d+ changed .* ctx\.stream\("model"\) .*given the first 1 chunk\(s\)/);
});

test('a model that continues an answer in other words every time, as a real one does, passes; one that drops chunks still fails', async () => {
  let draws = 0;
  const words = () => `w${++draws}`;
  // The same answer continued after `chunks` (its id, the next index), but its words drawn anew on every call.
  async function* model(prompt, chunks) {
    const answer = chunks.length > 0 ? chunks[0].answer : `${prompt}-${words()}`;
    for (let i = chunks.length; i < 3; i++) yield { answer, i, text: words() };
  }
  const passed = await checkDeterminism(streaming((_, prompt, chunks) => model(prompt, chunks)).fn, EVENTS);
  assert.equal(passed.ok, true, passed.message);
  // Its next word the same every time, the words after it its own: the difference comes a chunk later.
  async function* sameNext(prompt, chunks) {
    const answer = chunks.length > 0 ? chunks[0].answer : `${prompt}-${words()}`;
    for (let i = chunks.length; i < 4; i++) yield { answer, i, text: i === 1 ? 'the' : words() };
  }
  const later = await checkDeterminism(streaming((_, prompt, chunks) => sameNext(prompt, chunks)).fn, EVENTS);
  assert.equal(later.ok, true, later.message);
  // Reading only how many chunks there are is not continuing them.
  const counted = await checkDeterminism(
    streaming((_, prompt, chunks) => {
      void chunks.length;
      return model(prompt, []);
    }).fn,
    EVENTS,
  );
  assert.equal(counted.ok, false);
  assert.match(counted.message, /its factory must continue that answer after `chunks`/);
});

test('fetch() and crypto.randomUUID() outside a journaled call are named with where; inside one they pass', async () => {
  const realFetch = globalThis.fetch;
  let prices = 0;
  // The test's service over HTTP: a price that changes on every call.
  globalThis.fetch = async () => ({ json: async () => ({ price: ++prices }) });
  try {
    const viaFetch = (journal) =>
      streamFn(
        async function* (events, ctx) {
          for await (const e of events) {
            const ask = () => fetch('https://prices.example/now').then((r) => r.json());
            const { price } = journal ? await ctx.run('price', ask) : await ask();
            yield { n: e.n, price };
          }
        },
        { idleTimeout: 1000 },
      );
    const plain = await checkDeterminism(viaFetch(false), EVENTS);
    assert.equal(plain.ok, false);
    assert.match(plain.message, /It called fetch\(\) .*determinism-journal\.test\.mjs:\d+/);
    assert.doesNotMatch(plain.message, /Date\.now|Math\.random/);
    const journaled = await checkDeterminism(viaFetch(true), EVENTS);
    assert.equal(journaled.ok, true, journaled.message);
  } finally {
    globalThis.fetch = realFetch;
  }

  // crypto.randomUUID, the global Web Crypto's and node:crypto's.
  const ids = (journal, uuid) =>
    streamFn(
      async function* (events, ctx) {
        for await (const e of events) yield { n: e.n, id: journal ? await ctx.run('id', () => uuid()) : uuid() };
      },
      { idleTimeout: 1000 },
    );
  for (const uuid of [() => crypto.randomUUID(), () => randomUUID()]) {
    const plain = await checkDeterminism(ids(false, uuid), EVENTS);
    assert.equal(plain.ok, false);
    assert.match(plain.message, /It called crypto\.randomUUID\(\) /);
    assert.match(plain.message, HERE);
    const journaled = await checkDeterminism(ids(true, uuid), EVENTS);
    assert.equal(journaled.ok, true, journaled.message);
  }
});

test('Date.now() and Math.random() inside a journaled body are not named; outside, they are', async () => {
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        const at = await ctx.run('stamp', () => ({ at: Date.now(), r: Math.random() }));
        const stream = ctx.stream('draws', () => [Date.now(), Math.random()]);
        const drawn = [];
        for await (const d of stream) drawn.push(d);
        yield { n: e.n, at, drawn, jitter: Math.random() }; // the one unjournaled draw
      }
    },
    { idleTimeout: 1000 },
  );
  const report = await checkDeterminism(fn, EVENTS);
  assert.equal(report.ok, false);
  const named = report.message.slice(report.message.indexOf('It called'));
  assert.match(named, /^It called Math\.random\(\) [^;]*determinism-journal\.test\.mjs:\d+[^;]*, outside a journaled call/);
  assert.doesNotMatch(named, /Date\.now/);
  assert.equal(named.match(/Math\.random/g).length, 1, named);
});

test('a journaled error is given back as the crash-free run got it; the stand-ins are gone after a check', async () => {
  let calls = 0;
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        try {
          await ctx.run('flaky', () => {
            calls++;
            if (calls % 2 === 1) throw Object.assign(new Error(`busy ${calls}`), { code: 'E_BUSY' });
            return calls;
          });
          yield { n: e.n, ok: true };
        } catch (error) {
          yield { n: e.n, failed: error.code };
        }
      }
    },
    { idleTimeout: 1000 },
  );
  const now = Date.now;
  const random = Math.random;
  const fetch = globalThis.fetch;
  const report = await checkDeterminism(fn, EVENTS);
  assert.equal(report.ok, true, report.message);
  assert.equal(Date.now, now);
  assert.equal(Math.random, random);
  assert.equal(globalThis.fetch, fetch);
  assert.equal(Object.hasOwn(globalThis.crypto, 'randomUUID'), false);
  // A journaled call after the check calls its body each time again (in-process: no journal).
  const plain = streamFn(async function* (events, ctx) {
    for await (const e of events) yield await ctx.run('one', () => e * 2);
  });
  assert.deepEqual(await plain.run([1, 2]), [2, 4]);
});
