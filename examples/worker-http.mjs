// An HTTP server that stays responsive while uploads are processed on worker
// threads. POST /frames takes raw 320x240 RGB frames back to back (the body
// of a camera upload); each upload is one stream whose handler (grayscale +
// motion, with the previous frame in a local variable) runs on a worker
// thread, and the per-frame results stream back as NDJSON. GET /health
// answers at once however busy the workers are.
//
//   node examples/worker-http.mjs              # in-process vs 2 threads: a server child process, uploads and /health probes from here
//   node examples/worker-http.mjs --serve      # listens on 127.0.0.1:3000
//   curl -N --data-binary @frames.rgb http://127.0.0.1:3000/frames
import { createServer } from 'node:http';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawn } from 'node:child_process';
import { streamFn, workerFn } from 'velo-stream';
import { sendNdjson } from 'velo-stream/http';

export const WIDTH = 320;
export const HEIGHT = 240;
export const FRAME_BYTES = WIDTH * HEIGHT * 3;
/** The largest upload accepted (413 beyond). */
export const MAX_UPLOAD_BYTES = 64 * FRAME_BYTES;

/** Per upload: each frame to gray, blurred (7x7 box) against sensor noise; its mean brightness, and the pixels that changed since the previous frame. */
export async function* frameStats(frames) {
  let previous = null;
  let index = 0;
  const R = 3;
  for await (const rgb of frames) {
    const gray = new Uint8Array(WIDTH * HEIGHT);
    for (let i = 0, j = 0; j < gray.length; i += 3, j++) gray[j] = (rgb[i] * 77 + rgb[i + 1] * 150 + rgb[i + 2] * 29) >> 8;
    const blurred = new Uint8Array(gray.length);
    let sum = 0;
    for (let y = R; y < HEIGHT - R; y++) {
      for (let x = R; x < WIDTH - R; x++) {
        let acc = 0;
        for (let dy = -R; dy <= R; dy++) for (let dx = -R; dx <= R; dx++) acc += gray[(y + dy) * WIDTH + x + dx];
        blurred[y * WIDTH + x] = acc / 49;
        sum += blurred[y * WIDTH + x];
      }
    }
    let changed = 0;
    if (previous !== null) for (let j = 0; j < blurred.length; j++) if (Math.abs(blurred[j] - previous[j]) > 24) changed++;
    previous = blurred;
    yield { frame: index++, mean: Math.round(sum / blurred.length), changed };
  }
}

/** The request body cut into whole frames (a partial last frame is an error). */
export async function* framesOf(req) {
  let pending = [];
  let pendingBytes = 0;
  let total = 0;
  for await (const chunk of req) {
    total += chunk.length;
    if (total > MAX_UPLOAD_BYTES) throw Object.assign(new Error('upload too large'), { status: 413 });
    pending.push(chunk);
    pendingBytes += chunk.length;
    while (pendingBytes >= FRAME_BYTES) {
      const all = Buffer.concat(pending, pendingBytes);
      yield all.subarray(0, FRAME_BYTES);
      pending = [all.subarray(FRAME_BYTES)];
      pendingBytes -= FRAME_BYTES;
    }
  }
  if (pendingBytes > 0) throw Object.assign(new Error(`the body ends inside a frame (${pendingBytes} bytes left over)`), { status: 400 });
}

/** The server, with the frame stage in-process (`threads` 0) or on `threads` worker threads. */
export function createFrameServer({ threads = 2 } = {}) {
  const stage =
    threads > 0
      ? workerFn(new URL(import.meta.url), { export: 'frameStats', threads, buffer: 4, maxConcurrent: 100 })
      : streamFn(frameStats, { buffer: 4, maxConcurrent: 100 });
  return createServer(async (req, res) => {
    if (req.method === 'GET' && req.url === '/health') return res.end('ok\n');
    if (req.method !== 'POST' || req.url !== '/frames') return res.writeHead(404).end();
    if (Number(req.headers['content-length'] ?? 0) > MAX_UPLOAD_BYTES) return res.writeHead(413).end('upload too large\n');
    let stream;
    try {
      stream = stage.open();
    } catch {
      return res.writeHead(503).end('busy\n');
    }
    const feeding = stream.feed(framesOf(req));
    try {
      await sendNdjson(res, feeding);
    } catch (error) {
      if (!res.headersSent) res.writeHead(error.status ?? 500).end(`${error.message}\n`);
    }
  });
}

/** `count` synthetic frames: a noisy background whose right half changes every other frame. */
export function syntheticUpload(count, seed = 1) {
  const body = Buffer.alloc(count * FRAME_BYTES);
  let x = 2463534242 + seed;
  for (let i = 0; i < body.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    body[i] = (x & 0x3f) + ((Math.floor(i / FRAME_BYTES) % 2) * ((i % (WIDTH * 3)) > WIDTH * 1.5 ? 128 : 0));
  }
  return body;
}

/** Sends `uploads` uploads at once while polling /health; answers the outputs and the health latencies (ms). */
export async function loadTest(port, { uploads = 6, frames = 20 } = {}) {
  const body = syntheticUpload(frames);
  const base = `http://127.0.0.1:${port}`;
  let busy = true;
  const health = [];
  const polling = (async () => {
    while (busy) {
      const t = performance.now();
      const r = await fetch(`${base}/health`);
      await r.text();
      health.push(performance.now() - t);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: uploads }, async () => {
      const r = await fetch(`${base}/frames`, { method: 'POST', body });
      const text = await r.text();
      return { status: r.status, lines: text.trim().split('\n').map((l) => JSON.parse(l)) };
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  busy = false;
  await polling;
  health.sort((a, b) => a - b);
  return { results, seconds, health };
}

/** Starts this file as a server in a child process (so the load below does not share its event loop); answers its port and the child. */
async function startServerProcess(threads) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', '--port', '0', '--threads', String(threads)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  for await (const chunk of child.stdout) {
    out += chunk;
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
    if (m) return { port: Number(m[1]), child };
  }
  throw new Error(`the server did not start: ${out}`);
}

async function main() {
  const { values } = parseArgs({
    options: {
      serve: { type: 'boolean', default: false },
      threads: { type: 'string', default: '2' },
      port: { type: 'string', default: '3000' },
      uploads: { type: 'string', default: '6' },
      frames: { type: 'string', default: '20' },
    },
  });
  if (values.serve) {
    const server = createFrameServer({ threads: Number(values.threads) }).listen(Number(values.port), '127.0.0.1');
    await once(server, 'listening');
    console.log(`listening on http://127.0.0.1:${server.address().port} (POST /frames, GET /health)`);
    process.once('SIGTERM', () => server.close());
    return;
  }
  for (const threads of [0, 2]) {
    const { port, child } = await startServerProcess(threads);
    const { results, seconds, health } = await loadTest(port, { uploads: Number(values.uploads), frames: Number(values.frames) });
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    const frames = results.reduce((n, r) => n + r.lines.length, 0);
    const ok = results.every((r) => r.status === 200 && r.lines.length === Number(values.frames));
    const p = (q) => health[Math.min(health.length - 1, Math.floor(q * health.length))].toFixed(1);
    console.log(
      `${threads === 0 ? 'in-process      ' : `${threads} worker threads`}: ${results.length} uploads, ${frames} frames in ${seconds.toFixed(2)} s${ok ? '' : ' (WRONG RESULTS)'};` +
        ` GET /health p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${health[health.length - 1].toFixed(1)} ms (${health.length} probes); server exit ${code}`,
    );
    if (!ok || code !== 0) process.exitCode = 1;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
