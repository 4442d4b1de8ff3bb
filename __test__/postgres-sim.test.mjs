// The simulator's seeds on the Postgres log: each seed's calm and faulty runs (redis-sim.mjs) are recorded on the
// memory store and replayed on a PgLog with the server's clock pinned to each operation's virtual time
// (helpers/sim-on-postgres.mjs); every answer must be the memory store's. A fixed set of seeds over the simulator's
// flags; `npm run sim -- --postgres --from F --count N` runs many.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgLog, appendEventsPg, preparePg } from '#testing';
import { postgres, usePostgres } from './helpers/postgres-suite.mjs';
import { installClock, pinnedPoolOptions, seedOnPostgres, setClock } from './helpers/sim-on-postgres.mjs';

usePostgres();

let shared;
/** A pool on the file's postgres whose connections read the pinned clock. */
async function pinnedPool() {
  if (shared === undefined) {
    shared = postgres.pool({ max: 4, ...pinnedPoolOptions });
    await installClock(shared);
  }
  return shared;
}

test('the pinned clock: every time of the Postgres log is the pinned one, plpgsql functions included', async () => {
  const pool = await pinnedPool();
  const space = await preparePg(pool, 'velo_simclock_test', 'pin', 1);
  const log = new PgLog(pool, space, 1, { listen: false });
  try {
    const T = 1_700_000_000_123;
    await setClock(pool, T);
    // A grant (acquire_4, plpgsql) at T for 300 ms: held at T + 300 exactly (0 left), free 1 ms past it.
    assert.deepEqual(await log.acquire(0, 'w1', 300), { partition: 0, token: 'w1:1' });
    // Entry ids are the pinned ms, the seq counting up within it (XADD's rule, as the memory store's).
    assert.deepEqual(
      await appendEventsPg(pool, space, 0, [
        ['k', 'a'],
        ['k', 'b'],
      ]),
      [`${T}-0`, `${T}-1`],
    );
    await setClock(pool, T + 300);
    assert.deepEqual(await log.acquire(0, 'w2', 300), { holder: 'w1', left: 0 });
    assert.deepEqual(await appendEventsPg(pool, space, 0, [['k', 'c']]), [`${T + 300}-0`]);
    await setClock(pool, T + 301);
    assert.equal(await log.renew({ partition: 0, token: 'w1:1' }, 300), false);
    assert.deepEqual(await log.acquire(0, 'w2', 300), { partition: 0, token: 'w2:2' });
    // Commits' fences read it too, in one statement (commit_4) or a transaction (fence_4), both plpgsql: the lease
    // granted at T + 301 holds at T + 601, not a ms later.
    const lease = { partition: 0, token: 'w2:2' };
    const plain = { outputs: [], acks: [], ended: [] };
    const ending = { outputs: [], acks: [], ended: ['k@1-0'] };
    await setClock(pool, T + 601);
    assert.deepEqual(await log.commit(lease, plain), { ids: [], diverged: [] });
    assert.deepEqual(await log.commit(lease, ending), { ids: [], diverged: [] });
    await setClock(pool, T + 602);
    await assert.rejects(log.commit(lease, plain), { code: 'ERR_VELO_FENCED' });
    await assert.rejects(log.commit(lease, ending), { code: 'ERR_VELO_FENCED' });
    // A pool without the path reads the server's own clock.
    const { rows } = await postgres
      .pool({ max: 1 })
      .query(`SELECT floor(extract(epoch from clock_timestamp()) * 1000)::bigint AS now`);
    assert.ok(Math.abs(Number(rows[0].now) - Date.now()) < 60_000, `the server's clock, not ${rows[0].now}`);
  } finally {
    await log.close();
  }
});

/**
 * The seeds replayed, per flag set: none, each of the simulator's flags alone, all of them (a minute or two here).
 * Not picked for passing: `npm run sim -- --postgres` ran seeds 1-1400 with all flags, 1-200 with all and
 * --hostile-migrate --release-debounce, 1-300 with none and --held-batches 1, 1-200 with --journal, and 1-200 with
 * --journal --versions --answers --pool-order: every one with the memory store's answers, but for the two known
 * differences (CONTRIBUTING.md has the command).
 */
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const SEEDS = [
  [{}, range(1, 6)],
  [{ versions: true }, range(1, 6)],
  [{ keyState: true }, range(1, 6)],
  [{ debounce: true }, range(1, 6)],
  [{ permits: true }, range(1, 6)],
  [{ versions: true, keyState: true, debounce: true, permits: true }, range(1, 12)],
  // The journal (journaled calls to services that answer differently on every call), answers in tokens at a
  // migration, and a pool's order: each alone and together.
  [{ journal: true }, range(1, 4)],
  // (With releases that add, drop or rename journaled calls: 85, 113 and 627 are sim-journal.test.mjs's seeds that
  // catch a continued answer's outputs matched to the old ones by position rather than held, or the records a new
  // version left untaken kept for a later call; 113 and 627 also diverge after a call that matched its record; 573, an
  // answer marked whole by a commit that carried only its first outputs.)
  [{ journal: true, versions: true, keyState: true }, [...range(1, 3), 85, 113, 627, 573]],
  [{ versions: true, answers: true }, range(1, 4)],
  [{ poolOrder: true }, range(1, 4)],
  [{ journal: true, versions: true, answers: true, poolOrder: true }, range(1, 3)],
  // (Releases that yield their answers in shapes of their own: 360, 102 and 127 are sim-journal.test.mjs's seeds that
  // catch a continued answer matched by count, the digest of the old version's last output read back by Postgres.)
  [{ journal: true, versions: true, answers: true }, [360]],
  [{ journal: true, versions: true, answers: true, keyState: true }, [102, 127]],
  // (Answers that begin with a marker: 413, 489 and 252 are sim-journal.test.mjs's seeds that catch the marker taken
  // for another answer, by the adopting version and by its later owners, the stored opening's `after` read back.)
  [{ journal: true, versions: true, markers: true }, [413, 489, 252]],
  // Six partitions committed together (a turn's commits in groups, one transaction each) with hostile effects: a
  // throw in a group, its connection ended by the server, or a statement that ends its transaction, must roll it
  // back and commit each alone; the group's one call of the effects gets each output named by its own partition.
  // Seeds 1-3 and 6 catch each of these broken
  // (a group's failure failing all, an output named by another partition of its group, a COMMIT run in the
  // transaction a statement of the effects began).
  [{ wide: true, effects: true }, [1, 2, 3, 6, 7, 19]],
  [{ wide: true, journal: true, versions: true }, range(1, 3)],
  // Calls stalled until their bound cuts them, applied at once, part way or never (sim-cut.test.mjs).
  [{ cut: true }, range(1, 4)],
  [{ cut: true, versions: true, journal: true, answers: true }, range(1, 3)],
  // Journaled calls under a small maxJournalBytes (sim-journal-bound.test.mjs): 39 and 59 record refusals a migrating
  // release replays.
  [{ journalBound: true, versions: true }, [1, 2, 39, 59]],
  // A pipe as the session's function (sim-pipe.test.mjs): in 48 and 50 its sessions end by their idle ends' ticks.
  [{ pipe: true }, [...range(1, 3), 48, 50]],
];

/** What a flag set's seeds must have replayed (`tallyOf` of sim-on-postgres.mjs): the parts of the log it is there for. */
const EXERCISED = {
  journal: ['commit with journal', 'commit with unjournal', 'journal found'],
  journalBound: ['commit with journal', 'journal found'],
  wide: ['commits of one turn'],
  effects: [
    'effects threw in a group',
    "the server ended a group's connection in its effects",
    'effects stalled in a group',
    'effects ended their transaction in a group',
    'effects ended their transaction in a group and wrote after',
  ],
};

for (const [flags, seeds] of SEEDS) {
  const named = Object.keys(flags).join(', ') || 'no flags';
  test(`simulator seeds replay on Postgres with the memory store's answers (${named})`, async () => {
    const pool = await pinnedPool();
    const tally = {};
    for (const seed of seeds) {
      const result = await seedOnPostgres(pool, seed, flags, tally);
      assert.ok(result.ops > 50, `seed ${seed}: ${result.ops} operations replayed`);
      assert.deepEqual(result.differences, [], `seed ${seed} (${named}) differs on Postgres`);
    }
    for (const [flag, parts] of Object.entries(EXERCISED)) {
      if (flags[flag] !== true) continue;
      for (const part of parts) assert.ok(tally[part] > 0, `${named}: no ${part} replayed (${JSON.stringify(tally)})`);
    }
  });
}

test('recording a run changes nothing it does: the same sessions, outputs, problems and steps', async () => {
  const { runSeed } = await import('./helpers/redis-sim.mjs');
  const flags = { versions: true, keyState: true, debounce: true, permits: true };
  for (const seed of [1, 4]) {
    const plain = await runSeed(seed, flags);
    const recorded = await runSeed(seed, { ...flags, record: true });
    assert.equal(plain.records, undefined);
    assert.ok(recorded.records.faulty.ops.length > 0 && recorded.records.calm.ops.length > 0);
    assert.deepEqual(recorded.stats, plain.stats, `seed ${seed}: steps and faults`);
    assert.deepEqual(recorded.actual, plain.actual, `seed ${seed}: the faulty run's sessions`);
    assert.deepEqual(recorded.expected, plain.expected, `seed ${seed}: the calm run's sessions`);
    assert.deepEqual(recorded.problems, plain.problems);
  }
});

test('a quiet span the simulator moves over (extendLeases) replays on Postgres', async () => {
  // Two events an hour apart: between them the simulator moves the clock on at once, leases and registrations
  // extended by as much (no seed of the flags' sets has such a span).
  const { runScenario, scenario } = await import('./helpers/redis-sim.mjs');
  const { replayOnPostgres } = await import('./helpers/sim-on-postgres.mjs');
  const s = scenario(1);
  const events = [
    { at: 1_000_000, key: 'a', event: { tag: 'r1', at: 1_000_000 } },
    { at: 4_600_000, key: 'a', event: { tag: 'r2', at: 4_600_000 } },
  ];
  const result = await runScenario(1, { ...s, events, faults: {} }, { record: true });
  assert.deepEqual(result.problems, []);
  const pool = await pinnedPool();
  for (const run of ['calm', 'faulty']) {
    const record = result.records[run];
    assert.ok(
      record.ops.some((op) => op.call === 'extendLeases'),
      `${run}: the clock moved over the span`,
    );
    const replay = await replayOnPostgres(pool, record, { name: `quiet-${run}` });
    assert.equal(replay.difference, null, JSON.stringify(replay.difference));
    assert.equal(replay.ops, record.ops.length);
  }
});

test("a registration Postgres capped at its worker's lease is seen gone before memory's (seed 4, all flags)", async () => {
  // A known difference (sim-on-postgres.mjs, `heartbeatNext` and `cappedGone`): a process heartbeats before its
  // renewal (one still in flight), so Postgres ends its registration with its lease; another's heartbeat at that end
  // sees it gone, memory sees it live. Counted, not a finding: if it stops showing, the comparison lost it. (The
  // seed that shows it moves when the engine's calls change: seed 4 did until a takeover read the journal too, and
  // migrating releases kept checkReplay; 422 until a process's held callbacks kept their place on the clock; 49 until
  // a key's emptied held list left at once; 4 since.)
  const pool = await pinnedPool();
  const result = await seedOnPostgres(pool, 4, { versions: true, keyState: true, debounce: true, permits: true });
  assert.deepEqual(result.differences, []);
  assert.ok(result.capGone >= 1, `a worker seen gone on Postgres only (${result.capGone})`);
  assert.ok(result.nextDiffers >= 1, `a heartbeat's next differs (${result.nextDiffers})`);
});

test('the registration difference, minimal: a heartbeat after the lease was last renewed ends with the lease on Postgres', async () => {
  // w1 takes a lease at T for 300 ms and heartbeats at T + 100 (ttl 300): memory keeps its registration to T + 400,
  // Postgres to T + 300, the lease's end. At T + 300 the lease still holds (it ends 1 ms past), yet w2's heartbeat
  // finds w1 gone on Postgres.
  const { MemoryLog, MemoryStore, VirtualClock, runUntil } = await import('#testing');
  const pool = await pinnedPool();
  const space = await preparePg(pool, 'velo_simclock_test', 'registration', 1);
  const pg = new PgLog(pool, space, 1, { listen: false });
  const T = 1_800_000_000_000;
  const clock = new VirtualClock(T);
  const memory = new MemoryLog(new MemoryStore(1, clock));
  const both = async (at, call) => {
    clock.idleUntil(at);
    await setClock(pool, at);
    return { memory: await runUntil(clock, call(memory)), postgres: await call(pg) };
  };
  try {
    await both(T, (log) => log.acquire(0, 'w1', 300));
    await both(T + 100, (log) => log.heartbeat('w1', 300));
    const seen = await both(T + 300, (log) => log.heartbeat('w2', 300));
    assert.equal(seen.memory.live, 2);
    assert.equal(seen.postgres.live, 1);
    const held = await both(T + 300, (log) => log.acquire(0, 'w2', 300));
    assert.deepEqual(held.memory, { holder: 'w1', left: 0 });
    assert.deepEqual(held.postgres, { holder: 'w1', left: 0 });
  } finally {
    await pg.close();
    await memory.close();
  }
});

test('openings answered to an ex-owner from its earlier read (seed 431, all flags)', async () => {
  // The other known difference (sim-on-postgres.mjs, `staleOpenings`): a process reads its partition's snapshots,
  // is paused past its lease while the next owner ends or opens a session, and, back within a second, PgLog answers
  // its openings() from that read. Its lease is gone (its writes are fenced); a fresh read is the memory store's.
  // (Of seeds 1-500, 431 alone shows it since a process's renewals run apart from its balance, as the worker's do.)
  const pool = await pinnedPool();
  for (const seed of [431]) {
    const result = await seedOnPostgres(pool, seed, { versions: true, keyState: true, debounce: true, permits: true });
    assert.deepEqual(result.differences, []);
    assert.equal(result.staleOpenings, 1, `seed ${seed}`);
  }
});
