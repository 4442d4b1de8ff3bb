// The journal's errors name the call at fault, not only its session: which `ctx.run(name)` or `ctx.stream(name)`
// (its name and kind), its place among the session's journaled calls, the session, and the call's key (the one
// its body gets), so that a handler with many calls can be mended from the message alone. The codes stay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { testWorker } from 'velo-stream/testing';
import { Journal, jsonCodec } from '#testing';

/** How the messages name call `call` of session `sid`: `ctx.run("x") (journaled call 2 of session "k@..", key "k@../2")`. */
const named = (kind, name, call, sid) =>
  `ctx.${kind}(${JSON.stringify(name)}) (journaled call ${call} of session ${JSON.stringify(sid)}, key ${JSON.stringify(`${sid}/${call}`)})`;

/** Runs `body(ctx, e)` for one event on a test worker; its outputs' values, and the session's id. */
async function once(body, options = {}) {
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        try {
          await body(ctx, e);
          yield { ok: true };
        } catch (error) {
          yield { code: error.code, message: error.message };
        }
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { leaseTtl: 3000, ...options });
  tw.send('k', 1);
  await tw.advance(100);
  const outputs = tw.outputs();
  await tw.close();
  return { values: outputs.map((o) => o.value), sid: outputs[0]?.sid };
}

test('ERR_VELO_JOURNAL_TOO_LARGE names the record that would pass the limit: a result, or a chunk of a stream', async () => {
  const result = await once(
    async (ctx) => {
      await ctx.run('small', () => 'x'.repeat(10));
      await ctx.run('big', () => 'x'.repeat(200));
    },
    { maxJournalBytes: 100 },
  );
  assert.equal(result.values[0].code, 'ERR_VELO_JOURNAL_TOO_LARGE');
  assert.ok(
    result.values[0].message.startsWith(`The result of ${named('run', 'big', 2, result.sid)} would make `),
    result.values[0].message,
  );
  assert.match(
    result.values[0].message,
    /the journal of its session 214 bytes, more than the limit of 100 bytes \(maxJournalBytes\)/,
  );

  // (The stream's error end fits: the chunk's error is the one its handler sees.)
  const chunk = await once(
    async (ctx) => {
      await ctx.run('first', () => 1);
      for await (const c of ctx.stream('model', () => ['a'.repeat(10), 'b'.repeat(10), 'c'.repeat(1000)])) void c;
    },
    { maxJournalBytes: 1000 },
  );
  assert.equal(chunk.values[0].code, 'ERR_VELO_JOURNAL_TOO_LARGE');
  assert.ok(
    chunk.values[0].message.startsWith(`The chunk 2 of ${named('stream', 'model', 2, chunk.sid)} would make `),
    chunk.values[0].message,
  );
});

test('a result or a chunk the codec refuses, or over maxEventBytes, names its call (codes unchanged)', async () => {
  const refused = await once(async (ctx) => {
    await ctx.run('ok', () => 1);
    await ctx.run('fn', () => () => 1);
  });
  assert.equal(refused.values[0].code, 'ERR_INVALID_ARG_VALUE');
  assert.ok(
    refused.values[0].message.startsWith(`Could not encode the result of ${named('run', 'fn', 2, refused.sid)}: `),
    refused.values[0].message,
  );

  const large = await once(
    async (ctx) => {
      for await (const c of ctx.stream('model', () => ['a', 'b'.repeat(2000)])) void c;
    },
    // (The output that reports it, with its message, fits.)
    { maxEventBytes: 1000 },
  );
  assert.equal(large.values[0].code, 'ERR_VELO_EVENT_TOO_LARGE');
  assert.ok(
    large.values[0].message.startsWith(`The chunk 1 of ${named('stream', 'model', 1, large.sid)} is 2002 bytes encoded`),
    large.values[0].message,
  );
});

test("ctx.stream's factory that gives no iterable: the error names the call", async () => {
  const { values, sid } = await once(async (ctx) => {
    await ctx.run('a', () => 1);
    for await (const c of ctx.stream('s', () => 42)) void c;
  });
  assert.equal(values[0].code, 'ERR_INVALID_ARG_TYPE');
  assert.equal(
    values[0].message,
    `${named('stream', 's', 2, sid)}: the factory must return an iterable or async iterable. Received type number (42)`,
  );
});

test('a replay that diverges names both calls, their place and the session', async () => {
  const state = { name: 'price' };
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        try {
          yield { e, got: await ctx.run(state.name, () => 1) };
        } catch (error) {
          yield { e, message: error.message };
        }
      }
    },
    { idleTimeout: 60_000 },
  );
  const tw = testWorker(fn, { leaseTtl: 3000, onError: () => {} });
  tw.send('k', 1);
  await tw.advance(100);
  state.name = 'discount';
  tw.crash();
  await tw.advance(10_000);
  const diverged = tw.errors().find((e) => e?.code === 'ERR_VELO_JOURNAL_DIVERGED');
  const sid = tw.outputs()[0].sid;
  assert.ok(diverged.message.includes(`session ${JSON.stringify(sid)}'s journaled call 1 `), diverged.message);
  assert.match(diverged.message, /recorded as "price", and its replay asked "discount"/);
  await tw.close();
});

test('a recorded error that cannot be read back: ERR_VELO_DECODE naming the call, a result or a stream', async () => {
  const sid = 'k@1-0';
  const host = { codec: jsonCodec, maxEventBytes: 1 << 20, maxJournalBytes: 1 << 20, report: () => {} };
  const records = [
    { at: '1', kind: 'e', name: 'tool', payload: Buffer.from('not json') },
    { at: '2.end', kind: 'e', name: 'model', payload: Buffer.from('{') },
  ];
  const journal = new Journal(sid, 0, [{ sid, records }], host, String);
  const signal = { signal: new AbortController().signal, aborted: false };
  await assert.rejects(
    journal.run('tool', () => 1, signal),
    (error) => {
      assert.equal(error.code, 'ERR_VELO_DECODE');
      assert.equal(error.message, `The error recorded for ${named('run', 'tool', 1, sid)} could not be read back`);
      return true;
    },
  );
  await assert.rejects(
    (async () => {
      for await (const c of journal.stream('model', () => [], signal)) void c;
    })(),
    (error) => {
      assert.equal(error.code, 'ERR_VELO_DECODE');
      assert.equal(error.message, `The error recorded for ${named('stream', 'model', 2, sid)} could not be read back`);
      return true;
    },
  );
});
