// Contract: hostile values as events, per kind (cells.mjs), with the result the README documents. On the main
// thread (generator, task, batch) a value passes as it is, the same value (undefined only filters a task's
// item out, as a result of undefined does); across a worker thread it crosses by structured clone: a BigInt
// crosses, a function or a symbol fails the stream with a DataCloneError after the events before it, a view
// over a SharedArrayBuffer is shared, and a bare SharedArrayBuffer is refused (ERR_VELO_SHARED_ARRAY_BUFFER).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { through as throughKind } from './cells.mjs';

const fn = () => 1;
const sym = Symbol('s');
const inProcess = ['generator', 'task', 'batch'];
const workers = ['worker', 'worker transfer'];

/** Sends the values, then { i: 'after' }, while reading; the outputs, and the error (its name and code) if the stream failed. */
async function through(kind, values) {
  const { out, error } = await throughKind(kind, [...values, { i: 'after' }]);
  return error === undefined ? { out } : { out, error: { name: error.name, code: error.code } };
}

for (const kind of inProcess) {
  test(`${kind}: undefined, a function, a symbol, a BigInt, -0 and NaN pass as they are`, async () => {
    const { out, error } = await through(kind, [undefined, fn, sym, 10n, -0, NaN]);
    assert.equal(error, undefined);
    // (A task's or batch's result of undefined filters its item out.)
    const expected =
      kind === 'generator' ? [undefined, fn, sym, 10n, -0, NaN, { i: 'after' }] : [fn, sym, 10n, -0, NaN, { i: 'after' }];
    assert.equal(out.length, expected.length);
    expected.forEach((v, i) =>
      typeof v === 'object' ? assert.deepEqual(out[i], v) : assert.ok(Object.is(out[i], v), `${kind} #${i}`),
    );
  });
}

for (const kind of workers) {
  test(`${kind}: a BigInt, -0, NaN and undefined cross; a function or a symbol fails the stream after the events before it`, async () => {
    const ok = await through(kind, [10n, -0, NaN, undefined]);
    assert.equal(ok.error, undefined);
    assert.equal(ok.out.length, 5);
    assert.ok(Object.is(ok.out[1], -0) && Number.isNaN(ok.out[2]) && ok.out[0] === 10n && ok.out[3] === undefined);
    for (const bad of [fn, sym]) {
      const r = await through(kind, [{ i: 1 }, { i: 2 }, bad]);
      assert.deepEqual(r.out, [{ i: 1 }, { i: 2 }], String(bad));
      assert.equal(r.error?.name, 'DataCloneError', String(bad));
    }
  });

  test(`${kind}: a view over a SharedArrayBuffer is shared; a bare one is refused with ERR_VELO_SHARED_ARRAY_BUFFER`, async () => {
    const sab = new SharedArrayBuffer(8);
    const view = new Uint8Array(sab);
    if (typeof process.versions.bun === 'string') {
      // Bun's node:v8 has no Serializer: the memory cannot be shared, and the view is refused (docs/runtimes.md).
      const refused = await through(kind, [{ i: 1 }, view]);
      assert.deepEqual(refused.out, [{ i: 1 }]);
      assert.deepEqual(refused.error, { name: 'DataCloneError', code: 'ERR_VELO_RUNTIME_UNSUPPORTED' });
    } else {
      const shared = await through(kind, [view]);
      assert.equal(shared.error, undefined);
      assert.ok(shared.out[0].buffer instanceof SharedArrayBuffer, 'the output is a view over shared memory');
      shared.out[0][0] = 7;
      assert.equal(view[0], 7, 'the same memory');
    }
    const bare = await through(kind, [{ i: 1 }, sab]);
    assert.deepEqual(bare.out, [{ i: 1 }]);
    assert.deepEqual(bare.error, { name: 'DataCloneError', code: 'ERR_VELO_SHARED_ARRAY_BUFFER' });
  });
}

test(
  'worker: a send made after a refused event settles in a script that does nothing else (in-process it rejects at once)',
  async () => {
    const { run } = await import('../helpers/child.mjs');
    const cellsUrl = new URL('./cells.mjs', import.meta.url).href;
    const { stdout } = await run(
      [
        '--input-type=module',
        '-e',
        `const { KINDS } = await import(${JSON.stringify(cellsUrl)});
         const s = KINDS.worker.make().open();
         await s.send({ i: 1 });
         await s.send(() => 1).catch(() => {});
         console.log(await s.send({ i: 2 }).then(() => 'resolved', (e) => e.code));`,
      ],
      { timeout: 15_000 },
    );
    assert.equal(stdout, 'ERR_VELO_STREAM_CLOSED\n');
  },
);
