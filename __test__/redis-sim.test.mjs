// The Redis tier under the deterministic simulator (js/durable/testing/simulator.ts): the real PartitionRun, sessions and core
// streams on the in-memory log, with crashes, pauses past the lease, takeovers and lost, refused and late replies.
// A crash or a takeover must change nothing a reader sees: each seed's faulty run and its calm run must both make
// the sessions and outputs the reference model (helpers/session-model.mjs) computes from the log's entry ids
// (helpers/redis-sim.mjs). A failing seed names the command that replays it with its trace; many more seeds:
// `npm run sim`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { heldBounds, simulate } from '#testing';
import { permitsFor, replayCommand, runSeed, scripted } from './helpers/redis-sim.mjs';

/** Seeds run by `npm test` (a few seconds); `npm run sim` runs as many as asked. */
const CI_SEEDS = 300;

test(`seeds 1-${CI_SEEDS}: each run, faulty and calm, makes the sessions and outputs of the model`, async () => {
  const failed = [];
  for (let seed = 1; seed <= CI_SEEDS; seed++) {
    const result = await runSeed(seed);
    if (!result.ok) failed.push(`seed ${seed}: ${result.problems[0]} (replay: ${replayCommand(seed)})`);
  }
  assert.deepEqual(failed, [], `${failed.length} of ${CI_SEEDS} seeds failed`);
});

/** Seeds past the CI range that once failed, each with what it found. */
const FOUND = [
  [5541, 'a tick due while another was in flight'],
  [11063, 'a tick due while another was in flight'],
  [11322, 'a tick due while another was in flight'],
  [11343, 'a tick due while another was in flight'],
  [13243, 'a tick due while another was in flight'],
  [16668, 'a tick due while another was in flight'],
  [3562, "a wake-up held behind its key's events counted as the next event, at the event cap"],
  [18083, 'a checkpoint committed before the throw that followed it in the same step: restored, the throw was lost'],
  [32426, "a wake-up's late reply set a tick for a timer taken meanwhile, in place of the idle end's"],
  [
    8277,
    'a wake-up read before its session was restored from its checkpoint (no slot free yet) must start the restore, not be acked',
  ],
];

test('seeds found by longer runs: each run, faulty and calm, makes the sessions and outputs of the model', async () => {
  const failed = [];
  for (const [seed, what] of FOUND) {
    const result = await runSeed(seed);
    if (!result.ok) failed.push(`seed ${seed} (${what}): ${result.problems[0]} (replay: ${replayCommand(seed)})`);
  }
  assert.deepEqual(failed, []);
});

test('a seed replays exactly: the same outputs, entry ids, errors and steps', async () => {
  for (const seed of [3, 17, 99]) {
    const [a, b] = [await runSeed(seed), await runSeed(seed)];
    assert.deepEqual(b.actual, a.actual);
    assert.deepEqual(b.stats, a.stats);
    assert.deepEqual(b.problems, a.problems);
  }
});

// Two ways a takeover could change a session, as scenarios of their own: a restore's idle end, and the timer cap.
const T = 1_000_100;
const LIMITS = { leaseTtl: 600, readCount: 16, maxBufferedEvents: 64 };
const FN = { idleTimeout: 1000, maxConcurrent: 8 };

/** The outputs of key `k` as `[seq, input tag]`, per session in the order written. */
async function outputsOf(events, { crashAt = [], slow = false, limits = LIMITS } = {}) {
  const result = await simulate({
    seed: 1,
    fn: (delay) => scripted(slow ? delay : () => Promise.resolve(), FN),
    events,
    limits,
    faults: { crashAt },
  });
  assert.deepEqual(result.violations, []);
  const sessions = new Map();
  for (const o of result.outputs.filter((item) => item.key === 'k')) {
    const tag = o.value?.in ?? o.error.code;
    sessions.set(o.sid, [
      ...(sessions.get(o.sid) ?? []),
      o.value?.refused?.length > 0 ? `${tag} refused ${o.value.refused}` : tag,
    ]);
  }
  return [...sessions.values()];
}

test('a restored session keeps its idle end from the latest time it had seen, not from a timer due in the past', async () => {
  // E1 (entry time T) carries a producer time T-300; its timer A is due at T-299 (already due) and, handled, makes
  // B due at T+851 and checkpoints. Crash-free: one session E1, A, B (its idle end is T+1000). Killed just after the
  // checkpoint's commit, the next owner must restore the same idle end.
  const e1 = {
    tag: 'E1',
    at: T - 300,
    timers: [{ after: 1, tag: 'A', timers: [{ after: 1150, tag: 'B' }], checkpoint: true }],
  };
  const events = [{ at: T, key: 'k', event: e1 }];
  assert.deepEqual(await outputsOf(events), [['E1', 'A', 'B']]);
  assert.deepEqual(await outputsOf(events, { crashAt: [T + 1] }), [['E1', 'A', 'B']]);
  // With a second event at T+800 instead of B: it belongs to the same session, crash or not.
  const e1b = { tag: 'E1', at: T - 300, timers: [{ after: 1, tag: 'A', checkpoint: true }] };
  const split = [
    { at: T, key: 'k', event: e1b },
    { at: T + 800, key: 'k', event: { tag: 'E2', at: T + 800 } },
  ];
  assert.deepEqual(await outputsOf(split), [['E1', 'A', 'E2']]);
  assert.deepEqual(await outputsOf(split, { crashAt: [T + 1] }), [['E1', 'A', 'E2']]);
});

test('maxSessionTimers counts the timers not yet taken, live or after a takeover (generator seed 781)', async () => {
  // Seed 781 (crash and slow handler): a session restored from a checkpoint with two pending timers; the one whose
  // wake-up the crashed owner had written counted as gone at once after the takeover, so a timer the calm run
  // refuses was made.
  const result = await runSeed(781, { only: ['crash', 'slow'] });
  assert.deepEqual(result.actual, result.expected, replayCommand(781, ['crash', 'slow']));
});

test('far-apart events cost steps for what happens around them, not for the time between: a quiet span moves the clock on at once', async () => {
  const DAY = 86_400_000;
  const run = (gap) =>
    simulate({
      seed: 1,
      fn: () => scripted(() => Promise.resolve(), FN),
      events: [0, 1, 2].map((n) => ({ at: T + n * gap, key: 'k', event: { tag: `E${n}`, at: T + n * gap } })),
      limits: LIMITS,
      settleWithin: DAY,
    });
  const [near, far] = [await run(10_000), await run(DAY)];
  for (const result of [near, far]) {
    assert.deepEqual(result.violations, []);
    assert.equal(result.outcome, 'done');
  }
  // The same three sessions, each with its one output.
  const tags = (result) => result.outputs.map((o) => o.value.in);
  assert.deepEqual(tags(far), ['E0', 'E1', 'E2']);
  assert.deepEqual(tags(far), tags(near));
  // The leases were kept over the span: no takeover, as none 10 s apart.
  assert.equal(far.stats.takeovers, near.stats.takeovers);
  assert.equal(near.stats.jumps, 0);
  assert.equal(far.stats.jumps, 2);
  // Two days with a 600 ms lease: 576 000 renewals stepped through; postponed over, no more steps than 10 s apart.
  assert.ok(far.stats.steps <= near.stats.steps + 20, `${far.stats.steps} steps two days apart, ${near.stats.steps} 10 s apart`);
  assert.ok(far.stats.time >= 2 * DAY);
});

test("a key's entries left in the pending list: its next input is the first event among them, not a marker or a wake-up", async () => {
  // With one read's worth of entries held (not 64), the small runs of the seeds go past it and leave entries in the
  // pending list. Seed 27 there: a session at maxSessionEvents whose key had only its wake-up left in the pending
  // list took that for its next event and ended with ERR_VELO_SESSION_EVENTS, where the model ends it by its age.
  const saved = heldBounds.batches;
  heldBounds.batches = 1;
  try {
    const result = await runSeed(27);
    assert.ok(result.ok, `${result.problems[0]} (${replayCommand(27)} with heldBounds.batches = 1)`);
  } finally {
    heldBounds.batches = saved;
  }
});

/** Seeds that once failed with one read's worth of entries held (`heldBounds.batches = 1`), each with what it found. */
const FOUND_HELD = [
  [539, "a reread of a live session's entries cut short by the share's room: the rest never read, the session never ended"],
  [22, 'the same, with two partitions'],
  [54, 'the same, in the faulty run only'],
  [940, 'the same, in both runs'],
  [2616, "a reread's free slot went to a key whose entries opened no session: the key left out was never read again"],
  [4046, 'the same'],
];

test('seeds found with one read of entries held: each run settles and makes the sessions and outputs of the model', async () => {
  // Seed 539, calm: session c waits for its next event, left in the pending list with the event before it; a
  // reread's share had room for one of the two, and the pass ended there. The log had been read to its end and its
  // clock was past the session's idle end (no tick to write), so nothing started another pass: never settled.
  const saved = heldBounds.batches;
  heldBounds.batches = 1;
  try {
    const failed = [];
    for (const [seed, what] of FOUND_HELD) {
      const result = await runSeed(seed);
      if (!result.ok)
        failed.push(`seed ${seed} (${what}): ${result.problems[0]} (replay: ${replayCommand(seed)} --held-batches 1)`);
    }
    assert.deepEqual(failed, []);
  } finally {
    heldBounds.batches = saved;
  }
});

/** Seeds run with limiters by `npm test` (`npm run sim -- --permits` runs as many as asked). */
const PERMIT_SEEDS = 150;

test(`seeds 1-${PERMIT_SEEDS} with limiters on sessions and steps: the faulty run, waiting for permits, makes the sessions and outputs of the model and of the calm run without them`, async () => {
  // Each seed's faulty run takes permits of a session limiter, a step limiter or both (permitsFor: concurrency 1 or
  // 2 shared by the processes, grants that reach their process late, acquires refused now and then, a crashed
  // process's permits back a lease later); its calm run takes none. A wait for a permit is a slow handler: the rule
  // decides by log times only, so both must make what the model computes from the log.
  const failed = [];
  const reached = { session: 0, step: 0 };
  for (let seed = 1; seed <= PERMIT_SEEDS; seed++) {
    const permits = permitsFor(seed);
    const result = await runSeed(seed, { permits: true });
    if (!result.ok)
      failed.push(`seed ${seed}: ${result.problems[0]} (replay: ${replayCommand(seed, undefined, { permits: true })})`);
    for (const kind of ['session', 'step']) {
      const used = result.stats.permits?.[kind];
      if (permits[kind] === undefined) continue;
      assert.ok(used.max <= permits[kind], `seed ${seed}: ${used.max} ${kind} permits held at once, over ${permits[kind]}`);
      if (used.max === permits[kind]) reached[kind]++;
    }
  }
  assert.deepEqual(failed, [], `${failed.length} of ${PERMIT_SEEDS} seeds failed`);
  // Not vacuous: in many seeds the limits were reached (sessions and steps waited).
  assert.ok(reached.session >= 30 && reached.step >= 30, `limits reached: ${JSON.stringify(reached)}`);
});

test('a session limiter of concurrency 1 shared by the processes: sessions of three keys run one at a time, and split as without it', async () => {
  // Three keys, each with two bursts an idle period apart: six sessions, interleaved in the log. With one permit
  // for the fleet, each session waits for the one before to end (by the log's clock: ticks), and takes what the
  // log says it takes.
  const events = [];
  for (const [i, key] of ['a', 'b', 'c'].entries()) {
    for (const at of [T + i, T + 10 + i, T + 3000 + i, T + 3010 + i])
      events.push({ at, key, event: { tag: `${key}${at - T}`, at } });
  }
  events.sort((x, y) => x.at - y.at);
  const run = (permits, crashAt = []) =>
    simulate({
      seed: 7,
      fn: (delay) => scripted(delay, FN),
      events,
      limits: LIMITS,
      faults: { crashAt },
      ...(permits === undefined ? {} : { permits }),
    });
  const tags = (result) => {
    const bySid = new Map();
    for (const o of result.outputs) bySid.set(o.sid, [...(bySid.get(o.sid) ?? []), o.value.in]);
    return [...bySid.values()].map((list) => list.join(' ')).sort();
  };
  const free = await run(undefined);
  const limited = await run({ session: 1 });
  const crashed = await run({ session: 1 }, [T + 20]);
  for (const result of [free, limited, crashed]) {
    assert.deepEqual(result.violations, []);
    assert.deepEqual(
      result.errors.filter((e) => e?.code !== 'ERR_VELO_REDIS_CONNECTION' && e?.code !== 'ERR_VELO_FENCED'),
      [],
    );
  }
  assert.equal(tags(free).length, 6);
  assert.deepEqual(tags(limited), tags(free));
  assert.deepEqual(tags(crashed), tags(free));
  assert.deepEqual(limited.stats.permits.session, { max: 1, granted: 6 });
  // The crashed process's permit came back a lease after the crash (the sessions it held were replayed).
  assert.ok(crashed.stats.takeovers >= 1);
  assert.equal(crashed.stats.permits.session.max, 1);
});

/** Seeds that once failed with limiters (`--permits`), each with what it found; `held`: with one read of entries held. */
const FOUND_PERMITS = [
  [34, 'a session restored once its permit came, with no entry left to replay: no tick for its idle end'],
  [145, "a handler waiting for a step's permit set a tick from its passed idle end, which held off the next tick"],
  [3879, 'the same, set when the rule was applied again to the waiting sessions'],
  [562, "a process paused past its lease kept its permits (the simulated limiter's own model, as a redisLimiter's lease)"],
  [1021, 'a quiet span skipped while a process back from a pause still ran the partition it had lost'],
  [3949, 'a session to restore, its permit granted, waited for a slot that freed with no held entry to drain'],
  [58, 'held', 'a key granted its permit was left in the pending list while the free slot went to keys still waiting'],
  [3825, 'held', "a reread's free slot went to a key whose entries opened no session: the key left out was never read again"],
  [5588, 'held', "a key's wake-ups came while a reread of it was out: with no session live, nothing read them again"],
];

test('seeds found with limiters: each run settles and makes the sessions and outputs of the model', async () => {
  const saved = heldBounds.batches;
  const failed = [];
  try {
    for (const [seed, ...rest] of FOUND_PERMITS) {
      const held = rest.length === 2;
      heldBounds.batches = held ? 1 : saved;
      const result = await runSeed(seed, { permits: true });
      if (!result.ok)
        failed.push(
          `seed ${seed} (${rest.at(-1)}): ${result.problems[0]} (replay: ${replayCommand(seed, undefined, { permits: true })}${held ? ' --held-batches 1' : ''})`,
        );
    }
  } finally {
    heldBounds.batches = saved;
  }
  assert.deepEqual(failed, []);
});

/** Seeds run with debounce by `npm test` (`npm run sim -- --debounce` runs as many as asked). */
const DEBOUNCE_SEEDS = 600;

test(`seeds 1-${DEBOUNCE_SEEDS} with debounce (trailing and leading, with and without maxDelay, waits of a fraction of a ms): the faulty and calm runs make the model's sessions and outputs`, async () => {
  const failed = [];
  const edges = { trailing: 0, leading: 0 };
  for (let seed = 1; seed <= DEBOUNCE_SEEDS; seed++) {
    const result = await runSeed(seed, { debounce: true });
    edges[result.scenario.debounce.edge]++;
    if (!result.ok)
      failed.push(`seed ${seed}: ${result.problems[0]} (replay: ${replayCommand(seed, undefined, { debounce: true })})`);
  }
  assert.deepEqual(failed, [], `${failed.length} seeds failed`);
  assert.ok(edges.trailing >= 200 && edges.leading >= 200, JSON.stringify(edges));
});
