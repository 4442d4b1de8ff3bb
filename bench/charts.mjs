// Turns bench/results.json into the SVG charts that BENCHMARKS.md shows.
//
//   npm run bench:charts                (after npm run bench)
//   npm run bench:charts -- --quick     (after npm run bench -- --quick: bench/quick/results.json -> bench/quick/charts/)
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { barChart } from './svg.mjs';
import { outPath } from './out.mjs';

const quick = process.argv.includes('--quick');
const results = JSON.parse(readFileSync(outPath('results.json', quick), 'utf8'));
const outDir = outPath('charts/', quick);
mkdirSync(outDir, { recursive: true });

const COLORS = { velo: '#d9480f', a: '#1c7ed6', b: '#868e96', c: '#5c940d', pmap: '#7048e8', readable: '#495057', hand: '#1c7ed6', ideal: '#adb5bd' };
// Task-stage scenarios (S10-S12) get a chart of their own: their figures
// range from 20K/s (S11, calls that sleep) to 50M/s (S12, per item), which
// on the shared scale would flatten every other bar.
const isTask = (s) => s.chart === 'tasks';
const byKind = (kind) => results.scenarios.filter((s) => s.kind === kind && !isTask(s));
const label = (s, n) => s.labels[n];

function groupsOf(scenarios, metric) {
  return scenarios.map((s) => ({
    name: `${s.id}: ${s.title}`,
    bars: Object.keys(s.stats).map((n) => ({ label: label(s, n), value: s.stats[n][metric], color: COLORS[n] })),
  }));
}

const machine = `${results.machine.cpus} cores, Node ${results.machine.node}${results.quick ? ', quick run' : ''}`;

writeFileSync(
  new URL('throughput.svg', outDir),
  barChart({
    title: `Throughput, median of ${results.rounds} interleaved rounds (higher is better)`,
    unit: machine,
    groups: groupsOf(byKind('throughput'), 'median'),
    format: (v) => `${(v / 1e6).toFixed(2)}M events/s`,
  }),
);

writeFileSync(
  new URL('latency.svg', outDir),
  barChart({
    title: 'Latency per operation, p50 and p99 (lower is better)',
    unit: machine,
    groups: byKind('latency').flatMap((s) => [
      { name: `${s.id} p50: ${s.title}`, bars: Object.keys(s.stats).map((n) => ({ label: label(s, n), value: s.stats[n].median, color: COLORS[n] })) },
      { name: `${s.id} p99`, bars: Object.keys(s.stats).map((n) => ({ label: label(s, n), value: s.stats[n].p99, color: COLORS[n] })) },
    ]),
    format: (v) => `${v.toFixed(2)} µs`,
  }),
);

writeFileSync(
  new URL('memory.svg', outDir),
  barChart({
    title: 'Memory per idle open stream, after gc (lower is better)',
    unit: machine,
    groups: groupsOf(byKind('memory'), 'median'),
    format: (v) => `${v.toFixed(2)} KB`,
  }),
);

writeFileSync(
  new URL('ratios.svg', outDir),
  barChart({
    title: 'velo-stream / baseline, median (above 1 = velo-stream faster; latency: below 1 = faster)',
    unit: machine,
    groups: results.scenarios
      .filter((s) => Object.keys(s.ratios).length > 0)
      .map((s) => ({
        name: `${s.id}`,
        bars: Object.entries(s.ratios).map(([n, r]) => ({ label: `vs ${label(s, n)}`, value: r, color: COLORS[n] })),
      })),
    format: (v) => `${v.toFixed(2)}x`,
  }),
);

const taskScenarios = results.scenarios.filter(isTask);
if (taskScenarios.length > 0) {
  writeFileSync(
    new URL('tasks.svg', outDir),
    barChart({
      title: `Task stages: throughput, median of ${results.rounds} interleaved rounds (each scenario on its own scale)`,
      unit: machine,
      groups: groupsOf(taskScenarios, 'median'),
      format: (v) => (v >= 1e6 ? `${(v / 1e6).toFixed(2)}M items/s` : `${(v / 1e3).toFixed(1)}K items/s`),
      groupScale: true,
    }),
  );
}

console.log(`charts written to ${outDir.pathname}`);
