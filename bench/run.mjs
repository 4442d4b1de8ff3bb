// npm run bench [-- --quick] [-- --only S1,S3]   (results: bench/results.json, a quick run's bench/quick/results.json)
//
// Every scenario runs velo-stream and its baselines in this one process,
// interleaved (the order rotates every round), for several rounds. Ratios are
// taken between figures of the same run: absolute numbers vary from run to
// run on a shared machine, ratios much less.
import os from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { scenarios } from './scenarios.mjs';
import { outPath } from './out.mjs';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    out: { type: 'string' },
  },
});
if (typeof global.gc !== 'function') {
  console.error('run with node --expose-gc (npm run bench does)');
  process.exit(2);
}

mkdirSync(new URL('./', outPath('results.json', args.quick)), { recursive: true });
const out = args.out ?? outPath('results.json', args.quick).pathname;
const rounds = Number(args.rounds ?? (args.quick ? 3 : 5));
const only = args.only ? new Set(args.only.split(',')) : null;
const LABELS = {
  velo: 'velo-stream',
  a: '(a) hand-written queue',
  b: '(b) Duplex.from',
  c: '(c) chained generators',
  d: '(d) bounded in+out queues, pump',
  pmap: "p-map's pMapIterable",
  readable: 'Readable.from().map()',
  hand: 'hand-written ordered map',
  ideal: 'ideal (sum of latencies / concurrency)',
};

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function summarize(kind, runs) {
  if (kind === 'throughput') {
    // Per round: events/s. "p99" is the throughput of the slowest 1 % of rounds.
    const sorted = [...runs].sort((x, y) => x - y);
    return { median: quantile(sorted, 0.5), p99: quantile(sorted, 0.01), rounds: runs };
  }
  if (kind === 'latency') {
    const all = Float64Array.from(runs.flatMap((r) => Array.from(r))).sort();
    return { median: quantile(all, 0.5), p99: quantile(all, 0.99), samples: all.length };
  }
  const heap = runs.map((r) => r.heapKB).sort((x, y) => x - y);
  const rss = runs.map((r) => r.rssKB).sort((x, y) => x - y);
  const h = quantile(heap, 0.5);
  const r = quantile(rss, 0.5);
  return { heapKB: h, rssKB: r, median: Math.max(h, r), rounds: runs };
}

function fmt(kind, v) {
  if (!Number.isFinite(v)) return '-';
  if (kind === 'throughput') return v >= 1e6 ? `${(v / 1e6).toFixed(2)}M/s` : `${(v / 1e3).toFixed(1)}K/s`;
  if (kind === 'latency') return `${v.toFixed(2)} µs`;
  return `${v.toFixed(2)} KB`;
}

function evaluate(kind, stats, labels, [who, op, bound]) {
  const velo = stats.velo;
  let value;
  let desc;
  if (who === 'p50' || who === 'median') {
    value = velo.median;
    desc = `${who} ${fmt(kind, value)} ${op} ${bound} µs`;
  } else if (who === 'p99') {
    value = velo.p99;
    desc = `p99 ${fmt(kind, value)} ${op} ${bound} µs`;
  } else if (who === 'total') {
    value = velo.median;
    desc = `${fmt(kind, value)} per stream ${op} ${bound} KB`;
  } else {
    const base = stats[who];
    const metric = op.startsWith('p99') ? 'p99' : 'median';
    value = velo[metric] / base[metric];
    const cmp = op.replace(/^(p50|p99|median|total)/, '');
    desc = `${op === cmp ? '' : metric + ' '}ratio to ${labels[who]} ${value.toFixed(2)}x ${cmp} ${bound}x`;
    op = cmp;
  }
  const pass = op.includes('>=') ? value >= bound : value <= bound;
  return { target: `${who} ${op} ${bound}`, desc, value, pass };
}

const results = {
  date: new Date().toISOString(),
  quick: args.quick,
  rounds,
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${process.platform}-${process.arch}` },
  scenarios: [],
};

const started = performance.now();
for (const sc of scenarios(args.quick ? 'quick' : 'full')) {
  if (only && !only.has(sc.id)) continue;
  const names = Object.keys(sc.variants);
  const runs = Object.fromEntries(names.map((n) => [n, []]));
  // One unmeasured warm-up run of each variant, then interleaved rounds.
  for (const n of names) await sc.variants[n]();
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < names.length; k++) {
      const n = names[(k + r) % names.length];
      runs[n].push(await sc.variants[n]());
    }
  }
  const stats = Object.fromEntries(names.map((n) => [n, summarize(sc.kind, runs[n])]));
  const ratios = Object.fromEntries(
    names.filter((n) => n !== 'velo').map((n) => [n, stats.velo.median / stats[n].median]),
  );
  const labels = Object.fromEntries(names.map((n) => [n, sc.labels?.[n] ?? LABELS[n]]));
  const targets = sc.targets.map((t) => evaluate(sc.kind, stats, labels, t));
  // A reference (S11's ideal) is not a contender: each variant is shown as a fraction of it.
  const ref = sc.reference;
  const ofReference = ref ? Object.fromEntries(names.filter((n) => n !== ref).map((n) => [n, stats[n].median / stats[ref].median])) : undefined;
  results.scenarios.push({ id: sc.id, title: sc.title, kind: sc.kind, chart: sc.chart, labels, stats, ratios, ofReference, targets });

  console.log(`\n${sc.id}  ${sc.title}`);
  for (const n of names) {
    const s = stats[n];
    const ratio = n === 'velo' || n === ref ? '' : `   velo/this = ${ratios[n].toFixed(2)}x`;
    const extra = sc.kind === 'memory' ? `  (heap ${s.heapKB.toFixed(2)} KB, rss ${s.rssKB.toFixed(2)} KB)` : `  p99 ${fmt(sc.kind, s.p99)}`;
    const share = ofReference?.[n] === undefined ? '' : `   ${ofReference[n].toFixed(2)} of ${ref} (wall time ${(1 / ofReference[n]).toFixed(2)}x ${ref}'s)`;
    console.log(`  ${labels[n].padEnd(24)} median ${fmt(sc.kind, s.median).padStart(11)}${extra}${ratio}${share}`);
  }
  for (const t of targets) console.log(`  ${t.pass ? 'PASS' : 'FAIL'}  ${t.desc}`);
}

writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
const all = results.scenarios.flatMap((s) => s.targets);
console.log(`\n${all.filter((t) => t.pass).length} of ${all.length} targets met; ${((performance.now() - started) / 1000).toFixed(0)} s; results in ${out}`);
