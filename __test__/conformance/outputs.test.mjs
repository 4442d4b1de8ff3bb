// Contract: hostile values made by the user's function as outputs, the same answer for every kind (cells.mjs),
// made where the function runs (a worker's own thread included). An output is awaited as `await value` would
// be (a generator's `yield`, a task's result): a revoked proxy fails the stream with a TypeError, and a thenable
// whose `then` throws fails it with that error, each after the outputs before it; a thenable's first
// resolution counts, anything it does after is ignored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KINDS, through } from './cells.mjs';

for (const kind of Object.keys(KINDS)) {
  test(`${kind}: an output that is a revoked proxy fails the stream with a TypeError after the outputs before it`, async () => {
    const { out, error } = await through(kind, [{ i: 1 }, { make: 'revoked' }, { i: 2 }]);
    assert.deepEqual(out, [{ i: 1 }]);
    assert.equal(error?.name, 'TypeError');
  });

  test(`${kind}: an output whose then() throws fails the stream with that error after the outputs before it`, async () => {
    const { out, error } = await through(kind, [{ i: 1 }, { make: 'then throws' }, { i: 2 }]);
    assert.deepEqual(out, [{ i: 1 }]);
    assert.deepEqual(error, { name: 'Error', code: 'E_THEN', message: 'then threw' });
  });

  test(`${kind}: a thenable output counts its first resolution; what it does after is ignored`, async () => {
    for (const make of ['then twice', 'then resolves, throws']) {
      const { out, error } = await through(kind, [{ i: 1 }, { make }, { i: 2 }]);
      assert.equal(error, undefined, make);
      assert.deepEqual(out, [{ i: 1 }, { i: make === 'then twice' ? 'first' : 'resolved' }, { i: 2 }], make);
    }
  });
}
