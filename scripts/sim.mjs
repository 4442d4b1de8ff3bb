// The Redis simulator against the reference model (each seed's faulty and calm runs must make the model's
// sessions and outputs, and each other's; __test__/helpers/redis-sim.mjs) over many seeds (`npm run sim --
// --from 1 --count 100000`; `--versions` deploys releases of the handler during each faulty and calm run), or one seed with its trace (`node scripts/sim.mjs --seed 42 --trace`; `--shrink` prints a smaller scenario that still fails, which
// `--seed 42 --scenario <file>` runs); `--only crash,lost` keeps those kinds of fault (see FAULT_KINDS). Prints
// each failing seed with the command that replays it; exits 1 if any failed. `--held-batches N` holds N reads'
// worth of entries per partition (heldBounds.batches; 64 by default) so the small runs go past it and leave
// entries in the pending list. `--permits` runs each seed's faulty run with limiters on its sessions and steps
// (`permitsFor`: a wait for a permit must change nothing the calm run, without them, makes). `--clock-skew` runs each
// seed's faulty run with its processes' clocks skewed from the log's and drifting (`clockSkewFor`). `--pool-order`
// applies some of each process's calls late, after calls made since, as Postgres' pool commits (`poolOrderFor`).
// `--cut` stalls some of each process's calls until the caller's `callTimeout` cuts them (`cutFor`).
// `--pipe` runs the scripted handler as the first stage of a pipe (a stream without the session's hooks: its
// events make outputs and ends only, no timers, checkpoints or calls).
// `--journal` adds keys whose events make journaled calls to services that answer differently on every call
// (`journalChecks`; without `--versions`, some leave a call running that answers after their session; with `--markers`,
// each answer begins with a start output made before its calls). `--journal-bound` adds keys whose events make
// journaled calls of drawn sizes under a small `maxJournalBytes`: the calls refused are those the bound names
// (`boundChecks`). `--wide` runs six partitions with keys whose events come at the same times (a process commits
// several partitions at once); `--effects` (with `--postgres`) gives the replay's logs hostile effects
// (sim-on-postgres.mjs). `--answers` (with `--versions`) adds questions answered in tokens, fewer in a migrating release (`answerChecks`). `--postgres` replays
// each seed's calm and faulty runs on the Postgres log, on a private postgres, the server's clock pinned to the
// runs' virtual time (__test__/helpers/sim-on-postgres.mjs): prints every answer Postgres gives otherwise than the
// memory store, with the seed, the operation's index, the call and both answers; exits 1 if any did.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { heldBounds } from '#testing';
import { FAULT_KINDS, permitsFor, replayCommand, runScenario, runSeed, shrink } from '../__test__/helpers/redis-sim.mjs';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    from: { type: 'string', default: '1' },
    count: { type: 'string', default: '10000' },
    trace: { type: 'boolean', default: false },
    only: { type: 'string', default: FAULT_KINDS.join(',') },
    shrink: { type: 'boolean', default: false },
    scenario: { type: 'string' },
    'held-batches': { type: 'string' },
    permits: { type: 'boolean', default: false },
    versions: { type: 'boolean', default: false },
    debounce: { type: 'boolean', default: false },
    'key-state': { type: 'boolean', default: false },
    'hostile-migrate': { type: 'boolean', default: false },
    'release-debounce': { type: 'boolean', default: false },
    'clock-skew': { type: 'boolean', default: false },
    'pool-order': { type: 'boolean', default: false },
    cut: { type: 'boolean', default: false },
    answers: { type: 'boolean', default: false },
    journal: { type: 'boolean', default: false },
    'journal-bound': { type: 'boolean', default: false },
    markers: { type: 'boolean', default: false },
    wide: { type: 'boolean', default: false },
    effects: { type: 'boolean', default: false },
    postgres: { type: 'boolean', default: false },
    pipe: { type: 'boolean', default: false },
  },
});
const only = values.only.split(',');
if (values['held-batches'] !== undefined) heldBounds.batches = Number(values['held-batches']);
const held = values['held-batches'] === undefined ? '' : ` --held-batches ${values['held-batches']}`;
const withPermits = values.permits;
const versions = values.versions;
const debounce = values.debounce;
const keyState = values['key-state'];
const hostileMigrate = values['hostile-migrate'];
const releaseDebounce = values['release-debounce'];
const clockSkew = values['clock-skew'];
const poolOrder = values['pool-order'];
const answers = values.answers;
const journal = values.journal;
/** The flags of a seed's run, as every mode passes them to `runSeed`. */
const seedFlags = {
  only,
  permits: withPermits,
  versions,
  debounce,
  keyState,
  hostileMigrate,
  releaseDebounce,
  clockSkew,
  poolOrder,
  cut: values.cut,
  answers,
  journal,
  journalBound: values['journal-bound'],
  markers: values.markers,
  wide: values.wide,
  pipe: values.pipe,
};

if (values.postgres) {
  await onPostgres();
} else if (values.seed !== undefined) {
  const seed = Number(values.seed);
  const trace = values.trace ? (line) => console.log(line) : undefined;
  const slow = only.includes('slow');
  // --scenario: a scenario printed by --shrink (JSON), run with the seed's draws.
  const result =
    values.scenario === undefined
      ? await runSeed(seed, { ...seedFlags, trace })
      : await runScenario(seed, JSON.parse(readFileSync(values.scenario, 'utf8')), {
          trace,
          slow,
          permits: withPermits ? permitsFor(seed) : undefined,
        });
  console.log(JSON.stringify(result.scenario));
  if (!result.ok) {
    console.log(result.problems.join('\n'));
    console.log('model: ', JSON.stringify(result.model));
    console.log('calm:  ', JSON.stringify(result.expected));
    console.log('faulty:', JSON.stringify(result.actual));
    if (values.shrink) {
      const small = await shrink(seed, result.scenario, { slow, permits: withPermits ? permitsFor(seed) : undefined });
      console.log(
        `shrunk to ${small.events.length} of ${result.scenario.events.length} events (save it, run with --seed ${seed} --scenario <file>):`,
      );
      console.log(JSON.stringify(small));
    }
  }
  console.log(result.ok ? `seed ${seed}: ok` : `seed ${seed}: FAILED`, JSON.stringify(result.stats));
  process.exitCode = result.ok ? 0 : 1;
} else {
  const from = Number(values.from);
  const count = Number(values.count);
  let failed = 0;
  for (let seed = from; seed < from + count; seed++) {
    const result = await runSeed(seed, seedFlags);
    if (!result.ok) {
      failed++;
      console.log(`seed ${seed} failed: ${result.problems[0]} -- ${replayCommand(seed, only, seedFlags)}${held}`);
    }
    if ((seed - from + 1) % 1000 === 0) console.log(`${seed - from + 1} seeds, ${failed} failed`);
  }
  console.log(`${count} seeds from ${from}: ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

/**
 * `--postgres`: each seed (`--seed`, or `--from`/`--count`) recorded on the memory store and replayed on a private
 * postgres; a line per seed that differs (and, with `--seed`, its figures), then the counts.
 */
async function onPostgres() {
  const { startPostgres } = await import('../__test__/helpers/postgres-server.mjs');
  const { installClock, pinnedPoolOptions, seedOnPostgres } = await import('../__test__/helpers/sim-on-postgres.mjs');
  const server = await startPostgres();
  const started = Date.now();
  const totals = { seeds: 0, differ: 0, simFailed: 0, ops: 0, nextDiffers: 0, capGone: 0, capSeeds: 0, stale: 0, staleSeeds: 0 };
  const tally = {};
  try {
    const pool = server.pool({ max: 4, ...pinnedPoolOptions });
    await installClock(pool);
    const [from, count] = values.seed !== undefined ? [Number(values.seed), 1] : [Number(values.from), Number(values.count)];
    for (let seed = from; seed < from + count; seed++) {
      const r = await seedOnPostgres(pool, seed, { ...seedFlags, effects: values.effects }, tally);
      totals.seeds++;
      totals.ops += r.ops;
      totals.nextDiffers += r.nextDiffers;
      totals.capGone += r.capGone;
      if (r.capGone > 0) totals.capSeeds++;
      totals.stale += r.staleOpenings;
      if (r.staleOpenings > 0) {
        totals.staleSeeds++;
        console.log(`seed ${seed}: ${r.staleOpenings} openings answered to an ex-owner from an earlier read`);
      }
      if (!r.simOk) totals.simFailed++;
      if (!r.ok) {
        totals.differ++;
        console.log(
          `seed ${seed} differs on Postgres -- ${replayCommand(seed, only, seedFlags).replace(' --trace --shrink', ' --postgres')}${values.effects ? ' --effects' : ''}`,
        );
        for (const d of r.differences) console.log(d);
      }
      if (values.seed !== undefined)
        console.log(JSON.stringify(r, (k, v) => (k === 'problems' && v.length === 0 ? undefined : v)));
      if (totals.seeds % 50 === 0)
        console.log(
          `${totals.seeds} seeds, ${totals.differ} differ on Postgres (${Math.round((Date.now() - started) / 1000)} s)`,
        );
    }
  } finally {
    await server.stop();
  }
  console.log(
    `${totals.seeds} seeds from ${values.seed ?? values.from} on Postgres: ${totals.differ} differ; ${totals.ops} operations replayed; ` +
      `${totals.nextDiffers} heartbeats with another next, ${totals.capGone} that saw a worker gone on Postgres only (${totals.capSeeds} seeds); ` +
      `${totals.stale} openings answered to an ex-owner from an earlier read (${totals.staleSeeds} seeds); ` +
      `${totals.simFailed} failed the simulator's own oracle; ${Math.round((Date.now() - started) / 1000)} s`,
  );
  console.log(`replayed: ${JSON.stringify(Object.fromEntries(Object.entries(tally).sort(([a], [b]) => (a < b ? -1 : 1))))}`);
  process.exitCode = totals.differ === 0 ? 0 : 1;
}
