// The main demo: 1,000 simulated video uploads at once, each a stream-function
// instance doing frame-to-frame motion detection with its own state.
//
//   npm run demo                # 1,000 uploads x 60 frames
//   node examples/demo.mjs --uploads 200 --frames 30
import { parseArgs } from 'node:util';
import { camera, motionDetector, WIDTH, HEIGHT } from './video-motion.mjs';

const { values } = parseArgs({
  options: {
    uploads: { type: 'string', default: '1000' },
    frames: { type: 'string', default: '60' },
  },
});
const uploads = Number(values.uploads);
const frames = Number(values.frames);

const mb = (bytes) => (bytes / 2 ** 20).toFixed(1);
const before = process.memoryUsage();
// Sampled from inside the work: with every upload already in memory the
// whole run is one chain of promise jobs, so a timer would never get a turn.
let peakOpen = 0;
let peakRss = before.rss;
let seen = 0;
function sample() {
  peakOpen = Math.max(peakOpen, motionDetector.stats().open);
  if (++seen % 2000 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
}

// Half of the uploads have a still camera for their second half: no motion there.
const stillAfter = (k) => (k % 2 === 0 ? Infinity : frames / 2);
const expectedMotion = (k) => Math.min(frames, stillAfter(k)) - 1;

const started = performance.now();
const results = await Promise.all(
  Array.from({ length: uploads }, async (_, k) => {
    const stream = motionDetector.open();
    // The upload arrives frame by frame (as from a socket), while results stream back.
    const uploading = (async () => {
      for await (const frame of camera({ frames, seed: k, moving: (i) => i < stillAfter(k) })) await stream.send(frame);
      stream.end();
    })();
    let motion = 0;
    let summary;
    for await (const out of stream) {
      sample();
      if (out.type === 'motion') motion++;
      else summary = out;
    }
    await uploading;
    return { k, motion, summary };
  }),
);
const seconds = (performance.now() - started) / 1000;

const wrong = results.filter((r) => r.motion !== expectedMotion(r.k) || r.summary.frames !== frames);
const totalFrames = uploads * frames;
const totalMotion = results.reduce((a, r) => a + r.motion, 0);
const stats = motionDetector.stats();
const after = process.memoryUsage();

console.log(`velo-stream demo: ${uploads} concurrent video uploads, ${frames} frames each (${WIDTH}x${HEIGHT} grayscale)`);
console.log(`  frames processed     ${totalFrames.toLocaleString('en-US')}`);
console.log(`  motion events        ${totalMotion.toLocaleString('en-US')} (expected ${results.reduce((a, r) => a + expectedMotion(r.k), 0).toLocaleString('en-US')})`);
console.log(`  uploads correct      ${uploads - wrong.length} / ${uploads}`);
console.log(`  wall time            ${seconds.toFixed(2)} s`);
console.log(`  throughput           ${Math.round(totalFrames / seconds).toLocaleString('en-US')} frames/s (${mb((totalFrames * WIDTH * HEIGHT) / seconds)} MiB/s of pixels)`);
console.log(`  peak open streams    ${peakOpen}`);
console.log(`  stats                ${JSON.stringify(stats)}`);
console.log(`  memory               rss ${mb(before.rss)} -> peak ${mb(peakRss)} -> ${mb(after.rss)} MiB, heap used ${mb(after.heapUsed)} MiB`);
if (wrong.length > 0 || stats.open !== 0 || stats.completed !== uploads) {
  console.error('demo FAILED: results did not match', wrong.slice(0, 3));
  process.exitCode = 1;
}
