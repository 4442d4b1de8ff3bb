// The Redis simulator against the reference model (helpers/redis-sim.mjs), with releases, debounce and limiters at once. Apart from redis-sim.test.mjs so
// that each file stays within the per-file timeout.
import { seedSlices } from './helpers/sim-slices.mjs';

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

seedSlices("with releases, debounce and limiters at once: the faulty run makes the model's sessions and outputs", {
  from: 1,
  to: ALL_SEEDS,
  size: 100,
  options: { versions: true, debounce: true, permits: true },
  extra: ALL_FOUND.map(([seed]) => seed),
});
