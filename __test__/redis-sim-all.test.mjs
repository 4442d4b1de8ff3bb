// The Redis simulator against the reference model (helpers/redis-sim.mjs), with releases, debounce and limiters at once. Split from redis-sim.test.mjs so that each file stays within the per-file timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { replayCommand, runSeed } from './helpers/redis-sim.mjs';

/** Seeds `from`..`to` as one test each slice of `size` (each stays well within the per-test timeout on a loaded machine). */
function slices(from, to, size) {
  const out = [];
  for (let start = from; start <= to; start += size) out.push([start, Math.min(to, start + size - 1)]);
  return out;
}

/** Seeds run with every capability on at once by `npm test`. */
const ALL_SEEDS = 300;

/**
 * Seeds past the CI range that once failed with every capability on, each with what it found (seed 126, in the
 * range, found the second as well).
 */
const ALL_FOUND = [
  // A permit granted to a process paused past its lease came back only a lease after it was granted, not a lease
  // after the pause began (the simulated limiter; a redisLimiter's holder stops renewing when it pauses).
  [69301, "a paused holder's permit kept past the lease"],
  // A permit's grant held by a pause became a keep-alive callback: a quiet span moved it an hour on, and the fleet,
  // waiting for that permit (a session limiter of 1), did not settle (the simulator's process clock).
  [75043, 'work held by a pause postponed over a quiet span'],
];

for (const [from, to] of slices(1, ALL_SEEDS, 100)) {
  test(`seeds ${from}-${to}${to === ALL_SEEDS ? ' and those found' : ''}, with releases, debounce and limiters at once: the faulty run makes the model's sessions and outputs`, async () => {
    const failed = [];
    const options = { versions: true, debounce: true, permits: true };
    const seeds = Array.from({ length: to - from + 1 }, (_, i) => from + i);
    if (to === ALL_SEEDS) seeds.push(...ALL_FOUND.map(([seed]) => seed));
    for (const seed of seeds) {
      const result = await runSeed(seed, options);
      if (!result.ok) failed.push(`seed ${seed}: ${result.problems[0]} (replay: ${replayCommand(seed, undefined, options)})`);
    }
    assert.deepEqual(failed, [], `${failed.length} seeds failed`);
  });
}
