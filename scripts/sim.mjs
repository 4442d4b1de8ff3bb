// The Redis simulator over many seeds (`npm run sim -- --from 1 --count 100000`), or one seed with its trace
// (`node scripts/sim.mjs --seed 42 --trace`); `--only crash,lost` keeps those kinds of fault (see FAULT_KINDS). Prints each failing seed with the command that replays it; exits 1
// if any failed.
import { parseArgs } from 'node:util';
import { FAULT_KINDS, replayCommand, runSeed } from '../__test__/helpers/redis-sim.mjs';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    from: { type: 'string', default: '1' },
    count: { type: 'string', default: '10000' },
    trace: { type: 'boolean', default: false },
    only: { type: 'string', default: FAULT_KINDS.join(',') },
  },
});
const only = values.only.split(',');

if (values.seed !== undefined) {
  const seed = Number(values.seed);
  const result = await runSeed(seed, { only, trace: values.trace ? (line) => console.log(line) : undefined });
  console.log(JSON.stringify(result.scenario));
  if (!result.ok) {
    console.log(result.problems.join('\n'));
    console.log('calm:  ', JSON.stringify(result.expected));
    console.log('faulty:', JSON.stringify(result.actual));
  }
  console.log(result.ok ? `seed ${seed}: ok` : `seed ${seed}: FAILED`, JSON.stringify(result.stats));
  process.exitCode = result.ok ? 0 : 1;
} else {
  const from = Number(values.from);
  const count = Number(values.count);
  let failed = 0;
  for (let seed = from; seed < from + count; seed++) {
    const result = await runSeed(seed, { only });
    if (!result.ok) {
      failed++;
      console.log(`seed ${seed} failed: ${result.problems[0]} -- ${replayCommand(seed, only)}`);
    }
    if ((seed - from + 1) % 1000 === 0) console.log(`${seed - from + 1} seeds, ${failed} failed`);
  }
  console.log(`${count} seeds from ${from}: ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}
