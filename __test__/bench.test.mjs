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

test('bench S9 in process: both endpoints answer the request right, and the harness exits cleanly', async () => {
  const { run } = await import('./helpers/child.mjs');
  const script = new URL('../bench/http/inprocess.mjs', import.meta.url).pathname;
  // (It checks each endpoint's answer before measuring; 20 requests a round.
  // run() checks the exit code and that stderr is clean.)
  const { stdout } = await run([script, 'velo', '20']);
  assert.match(stdout, /^velo +[\d.]+ µs\/request$/m);
});
