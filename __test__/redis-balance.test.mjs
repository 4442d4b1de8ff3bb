// A worker's balance as a pure decision (js/durable/rules/versions.ts, planBalance): its share counts only the workers
// no one supersedes, a superseded worker hands everything back, and while releases run different versions a worker
// hands back only what another release can run, and rescues what was refused to others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { planBalance } = require('../dist/durable/rules/versions.js');

const v1 = { version: 'v1', runs: ['v1'] };
const v2 = { version: 'v2', runs: ['v2', 'v1'] };
const v2only = { version: 'v2', runs: ['v2'] };
const held = (...parts) => parts.map(([partition, versions = []]) => ({ partition, versions: new Set(versions) }));

test('planBalance: the share counts the workers no one supersedes; a superseded worker hands all back', () => {
  // Two v1 workers and one v2 (which carries v1): the v1 workers are superseded, the v2 one takes all 8.
  const adverts = new Map([
    ['a', v1],
    ['b', v1],
    ['c', v2],
  ]);
  const old = planBalance({ adverts, live: 3, me: 'a', mine: v1, partitions: 8, held: held([0], [1], [2]) });
  assert.deepEqual(old, { superseded: true, share: 0, over: true, handBack: [0, 1, 2], rescue: false });
  const next = planBalance({ adverts, live: 3, me: 'c', mine: v2, partitions: 8, held: held([3]) });
  assert.deepEqual(next, { superseded: false, share: 8, over: false, handBack: [], rescue: false });
  // Two v2 workers beside a superseded v1: 4 each, not 8 / 3 rounded up.
  const two = new Map([...adverts, ['d', v2]]);
  assert.equal(planBalance({ adverts: two, live: 4, me: 'c', mine: v2, partitions: 8, held: [] }).share, 4);
  // A worker of a release that advertises nothing counts as one that runs no version: superseded by any advert.
  assert.equal(planBalance({ adverts: new Map([['c', v2]]), live: 2, me: 'c', mine: v2, partitions: 8, held: [] }).share, 8);
});

test('planBalance: with releases that do not carry each other, a worker keeps partitions only it can run and rescues refused ones', () => {
  // v1 and a v2 that does not carry v1: neither supersedes, the share is 2 of 4 each.
  const adverts = new Map([
    ['a', v1],
    ['c', v2only],
  ]);
  const plan = planBalance({
    adverts,
    live: 2,
    me: 'a',
    mine: v1,
    partitions: 4,
    held: held([0, ['v1']], [1, ['v1']], [2, []]),
  });
  // Over its share by one: only the partition with no v1 session may go (v2 can run it), and nothing is taken.
  assert.deepEqual(plan, { superseded: false, share: 2, over: true, handBack: [2], rescue: false });
  // Past its share with nothing another release can run: it hands nothing back and still rescues what was refused
  // to others (a v1 worker killed beside it leaves partitions only v1 workers can take).
  const stuck = planBalance({
    adverts,
    live: 2,
    me: 'a',
    mine: v1,
    partitions: 4,
    held: held([0, ['v1']], [1, ['v1']], [2, ['v1']]),
  });
  assert.deepEqual(stuck, { superseded: false, share: 2, over: false, handBack: [], rescue: true });
  // One release only: no rescue, and any partition past the share may go.
  const same = new Map([
    ['a', v1],
    ['b', v1],
  ]);
  const plain = planBalance({ adverts: same, live: 2, me: 'a', mine: v1, partitions: 2, held: held([0, ['v1']], [1, ['v1']]) });
  assert.deepEqual(plain, { superseded: false, share: 1, over: true, handBack: [0], rescue: false });
});

test("planBalance: of two migrating releases, the one that also runs the other's versions supersedes it", () => {
  const m2 = { version: 'v2', runs: ['v2', '*'] };
  const m3 = { version: 'v3', runs: ['v3', 'v2', '*'] };
  const adverts = new Map([
    ['b', m2],
    ['c', m3],
  ]);
  assert.equal(planBalance({ adverts, live: 2, me: 'b', mine: m2, partitions: 4, held: [] }).superseded, true);
  assert.equal(planBalance({ adverts, live: 2, me: 'c', mine: m3, partitions: 4, held: [] }).share, 4);
});
