// The simulator with releases and questions answered in tokens (helpers/redis-sim.mjs `--answers`): a migrating
// release answers in fewer tokens than the release before it, and deploys, crashes and hand-offs come mid-answer.
// Every question must get exactly one end, after its whole answer by the version that ended it (an answer given up
// at an adoption may come before), and a migrated session must report no divergence (checkReplay as drawn).
//
// Found here, before the fix: an answer in flight at an adoption, longer in the old version than the new, lost its
// end (the new version's outputs were matched to the old ones by position and all taken as written: 16, 31, 39, ...)
// or was one answer's head and another's tail (37): 41 of these 300 seeds failed; and a migrated session that wrote
// nothing past its old version's outputs was reported as diverged, kind `count` (243, 250, 277, ...: 19 of 300).
import { seedSlices } from './helpers/sim-slices.mjs';

/** Seeds run with answers by `npm test`. */
const ANSWER_SEEDS = 300;

seedSlices('with releases that answer in fewer tokens: every question gets one whole answer, no divergence', {
  from: 1,
  to: ANSWER_SEEDS,
  size: 150,
  options: { versions: true, answers: true },
});

// Six partitions with keys whose events come at once (`--wide`), a slow `migrate` (a half lease each), limiters and
// skewed clocks. Found here: 215300, whose migrating worker took several partitions at once and opened a session of
// each (a slow `migrate` apiece) before its leases' renewal, due meanwhile, could run; it lost them all and took them
// again, for ever (the calm run never settled). The slice of openings per turn is now the worker's, not a partition's.
seedSlices('with six partitions, answers, journaled calls, limiters and skewed clocks: every run settles', {
  from: 1,
  to: 50,
  size: 50,
  options: { permits: true, versions: true, clockSkew: true, answers: true, journal: true, wide: true },
  extra: [215300],
});
