// Motion detection over a video upload: one stream per upload, the previous
// frame kept in a local variable, a motion event whenever enough pixels change.
//
//   node examples/video-motion.mjs
import { pathToFileURL } from 'node:url';
import { streamFn } from 'velo-stream';

export const WIDTH = 80;
export const HEIGHT = 60;

/**
 * A synthetic camera: a dark background with a bright 10x10 square that moves
 * `speed` pixels right per frame while `moving(i)` says so. Deterministic, so
 * tests know exactly which frames have motion.
 */
export async function* camera({ frames, speed = 2, moving = () => true, seed = 1 }) {
  let x = seed % (WIDTH - 10);
  for (let i = 0; i < frames; i++) {
    if (i > 0 && moving(i)) x = (x + speed) % (WIDTH - 10);
    const pixels = new Uint8Array(WIDTH * HEIGHT).fill(16);
    for (let y = 20; y < 30; y++) pixels.fill(235, y * WIDTH + x, y * WIDTH + x + 10);
    yield { index: i, pixels };
  }
}

/** Per-upload state: the previous frame and a running count. */
export const motionDetector = streamFn(
  async function* motion(frames, ctx) {
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
  },
  { buffer: 32, idleTimeout: 10_000, maxConcurrent: 2_000 },
);

export async function main() {
  const outputs = await motionDetector.run(camera({ frames: 30, moving: (i) => i < 10 || i >= 20 }));
  for (const o of outputs) console.log(JSON.stringify(o));
  return outputs;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
