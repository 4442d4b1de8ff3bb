// The Redis simulator with releases that each have a debounce of their own (another wait or edge, or none): a
// session keeps the debounce it opened with across hand-overs, as it keeps its caps, so each run makes the model's
// sessions and outputs with each session grouped as the release that opened it groups. Re-introduced (every owner
// debouncing with its own options), 28 of seeds 1-60 fail (2, 4, 5, 7, 9, ...): a replay grouped the entries
// otherwise, its outputs took seqs already written, and the rest were lost.
import { seedSlices } from './helpers/sim-slices.mjs';

for (const keyState of [false, true]) {
  seedSlices(
    `with releases of their own debounce${keyState ? ', and key state' : ''}: each session keeps the debounce it opened with`,
    {
      from: 1,
      to: 80,
      size: 40,
      options: { versions: true, debounce: true, releaseDebounce: true, keyState },
    },
  );
}
