// The benchmark scenarios compute the right thing (each variant checks its own
// outputs: counts, values, identity). Run tiny, once each; no timing is asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scenarios } from '../bench/scenarios.mjs';

for (const sc of scenarios('test')) {
  test(`bench ${sc.id}: every variant produces the expected outputs`, async () => {
    assert.ok(Object.keys(sc.variants).includes('velo'));
    for (const [name, run] of Object.entries(sc.variants)) {
      const result = await run();
      assert.ok(result !== undefined, `${name} returned a measurement`);
    }
  });
}
