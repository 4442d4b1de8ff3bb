// The main demo: 1,000 simulated video uploads at once, each a stream-function
// instance doing frame-to-frame motion detection with its own state.
//
//   npm run demo                # 1,000 uploads x 60 frames
//   node examples/demo.mjs --uploads 200 --frames 30
//   node examples/demo.mjs --uploads 100 --frames 30 --width 640 --height 480 --fps 10 [--threads 2]
//
// With --threads N the detector runs on N worker threads (workerFn): each
// upload's instance lives on one of them, and the main thread only moves
// frames. The main thread's responsiveness is printed either way: how late a
// 10 ms timer fired while the uploads ran (in-process, the detector's work
// holds the event loop for the whole run).
import { parseArgs } from 'node:util';
import { workerFn } from 'velo-stream';
import { camera, motionDetector as inProcess, MOTION_CONFIG, WIDTH as DEFAULT_WIDTH, HEIGHT as DEFAULT_HEIGHT } from './video-motion.mjs';

const { values } = parseArgs({
  options: {
    uploads: { type: 'string', default: '1000' },
    frames: { type: 'string', default: '60' },
    threads: { type: 'string', default: '0' },
    width: { type: 'string', default: String(DEFAULT_WIDTH) },
    height: { type: 'string', default: String(DEFAULT_HEIGHT) },
    fps: { type: 'string', default: '0' },
  },
});
const uploads = Number(values.uploads);
const frames = Number(values.frames);
const threads = Number(values.threads);
const WIDTH = Number(values.width);
const HEIGHT = Number(values.height);
const fps = Number(values.fps);
const motionDetector =
  threads > 0 ? workerFn(new URL('./video-motion.mjs', import.meta.url), { ...MOTION_CONFIG, export: 'motion', threads }) : inProcess;

/** How late a 10 ms timer fires meanwhile: the event loop's responsiveness to everything else. */
function loopLateness() {
  const late = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    late.push(Math.max(0, now - last - 10));
    last = now;
  }, 10);
  return () => {
    clearInterval(timer);
    late.push(Math.max(0, performance.now() - last - 10));
    late.sort((a, b) => a - b);
    return { p99: late[Math.min(late.length - 1, Math.floor(late.length * 0.99))], max: late[late.length - 1] };
  };
}

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

const stopLateness = loopLateness();
const started = performance.now();
const results = await Promise.all(
  Array.from({ length: uploads }, async (_, k) => {
    const stream = motionDetector.open();
    // The upload arrives frame by frame (as from a socket), while results stream back.
    const uploading = (async () => {
      for await (const frame of camera({ frames, seed: k, moving: (i) => i < stillAfter(k), width: WIDTH, height: HEIGHT, fps })) await stream.send(frame);
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
const lateness = stopLateness();

const wrong = results.filter((r) => r.motion !== expectedMotion(r.k) || r.summary.frames !== frames);
const totalFrames = uploads * frames;
const totalMotion = results.reduce((a, r) => a + r.motion, 0);
const stats = motionDetector.stats();
const after = process.memoryUsage();

console.log(
  `velo-stream demo: ${uploads} concurrent video uploads, ${frames} frames each (${WIDTH}x${HEIGHT} grayscale), ${threads > 0 ? `on ${threads} worker threads` : 'in-process'}`,
);
console.log(`  frames processed     ${totalFrames.toLocaleString('en-US')}`);
console.log(`  motion events        ${totalMotion.toLocaleString('en-US')} (expected ${results.reduce((a, r) => a + expectedMotion(r.k), 0).toLocaleString('en-US')})`);
console.log(`  uploads correct      ${uploads - wrong.length} / ${uploads}`);
console.log(`  wall time            ${seconds.toFixed(2)} s`);
console.log(`  throughput           ${Math.round(totalFrames / seconds).toLocaleString('en-US')} frames/s (${mb((totalFrames * WIDTH * HEIGHT) / seconds)} MiB/s of pixels)`);
console.log(`  peak open streams    ${peakOpen}`);
console.log(`  main loop lateness   p99 ${lateness.p99.toFixed(1)} ms, max ${lateness.max.toFixed(1)} ms (a 10 ms timer)`);
console.log(`  stats                ${JSON.stringify(stats)}`);
console.log(`  memory               rss ${mb(before.rss)} -> peak ${mb(peakRss)} -> ${mb(after.rss)} MiB, heap used ${mb(after.heapUsed)} MiB`);
if (wrong.length > 0 || stats.open !== 0 || stats.completed !== uploads) {
  console.error('demo FAILED: results did not match', wrong.slice(0, 3));
  process.exitCode = 1;
}
