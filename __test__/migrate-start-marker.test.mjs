// Answers that begin with a start marker, an output yielded before the answer's first journaled call, as
// docs/durable/migrate.md advises, across `migrate`. Readers must get each answer once: the marker once per version
// that begins it, each chunk once, one end.
// - Adopted in flight after the old version streamed some chunks: the new version's marker came before any record was
//   taken, so it was taken for another answer and written whole after the old one's (the same chunks again, from the
//   records).
// - Taken over by the adopting version's next owner while its marker for a later question was written and no chunk
//   recorded: the marker, written by the same version, was taken for the old version's answer in flight and written
//   again; or, with no checkpoint since the adoption, its marker for a question past the one adopted in flight was
//   taken for that one's (another answer) and written again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { testWorker } from 'velo-stream/testing';

/**
 * A streamed model that answers `q` in `length` chunks, continuing a recorded prefix; held before its first chunk
 * (or, with `stallAfter`, after that many) while `gate.held`.
 */
function model(gate, length, stallAfter = 0) {
  return async function* (q, chunks) {
    for (let i = chunks.length; i < length; i++) {
      while (gate.held && i === stallAfter) await new Promise((resolve) => gate.waiters.push(resolve));
      yield `${q}:${i}`;
    }
  };
}

const gateOf = () => ({ held: false, waiters: [] });
const open = (gate) => {
  gate.held = false;
  for (const resolve of gate.waiters.splice(0)) resolve();
};

/**
 * The handler: a start marker, a turn of the event loop (as a handler that looks something up before it calls the
 * model: the marker is taken from it meanwhile), the model's chunks through `ctx.stream`, an end, a checkpoint.
 */
const answering = (stream, checkpoints = true) =>
  streamFn(
    async function* (questions, ctx) {
      const asked = ctx.restored?.asked ?? [];
      for await (const { q } of questions) {
        yield { q, start: true };
        await new Promise((resolve) => setImmediate(resolve));
        for await (const t of ctx.stream('model', ({ chunks }) => stream(q, chunks))) yield { q, t };
        yield { q, done: true };
        asked.push(q);
        if (checkpoints) ctx.checkpoint({ asked });
      }
    },
    { idleTimeout: 600_000 },
  );

/** The outputs read back for question `q`, as text, in seq order. */
const answerTo = (tw, q) =>
  tw
    .outputs()
    .filter((o) => o.value?.q === q)
    .map((o) => (o.value.start ? 'start' : o.value.done ? 'done' : o.value.t));

/**
 * v2 begins its answer to question 2 (its marker written, its model held by `gate`), then its worker crashes: the
 * next owner answers it once, question 1's answer as it was.
 */
async function crashAtNextMarker(tw, gate) {
  gate.held = true;
  tw.send('c', { q: 'q2' });
  await tw.advance(1000);
  assert.deepEqual(answerTo(tw, 'q2'), ['start'], 'v2 began the answer, its model not yet answering');
  tw.crash();
  open(gate);
  await tw.advance(10_000);
  assert.deepEqual(answerTo(tw, 'q1'), ['start', 'q1:0', 'q1:1', 'q1:2', 'done']);
  assert.deepEqual(answerTo(tw, 'q2'), ['start', 'q2:0', 'q2:1', 'q2:2', 'done'], 'one answer, its start once');
  assert.deepEqual(
    tw.errors().map((e) => e.code),
    [],
  );
  await tw.close();
}

test('an answer in flight that began with a start marker is continued from the journal by the adopting version', async () => {
  const gate = gateOf();
  const tw = testWorker(answering(model(gate, 4, 2)), { version: 'v1', leaseTtl: 3000 });
  gate.held = true;
  tw.send('c', { q: 'q1' });
  await tw.advance(100);
  assert.deepEqual(answerTo(tw, 'q1'), ['start', 'q1:0', 'q1:1'], 'v1 began the answer and streamed two chunks');
  tw.deploy(answering(model(gateOf(), 4)), { version: 'v2', migrate: (state) => state });
  tw.crash();
  open(gate);
  await tw.advance(10_000);
  assert.deepEqual(answerTo(tw, 'q1'), ['start', 'q1:0', 'q1:1', 'q1:2', 'q1:3', 'done'], 'one answer, continued');
  assert.equal(tw.stats().migrated, 1);
  assert.deepEqual(
    tw.errors().map((e) => e.code),
    [],
  );
  await tw.close();
});

test("the adopting version's next owner writes its own start marker once", async () => {
  const gate = gateOf();
  const tw = testWorker(answering(model(gate, 3)), { version: 'v1', leaseTtl: 3000 });
  tw.send('c', { q: 'q1' });
  await tw.advance(1000);
  tw.deploy(answering(model(gate, 3)), { version: 'v2', migrate: (state) => state });
  await tw.advance(5000);
  await tw.stop('v1');
  await tw.advance(5000);
  await crashAtNextMarker(tw, gate);
});

test("with no checkpoint, the adopting version's next owner writes its marker for a later question once", async () => {
  const gate = gateOf();
  const tw = testWorker(answering(model(gate, 4, 2), false), { version: 'v1', leaseTtl: 3000 });
  gate.held = true;
  tw.send('c', { q: 'q1' });
  await tw.advance(100);
  assert.deepEqual(answerTo(tw, 'q1'), ['start', 'q1:0', 'q1:1']);
  const next = gateOf();
  tw.deploy(answering(model(next, 3), false), { version: 'v2', migrate: (state) => state });
  tw.crash();
  await tw.advance(10_000);
  assert.deepEqual(answerTo(tw, 'q1'), ['start', 'q1:0', 'q1:1', 'q1:2', 'done'], 'v2 continued the answer in flight');
  await crashAtNextMarker(tw, next);
});
