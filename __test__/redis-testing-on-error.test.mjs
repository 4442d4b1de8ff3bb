// testWorker's `onError`: the option a worker's test passes as it passes the worker's. It gets each error the
// worker reports, as it is reported (the same ones `errors()` reads, in the same order); a test's assertion that
// throws there (or returns a promise that rejects) rejects the move of the clock that reported it; a value that is not a function is refused as
// redisWorker refuses it. checkDeterminism, whose runs crash at every commit, takes no onError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { checkDeterminism, testWorker } from 'velo-stream/testing';

/** A handler whose journaled call is renamed between two runs: its replay after a crash diverges. */
function renamed() {
  const state = { name: 'price' };
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        try {
          yield { e, got: await ctx.run(state.name, () => 1) };
        } catch (error) {
          yield { e, diverged: error.code };
        }
      }
    },
    { idleTimeout: 60_000 },
  );
  return { fn, state };
}

test('onError gets each error as the worker reports it: the ones errors() reads, in order, and no later', async () => {
  const { fn, state } = renamed();
  const got = [];
  const tw = testWorker(fn, { leaseTtl: 3000, onError: (error) => got.push({ error, at: tw.now() }) });
  tw.send('k', 1);
  await tw.advance(100);
  assert.deepEqual(got, []);
  state.name = 'discount';
  tw.crash();
  await tw.advance(10_000);
  const diverged = got.filter((g) => g.error?.code === 'ERR_VELO_JOURNAL_DIVERGED');
  assert.equal(diverged.length, 1, 'the divergence is reported to onError');
  assert.equal(diverged[0].error.name, 'JournalDivergedError');
  assert.ok(diverged[0].at > 100, 'reported during the move of the clock that replayed the session');
  // The same errors, the same objects, in the same order.
  assert.deepEqual(
    got.map((g) => g.error),
    tw.errors(),
  );
  for (const [i, g] of got.entries()) assert.equal(g.error, tw.errors()[i]);
  await tw.close();
});

const notDiverged = (error) => assert.notEqual(error?.code, 'ERR_VELO_JOURNAL_DIVERGED', 'no divergence');
for (const [kind, onError] of [
  ['throws (a test asserting there)', notDiverged],
  ['returns a rejected promise (an async assertion)', async (error) => notDiverged(error)],
]) {
  test(`an onError that ${kind} rejects the move of the clock, with its error; the run goes on`, async () => {
    const { fn, state } = renamed();
    const tw = testWorker(fn, { leaseTtl: 3000, onError });
    tw.send('k', 1);
    await tw.advance(100);
    state.name = 'discount';
    tw.crash();
    await assert.rejects(tw.advance(10_000), { code: 'ERR_ASSERTION', message: 'no divergence' });
    // Reported all the same, and the session answered: the next move is not refused for it.
    assert.ok(tw.errors().some((e) => e?.code === 'ERR_VELO_JOURNAL_DIVERGED'));
    assert.deepEqual(
      tw.outputs().map((o) => o.value),
      [{ e: 1, got: 1 }],
    );
    await tw.advance(100);
    await tw.close();
  });
}

test('an async onError that rejects after the last move of the clock rejects close() with its error', async () => {
  const { fn, state } = renamed();
  const tw = testWorker(fn, {
    leaseTtl: 3000,
    onError: async (error) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      notDiverged(error);
    },
  });
  tw.send('k', 1);
  await tw.advance(100);
  state.name = 'discount';
  tw.crash();
  // (The move may end before the rejection comes: then close() gets it.)
  let rejected = 0;
  try {
    await tw.advance(10_000);
  } catch (error) {
    assert.equal(error.message, 'no divergence');
    rejected++;
  }
  try {
    await tw.close();
  } catch (error) {
    assert.equal(error.message, 'no divergence');
    rejected++;
  }
  assert.equal(rejected, 1, 'the rejection fails the move or close(), once');
});

test('onError is checked as redisWorker checks it; checkDeterminism takes none', async () => {
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  });
  for (const onError of ['log', 1, null, {}]) {
    assert.throws(
      () => testWorker(fn, { onError }),
      { code: 'ERR_INVALID_ARG_TYPE', message: /options\.onError must be a function/ },
      String(onError),
    );
  }
  // (undefined: absent, as for every option.)
  await testWorker(fn, { onError: undefined }).close();
  await assert.rejects(checkDeterminism(fn, [], { onError: () => {} }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /unknown option "onError"/,
  });
});
