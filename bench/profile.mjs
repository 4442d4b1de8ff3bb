// Profiles velo-stream's variant of one scenario and prints where the time
// goes (self time by function, from V8's CPU profiler).
//
//   node --expose-gc bench/profile.mjs S2 [--quick]
import { Session } from 'node:inspector/promises';
import { scenarios } from './scenarios.mjs';

const id = process.argv[2];
const quick = process.argv.includes('--quick');
const sc = scenarios(quick ? 'quick' : 'full').find((s) => s.id === id);
if (!sc) {
  console.error(`usage: node --expose-gc bench/profile.mjs <${scenarios('quick').map((s) => s.id).join('|')}> [--quick]`);
  process.exit(2);
}

await sc.variants.velo(); // warm up
const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.setSamplingInterval', { interval: 100 });
await session.post('Profiler.start');
for (let i = 0; i < 3; i++) await sc.variants.velo();
const { profile } = await session.post('Profiler.stop');

const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
profile.samples.forEach((nodeId, i) => {
  const n = nodes.get(nodeId);
  const where = n.callFrame.url ? `${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}` : '';
  const key = `${n.callFrame.functionName || '(anonymous)'} ${where}`.trim();
  self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const total = [...self.values()].reduce((a, b) => a + b, 0);
console.log(`${sc.id}: ${sc.title} (velo-stream, 3 runs)\n  self %  function`);
for (const [key, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
  console.log(`  ${((100 * t) / total).toFixed(1).padStart(5)}  ${key}`);
}
