// The experiment's server. As the paper's control plane does, it opens one
// stream-function instance per incoming connection (POST /stream) and closes
// it when the connection ends; the function converts each frame to grayscale.
// The baselines run on the same server: POST /frame (one stateless request per
// frame, the FaaS shape) and POST /batch (the whole stream uploaded, then
// processed). Every answer reports when the first frame was received (t1), when
// the last was processed (t2), and what was processed (count, order, checksum).
//
//   node bench/paper/server.mjs      # prints "listening <port>"; stops at the end of stdin
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { streamFn } from 'velo-stream';
import { checksum, grayscale, nowMs, records } from './video.mjs';

export const grayscaleFn = streamFn(
  async function* grayscaleVideo(frames) {
    for await (const f of frames) yield { index: f.index, out: grayscale(f.pixels) };
  },
  { buffer: 64, maxConcurrent: 1000, idleTimeout: 30_000 },
);

function answer(res, body) {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
}

/** Folds processed frames into the report: count, order and checksum. */
function tally() {
  const t = { count: 0, inOrder: true, checksum: 0, last: -1, t2: 0 };
  return {
    add(index, out) {
      if (index !== t.last + 1) t.inOrder = false;
      t.last = index;
      t.count++;
      t.checksum = (t.checksum + checksum(out, index)) >>> 0;
      t.t2 = nowMs();
    },
    report: (t1) => ({ t1, t2: t.t2, count: t.count, inOrder: t.inOrder, checksum: t.checksum }),
  };
}

async function streamed(req, res) {
  const stream = grayscaleFn.open();
  res.on('close', () => void stream.cancel());
  const result = tally();
  let t1 = 0;
  const sending = (async () => {
    for await (const f of records(req)) {
      if (t1 === 0) t1 = f.receivedMs;
      await stream.send(f);
    }
    stream.end();
  })();
  for await (const o of stream) result.add(o.index, o.out);
  await sending;
  answer(res, result.report(t1));
}

async function perEvent(req, res) {
  for await (const f of records(req)) {
    const out = grayscale(f.pixels);
    return answer(res, { index: f.index, t1: f.receivedMs, t2: nowMs(), checksum: checksum(out, f.index) });
  }
}

async function batch(req, res) {
  const all = [];
  for await (const f of records(req)) all.push(f);
  const result = tally();
  for (const f of all) result.add(f.index, grayscale(f.pixels));
  answer(res, result.report(all[0]?.receivedMs ?? 0));
}

export function start(port = 0) {
  const server = createServer((req, res) => {
    const route = { '/stream': streamed, '/frame': perEvent, '/batch': batch }[req.url];
    if (!route || req.method !== 'POST') return void res.writeHead(404).end();
    route(req, res).catch((error) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(error));
    });
  });
  server.keepAliveTimeout = 60_000;
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const server = await start(Number(process.env.PORT ?? 0));
  // The end of stdin (the parent ended it, or Ctrl-D) stops the server; the
  // process then ends by itself, so a hang or a crash at exit shows.
  process.stdin.resume().once('end', () => server.close());
  console.log(`listening ${server.address().port}`);
}
