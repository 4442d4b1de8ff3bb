// A short soak (npm run soak is the long one): repeated cycles and abandoned
// streams leave no growing heap, no open slot and no value-table entry behind.
// Memory is compared between samples taken after gc; no timing is asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { soak } from '../bench/soak.mjs';

test('open/send/close cycles and abandoned streams: memory stays flat, nothing stays open', async () => {
  const { tableSize } = await import('#testing');
  const table = tableSize();
  const { samples, stats, neverEnds, idleEnds } = await soak({ cycles: 40_000, abandoned: 5_000, samples: 8 });
  const cycles = samples.filter((s) => s.label === 'cycles');
  // After warm-up (the first two samples), the heap may wobble but not climb.
  const warm = cycles.slice(2);
  const growth = warm.at(-1).heapMB - warm[0].heapMB;
  assert.ok(growth < 4, `heap grew ${growth.toFixed(2)} MB over ${warm.length} samples: ${warm.map((s) => s.heapMB.toFixed(1))}`);
  const last = samples.at(-1);
  assert.ok(last.heapMB - warm[0].heapMB < 8, `abandoned streams left ${(last.heapMB - warm[0].heapMB).toFixed(2)} MB`);
  assert.ok(samples.every((s) => s.label !== 'cycles' || s.open === 0), 'no slot held between cycles');
  assert.equal(last.open, 0, 'abandoned streams gave their slots back');
  assert.equal(stats.open, 0);
  assert.equal(stats.opened, 40_000);
  // Without an idle deadline nothing can end them: collected, counted cancelled.
  assert.deepEqual(neverEnds, { open: 0, opened: 5_000, completed: 0, failed: 0, cancelled: 5_000, rejected: 0 });
  // With one, the deadline ends them (their handlers finish), GC or not.
  assert.deepEqual(idleEnds, { open: 0, opened: 5_000, completed: 5_000, failed: 0, cancelled: 0, rejected: 0 });
  assert.equal(tableSize(), table, 'no value-table entry left');
});
