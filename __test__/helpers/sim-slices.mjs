// The simulator's seed ranges as node:test tests, a slice of seeds each (each slice well within the per-test timeout
// on a loaded machine; each file of slices within the per-file one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { replayCommand, runSeed } from './redis-sim.mjs';

/**
 * Registers one test per slice of `size` seeds of `from`..`to` (then `extra`, in the last), each seed run with
 * `options` (runSeed's): every seed must pass, but those of `known` (a defect found and not fixed yet, which the
 * caller names), which are not run. `each(result)` sees every result (for counts over the slices).
 */
export function seedSlices(title, { from, to, size, options, extra = [], known = [], each }) {
  for (let start = from; start <= to; start += size) {
    const end = Math.min(to, start + size - 1);
    const last = end === to;
    test(`seeds ${start}-${end}${last && extra.length > 0 ? ' and those found' : ''} ${title}`, async () => {
      const failed = [];
      const seeds = Array.from({ length: end - start + 1 }, (_, i) => start + i).filter((seed) => !known.includes(seed));
      if (last) seeds.push(...extra);
      for (const seed of seeds) {
        const result = await runSeed(seed, options);
        each?.(result);
        if (!result.ok) failed.push(`seed ${seed}: ${result.problems[0]} (replay: ${replayCommand(seed, undefined, options)})`);
      }
      assert.deepEqual(failed, [], `${failed.length} seeds failed`);
    });
  }
}
