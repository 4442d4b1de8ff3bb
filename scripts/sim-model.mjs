// The simulator against the reference model: each seed's scenario (randomScenario of the session tests' scenario
// language) runs through the real engine on the in-memory log, with crashes, pauses, late and refused replies and
// a handler that runs behind the reader (`--calm`: none of them), and its sessions' outputs must be the model's,
// computed on the entry ids the run's log gave the events. Needs __test__/helpers/session-script.mjs and
// session-model.mjs (the reference model).
//
//   node scripts/sim-model.mjs --from 1 --count 2000 [--calm]
import { parseArgs } from 'node:util';
import { streamFn } from 'velo-stream';
import { simulate } from '#testing';
import { outputView, randomScenario, scriptHandler } from '../__test__/helpers/session-script.mjs';
import { model } from '../__test__/helpers/session-model.mjs';

const { values } = parseArgs({
  options: {
    from: { type: 'string', default: '1' },
    count: { type: 'string', default: '1000' },
    calm: { type: 'boolean', default: false },
  },
});

/** The seed's run and the model's sessions with outputs, as `[sid, outputs]` sorted by sid. */
async function runSeed(seed, calm) {
  const scenario = randomScenario(seed);
  const { idleTimeout, maxSessionAge, maxSessionEvents, maxSessionTimers } = scenario.limits;
  const result = await simulate({
    seed,
    fn: (delay) =>
      streamFn(scriptHandler({ pause: calm ? undefined : () => delay() }), { idleTimeout, maxConcurrent: [1, 2, 8][seed % 3] }),
    events: scenario.log.map((e) => ({ at: Number(e.id.slice(0, e.id.indexOf('-'))), key: e.key, event: e.event })),
    limits: {
      leaseTtl: 600,
      readCount: 1 + (seed % 4),
      maxBufferedEvents: [1, 2, 64][seed % 3],
      maxSessionAge,
      maxSessionEvents,
      maxSessionTimers,
    },
    faults: calm ? {} : { crash: 0.01, pause: 0.003, delay: 0.1, maxDelay: 100, refused: 0.02, lost: 0.02 },
  });
  // The model on the entry ids this run's log gave the events (the engine's own entries take ids among them), to the end.
  const expected = model({ ...scenario, clock: undefined, log: scenario.log.map((e, i) => ({ ...e, id: result.ids[i] })) });
  const want = Object.values(expected)
    .flat()
    .filter((s) => s.outputs.length > 0)
    .map((s) => [s.sid, s.outputs]);
  const got = new Map();
  for (const o of result.outputs) got.set(o.sid, [...(got.get(o.sid) ?? []), outputView(o)]);
  const sorted = (list) => JSON.stringify([...list].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { ok: sorted(want) === sorted([...got]) && result.violations.length === 0, violations: result.violations };
}

const from = Number(values.from);
const count = Number(values.count);
let failed = 0;
for (let seed = from; seed < from + count; seed++) {
  const { ok, violations } = await runSeed(seed, values.calm);
  if (ok) continue;
  failed++;
  console.log(`seed ${seed}: the run's sessions differ from the model's${violations.length > 0 ? ` (${violations[0]})` : ''}`);
}
console.log(`${count} seeds from ${from}${values.calm ? ', calm' : ''}: ${failed} differ from the model`);
process.exitCode = failed === 0 ? 0 : 1;
