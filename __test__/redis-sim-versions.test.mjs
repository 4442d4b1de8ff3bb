// The Redis simulator against the reference model (helpers/redis-sim.mjs), with releases, seeds 1-300. Apart from redis-sim.test.mjs so
// that each file stays within the per-file timeout.
import { VERSION_SEEDS, versionSlices } from './helpers/sim-versions.mjs';

versionSlices(1, VERSION_SEEDS / 2, [], 40);
