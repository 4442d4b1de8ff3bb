// The Redis simulator against the reference model (each seed's faulty and calm runs must make the model's
// sessions and outputs, and each other's; __test__/helpers/redis-sim.mjs) over many seeds (`npm run sim --
// --from 1 --count 100000`; `--versions` deploys releases of the handler during each faulty and calm run), or one seed with its trace (`node scripts/sim.mjs --seed 42 --trace`; `--shrink` prints a smaller scenario that still fails, which
// `--seed 42 --scenario <file>` runs); `--only crash,lost` keeps those kinds of fault (see FAULT_KINDS). Prints
// each failing seed with the command that replays it; exits 1 if any failed. `--held-batches N` holds N reads'
// worth of entries per partition (heldBounds.batches; 64 by default) so the small runs go past it and leave
// entries in the pending list. `--permits` runs each seed's faulty run with limiters on its sessions and steps
// (`permitsFor`: a wait for a permit must change nothing the calm run, without them, makes).
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

if (values.seed !== undefined) {
  const seed = Number(values.seed);
  const trace = values.trace ? (line) => console.log(line) : undefined;
  const slow = only.includes('slow');
  // --scenario: a scenario printed by --shrink (JSON), run with the seed's draws.
  const result =
    values.scenario === undefined
      ? await runSeed(seed, { only, trace, permits: withPermits, versions, debounce, keyState, hostileMigrate, releaseDebounce })
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
    const result = await runSeed(seed, { only, permits: withPermits, versions, debounce, keyState, hostileMigrate, releaseDebounce });
    if (!result.ok) {
      failed++;
      console.log(
        `seed ${seed} failed: ${result.problems[0]} -- ${replayCommand(seed, only, { permits: withPermits, versions, debounce, keyState, hostileMigrate, releaseDebounce })}${held}`,
      );
    }
    if ((seed - from + 1) % 1000 === 0) console.log(`${seed - from + 1} seeds, ${failed} failed`);
  }
  console.log(`${count} seeds from ${from}: ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}
