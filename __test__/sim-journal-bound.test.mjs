// The simulator with the journal's bound (helpers/sim-journal-bound.mjs): keys whose events make journaled calls of
// drawn sizes under a small `maxJournalBytes`, in bursts and apart, with crashes, hand-offs and deploys. Whether a
// call is refused must be what the bound says of the session's records since its last checkpoint call, in every run.
// Counted at the commit of a checkpoint instead of at its call, 36 of seeds 1-40 refused calls the bound allows. A
// refusal not recorded was called again by the next owner: a release adopting an answer in flight then took its
// outputs for another answer and wrote it again (seeds 39, 59, 79 and 98 with releases).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { boundSeen } from './helpers/sim-journal-bound.mjs';
import { seedSlices } from './helpers/sim-slices.mjs';

seedSlices('with journaled calls under a small maxJournalBytes: the calls refused are those the bound names', {
  from: 1,
  to: 150,
  size: 150,
  options: { journalBound: true },
});

seedSlices(
  'with journaled calls under a small maxJournalBytes and releases deployed: the same refusals, no answer written again',
  {
    from: 1,
    to: 150,
    size: 150,
    options: { journalBound: true, versions: true },
  },
);

seedSlices('with journaled calls under a small maxJournalBytes, releases deployed and calls stalled until cut', {
  from: 1,
  to: 50,
  size: 50,
  options: { journalBound: true, versions: true, cut: true },
});

test('the runs above both kept and refused calls', () => {
  assert.ok(boundSeen.kept > 1000 && boundSeen.refused > 1000, JSON.stringify(boundSeen));
});
