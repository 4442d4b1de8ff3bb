// The paper's video experiment computes the right thing: every frame is
// converted to grayscale correctly, processed exactly once and in order, by
// every system, over real connections (tiny and fast; no timing asserted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { experiment, SERVER, SYSTEMS } from '../bench/paper/run.mjs';
import { FRAME_BYTES, grayscale } from '../bench/paper/video.mjs';
import { start } from './helpers/child.mjs';

test('grayscale sets each pixel to the average of its R, G and B', () => {
  const px = Buffer.from([30, 60, 91, 255, 0, 0, 1, 1, 1]);
  assert.deepEqual([...grayscale(px)], [60, 60, 60, 85, 85, 85, 1, 1, 1]);
  assert.equal(grayscale(Buffer.alloc(FRAME_BYTES)).length, FRAME_BYTES);
});

test('every system processes every frame once, in order, correctly (checked per stream)', async () => {
  // The server is a child process, as in the benchmark. Once the end of its
  // stdin stops it, it must exit by itself with code 0 and a clean stderr.
  const server = start([SERVER], { timeout: 120_000 });
  const [, port] = await server.waitFor(/listening (\d+)/);
  let results;
  try {
    // experiment() throws if any stream's count, order or checksum is off.
    results = await experiment('test', () => {}, { port: Number(port) });
  } finally {
    server.child.stdin.end();
  }
  await server.finished();
  for (const system of Object.keys(SYSTEMS)) {
    const cases = results.filter((r) => r.system === system);
    assert.equal(cases.length, 2, `${system}: one duration and the burst`);
    for (const c of cases) {
      assert.ok(c.streams >= 1);
      assert.ok(c.penalty.median >= 0 && c.penalty.median <= 1, `${system} ${c.case}: a penalty is a fraction`);
    }
  }
});
