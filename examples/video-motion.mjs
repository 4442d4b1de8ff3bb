// Motion detection over a video upload: one stream per upload, the previous
// frame kept in a local variable, a motion event whenever enough pixels change.
//
//   node examples/video-motion.mjs
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { streamFn } from 'velo-stream';

export const WIDTH = 80;
export const HEIGHT = 60;

/**
 * A synthetic camera: a dark background with a bright square (10x10 at 80
 * pixels wide, scaled with the width) that moves right per frame while
 * `moving(i)` says so. Deterministic, so tests know exactly which frames have
 * motion. With `fps`, frames arrive at that rate, as from a live source.
 */
export async function* camera({ frames, moving = () => true, seed = 1, width = WIDTH, height = HEIGHT, fps = 0 }) {
  const scale = Math.max(1, Math.round(width / WIDTH));
  const side = 10 * scale;
  const speed = 2 * scale;
  const top = Math.floor(height / 3);
  let x = (seed * scale) % (width - side);
  for (let i = 0; i < frames; i++) {
    if (fps > 0 && i > 0) await sleep(1000 / fps);
    if (i > 0 && moving(i)) x = (x + speed) % (width - side);
    const pixels = new Uint8Array(width * height).fill(16);
    for (let y = top; y < top + side; y++) pixels.fill(235, y * width + x, y * width + x + side);
    yield { index: i, pixels };
  }
}

/**
 * Per-upload state: the previous frame and a running count. Exported on its
 * own so a worker thread can run it too (`workerFn(url, { export: 'motion' })`,
 * see demo.mjs --threads).
 */
export async function* motion(frames, ctx) {
  let previous;
  let events = 0;
  let frameCount = 0;
  for await (const frame of frames) {
    frameCount++;
    if (previous !== undefined) {
      let changed = 0;
      const a = previous.pixels;
      const b = frame.pixels;
      for (let p = 0; p < a.length; p++) if (Math.abs(a[p] - b[p]) > 40) changed++;
      const ratio = changed / a.length;
      if (ratio > 0.002) {
        events++;
        yield { type: 'motion', frame: frame.index, changedPixels: changed, ratio };
      }
    }
    previous = frame;
  }
  yield { type: 'summary', upload: ctx.id, frames: frameCount, motionEvents: events };
}

export const MOTION_CONFIG = { buffer: 32, idleTimeout: 10_000, maxConcurrent: 2_000 };
export const motionDetector = streamFn(motion, MOTION_CONFIG);

export async function main() {
  const outputs = await motionDetector.run(camera({ frames: 30, moving: (i) => i < 10 || i >= 20 }));
  for (const o of outputs) console.log(JSON.stringify(o));
  return outputs;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
