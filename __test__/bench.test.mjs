// The benchmark scenarios compute the right thing (each variant checks its own
// outputs: counts, values, identity). Run tiny, once each; no timing is asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scenarios } from '../bench/scenarios.mjs';

for (const sc of scenarios('test')) {
  test(`bench ${sc.id}: every variant produces the expected outputs`, async () => {
    assert.ok(Object.keys(sc.variants).includes('velo'));
    for (const [name, run] of Object.entries(sc.variants)) {
      const result = await run();
      assert.ok(result !== undefined, `${name} returned a measurement`);
    }
  });
}

test('bench S9 in process: both endpoints answer the request right, and the harness exits cleanly', async () => {
  const { run } = await import('./helpers/child.mjs');
  const script = new URL('../bench/http/inprocess.mjs', import.meta.url).pathname;
  // (It checks each endpoint's answer before measuring; 20 requests a round.
  // run() checks the exit code and that stderr is clean.)
  const { stdout } = await run([script, 'velo', '20']);
  assert.match(stdout, /^velo +[\d.]+ µs\/request$/m);
});

// Full runs write the files BENCHMARKS.md publishes (committed); a quick run writes the same names where git ignores
// them, so it leaves a contributor's tree clean.
test('bench outputs: a quick run writes only where git ignores it, a full run where the figures are published', async () => {
  const { outPath } = await import('../bench/out.mjs');
  const { run } = await import('./helpers/child.mjs');
  const { fileURLToPath } = await import('node:url');
  const root = fileURLToPath(new URL('../', import.meta.url));
  const names = [
    'results.json',
    'http-results.json',
    'redis-results.json',
    'workers-results.json',
    'paper/results.json',
    ...['throughput', 'latency', 'memory', 'ratios', 'tasks', 'redis', 'workers', 'paper'].map((c) => `charts/${c}.svg`),
  ];
  for (const name of names) {
    assert.equal(fileURLToPath(outPath(name, false)), `${root}bench/${name}`);
    const quick = fileURLToPath(outPath(name, true));
    assert.equal(quick, `${root}bench/quick/${name}`);
    // (git check-ignore exits 0 when the path is ignored; run() asserts the exit code and a clean stderr.)
    const { stdout } = await run(['check-ignore', '--no-index', quick], { command: 'git', cwd: root });
    assert.equal(stdout.trim(), quick);
  }
});
