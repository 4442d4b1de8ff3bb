// Several copies of the module in one process (Jest evaluates it once per test
// file; jest.resetModules(); clearing require.cache): every copy works, side by
// side. Runs in a child process, so that the copies are the only ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from './helpers/child.mjs';
import { fileURLToPath } from 'node:url';

const child = fileURLToPath(new URL('./helpers/copies-child.cjs', import.meta.url));

const expectedRuns = [0, 1, 2].map((tag) => [{ tag }, `${tag}-string`, 1.5, [tag], null, 7, 8, { n: tag }]);

for (const mode of ['js', 'all']) {
  test(`three copies loaded in one process all work, together: values, idle deadlines, stats, pipes and metrics across copies (cleared: ${mode === 'js' ? 'JS files' : 'JS files and the addon'})`, async () => {
    const { stdout, stderr } = await run([child, mode], { timeout: 20_000 });
    assert.equal(stderr, '');
    const report = JSON.parse(stdout);
    assert.equal(report.distinct, 3, 'three distinct module copies');
    assert.deepEqual(report.runs, expectedRuns);
    assert.deepEqual(report.recv, [0, 1, 2].map((copy) => ({ copy, k: 0 })));
    assert.deepEqual(report.idle, [2, 2, 2], 'each stream ended by its idle deadline after its last two outputs');
    assert.deepEqual(report.stats, [2, 2, 2]);
    assert.deepEqual(report.crossPipe, [{ wrapped: { x: 1 } }, { wrapped: 'two' }, { wrapped: 3 }]);
    assert.deepEqual(report.metricsOpened, [
      'velo_streams_opened_total{fn="copy0"} 3',
      'velo_streams_opened_total{fn="copy1"} 3',
      'velo_streams_opened_total{fn="copy2"} 2',
      'velo_streams_opened_total{fn="copy0|copy1|copy0|copy1:stage3"} 1',
    ]);
  });
}

test('the addon refuses a second scratch buffer or idle handler on a thread; an incompatible copy fails loudly at load', async () => {
  const { stdout } = await run(
    [
      '-e',
      `
      const path = require('node:path');
      const addon = require(path.resolve('native/index.js'));
      // As a copy of another shape would have left it:
      addon.threadState().version = 99;
      try { require(path.resolve('.')); console.log('loaded?!'); } catch (e) { console.log(e.code); }
      const tryIt = (f) => { try { f(); return 'accepted?!'; } catch (e) { return /already registered/.test(e.message) ? 'refused' : e.message; } };
      addon.threadState().version = undefined;
      for (const k of Object.keys(require.cache)) if (k.includes('/dist/')) delete require.cache[k];
      require(path.resolve('.'));
      console.log(tryIt(() => addon.stream.setScratch(new Float64Array(8))), tryIt(() => addon.setIdleHandler(() => {})));
    `,
    ],
    { timeout: 20_000 },
  );
  assert.equal(stdout, 'ERR_VELO_INCOMPATIBLE_COPY\nrefused refused\n');
});
