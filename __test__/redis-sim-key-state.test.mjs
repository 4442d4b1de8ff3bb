// The Redis simulator against the reference model (helpers/redis-sim.mjs), with key state and every other capability at once. Split from redis-sim.test.mjs so that each file stays within the per-file timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { replayCommand, runSeed } from './helpers/redis-sim.mjs';

/** Seeds `from`..`to` as one test each slice of `size` (each stays well within the per-test timeout on a loaded machine). */
function slices(from, to, size) {
  const out = [];
  for (let start = from; start <= to; start += size) out.push([start, Math.min(to, start + size - 1)]);
  return out;
}

/** Seeds run with key state and every other capability at once by `npm test`. */
const KEY_STATE_SEEDS = 300;

/** Sessions that started from a kept state, over the key-state slices. */
let fromKey = 0;

for (const [from, to] of slices(1, KEY_STATE_SEEDS, 100)) {
  test(`seeds ${from}-${to} with key state, releases, debounce and limiters at once: each session starts from its key's state as docs/redis/versions.md says for the release that opened it, across deploys, migrations and hand-offs`, async () => {
    // The model takes each session's start (as it is, converted, or without the state) from the run; a check holds
    // each such decision to the docs' rule, and the scripted handler marks outputs made from a state it cannot read.
    const failed = [];
    const options = { versions: true, debounce: true, permits: true, keyState: true };
    for (let seed = from; seed <= to; seed++) {
      const result = await runSeed(seed, options);
      if (!result.ok) failed.push(`seed ${seed}: ${result.problems[0]} (replay: ${replayCommand(seed, undefined, options)})`);
      fromKey += result.stats.keyStateStarts;
    }
    assert.deepEqual(failed, [], `${failed.length} seeds failed`);
    if (to === KEY_STATE_SEEDS) assert.ok(fromKey > 0, 'no session started from a kept state');
  });
}
