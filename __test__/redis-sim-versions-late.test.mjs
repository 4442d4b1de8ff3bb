// The Redis simulator against the reference model (helpers/redis-sim.mjs), with releases, seeds 301-600 and those found. Apart from redis-sim.test.mjs so
// that each file stays within the per-file timeout.
import { VERSION_FOUND, VERSION_SEEDS, versionSlices } from './helpers/sim-versions.mjs';

versionSlices(VERSION_SEEDS / 2 + 1, VERSION_SEEDS, VERSION_FOUND, 40);
