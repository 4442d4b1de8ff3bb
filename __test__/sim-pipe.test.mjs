// The simulator with a pipe as the session's function (helpers/redis-sim.mjs `--pipe`): the scripted handler is the
// first stage, its outputs passed on by a second; a stream without the session's hooks, given its entries as they
// come, whose events make outputs and ends only. Each run must make the model's sessions, ended when the model ends
// them. Seeds 48 and 50 catch a session whose idle end no tick was set for (it never ended: the run did not
// settle); 288 and 295 a replay past a session's end that recorded the rule's end where its handler had returned or
// thrown on an entry the rule gave it with that end.
import { seedSlices } from './helpers/sim-slices.mjs';

seedSlices("with a pipe as the session's function: each run makes the model's sessions and settles", {
  from: 1,
  to: 600,
  size: 600,
  options: { pipe: true },
});

seedSlices("with a pipe, calls stalled until cut, applied out of order, and clocks skewed: each run makes the model's sessions", {
  from: 1,
  to: 200,
  size: 200,
  options: { pipe: true, cut: true, poolOrder: true, clockSkew: true },
});
