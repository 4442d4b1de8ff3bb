// The paper's video experiment computes the right thing: every frame is
// converted to grayscale correctly, processed exactly once and in order, by
// every system, over real connections (tiny and fast; no timing asserted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { experiment, SYSTEMS } from '../bench/paper/run.mjs';
import { FRAME_BYTES, grayscale } from '../bench/paper/video.mjs';

test('grayscale sets each pixel to the average of its R, G and B', () => {
  const px = Buffer.from([30, 60, 91, 255, 0, 0, 1, 1, 1]);
  assert.deepEqual([...grayscale(px)], [60, 60, 60, 85, 85, 85, 1, 1, 1]);
  assert.equal(grayscale(Buffer.alloc(FRAME_BYTES)).length, FRAME_BYTES);
});

test('every system processes every frame once, in order, correctly (checked per stream)', async () => {
  // experiment() throws if any stream's count, order or checksum is off.
  const results = await experiment('test');
  for (const system of Object.keys(SYSTEMS)) {
    const cases = results.filter((r) => r.system === system);
    assert.equal(cases.length, 2, `${system}: one duration and the burst`);
    for (const c of cases) {
      assert.ok(c.streams >= 1);
      assert.ok(c.penalty.median >= 0 && c.penalty.median <= 1, `${system} ${c.case}: a penalty is a fraction`);
    }
  }
});
