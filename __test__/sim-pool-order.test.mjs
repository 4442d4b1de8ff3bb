// The simulator with a Postgres pool's order (helpers/redis-sim.mjs `poolOrderFor`): some of each process's calls
// apply late, after calls it made since, as a pool's transactions commit in any order. Each run must still make the
// model's sessions and outputs and settle with nothing kept for an ended session. With a session's end committed
// while one of its wake-ups was still in flight, the wake-up applied after the end and left the session's timer
// record (on Postgres: a session counted live for ever): seeds 12, 64, 93 and 99 did not settle.
import { seedSlices } from './helpers/sim-slices.mjs';

/** Seeds run with the pool's order by `npm test`. */
const POOL_SEEDS = 1000;

seedSlices("with calls applied out of order, as a pool's transactions commit: each run makes the model's sessions and settles", {
  from: 1,
  to: POOL_SEEDS,
  size: 250,
  options: { poolOrder: true },
});
