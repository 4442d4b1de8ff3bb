// The video experiment of the stream-functions paper (arXiv:2603.03089),
// reproduced over real connections on 127.0.0.1.
//
//   npm run bench:paper               # 5, 10 and 30 s streams + a 200-stream burst (about 9 minutes)
//   npm run bench:paper -- --quick    # 2 s streams + a 20-stream burst (about 30 s), written under bench/quick/
//
// A load generator makes the stream in real time (10 frames/s, 160x120 RGB,
// 20 distinct random frames repeating), stamping each frame's creation time;
// the server (a child process) converts every frame to grayscale. Metrics,
// as the paper defines them, per stream:
//   cold start penalty  (t1 - t0) / (t2 - t0)
//   processing overhead t2 - t_end
// t0: first frame created; t1: the server received it; t2: the last frame was
// processed; t_end: the generator finished creating the stream (last frame).
import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { checksum, encode, grayscale, makeFrames, nowMs } from './video.mjs';
import { writeOut } from '../out.mjs';

export const SYSTEMS = {
  stream: 'velo-stream (one stream per connection)',
  'per-event': 'per-event function (one request per frame)',
  batch: 'batch (upload, then process)',
};

/** The paper's published figures (its prototype, Beaver: a container per stream with NATS). */
export const PAPER = {
  coldStart: [
    { system: 'Beaver (paper), shorter streams', value: 0.0363 },
    { system: 'Beaver (paper), longer streams', value: 0.0061 },
    { system: 'mature stream engine (paper)', value: '~1.0' },
  ],
};

const sleepUntil = (t) => new Promise((resolve) => setTimeout(resolve, Math.max(0, t - nowMs())));

export const SERVER = fileURLToPath(new URL('./server.mjs', import.meta.url));

/**
 * The server in a child process: its own event loop, as a real deployment.
 * stop() ends its stdin, which it takes as the signal to close and end by
 * itself, and fails if it does not exit with code 0.
 */
export function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVER], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise((done) => child.once('exit', (code, signal) => done(signal ?? code)));
    const stop = async () => {
      child.stdin.end();
      const how = await exited;
      if (how !== 0) throw new Error(`the server exited with ${how}`);
    };
    child.once('error', reject);
    child.stdout.setEncoding('utf8').on('data', (line) => {
      const m = /listening (\d+)/.exec(line);
      if (m) resolve({ port: Number(m[1]), stop });
    });
  });
}

function request(agent, port, path) {
  const req = http.request({ agent, host: '127.0.0.1', port, path, method: 'POST' });
  const response = new Promise((resolve, reject) => {
    req.once('error', reject);
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c) => (body += c));
      res.once('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${res.statusCode} ${body}`))));
    });
  });
  return { req, response };
}

/** Expected checksum of the processed stream (computed locally). */
function expectedChecksum(grays, n) {
  let sum = 0;
  for (let i = 0; i < n; i++) sum = (sum + checksum(grays[i % grays.length], i)) >>> 0;
  return sum;
}

/** Plays one stream in real time through `system`; returns its timestamps and the server's report. */
export async function playStream(system, { agent, port, frames, n, fps, startAt }) {
  const at = (i) => startAt + (i * 1000) / fps;
  let t0 = 0;
  let tEnd = 0;
  const stamp = (i) => {
    const created = process.hrtime.bigint();
    const ms = Number(created) / 1e6;
    if (i === 0) t0 = ms;
    tEnd = ms;
    return created;
  };
  let report;
  if (system === 'stream') {
    const { req, response } = request(agent, port, '/stream');
    for (let i = 0; i < n; i++) {
      await sleepUntil(at(i));
      if (!req.write(encode(i, stamp(i), frames[i % frames.length]))) await new Promise((r) => req.once('drain', r));
    }
    req.end();
    report = await response;
  } else if (system === 'per-event') {
    const pending = [];
    for (let i = 0; i < n; i++) {
      await sleepUntil(at(i));
      const { req, response } = request(agent, port, '/frame');
      req.end(encode(i, stamp(i), frames[i % frames.length]));
      pending.push(response);
    }
    const all = await Promise.all(pending);
    report = {
      t1: all[0].t1,
      t2: Math.max(...all.map((r) => r.t2)),
      count: all.length,
      inOrder: all.every((r, i) => r.index === i),
      checksum: all.reduce((s, r) => (s + r.checksum) >>> 0, 0),
    };
  } else {
    const recs = [];
    for (let i = 0; i < n; i++) {
      await sleepUntil(at(i));
      recs.push(encode(i, stamp(i), frames[i % frames.length]));
    }
    const { req, response } = request(agent, port, '/batch');
    req.end(Buffer.concat(recs));
    report = await response;
  }
  return { t0, tEnd, ...report, penalty: (report.t1 - t0) / (report.t2 - t0), overheadMs: report.t2 - tEnd };
}

function quantile(values, q) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/**
 * Runs the experiment. `size`: 'full', 'quick', or 'test' (tiny and fast,
 * for npm test: every stream's frames are still checked). `port`: a server
 * already running (server.mjs) to use instead of starting one.
 */
export async function experiment(size = 'full', log = () => {}, { port } = {}) {
  const cfg = {
    full: { durations: [5, 10, 30], reps: [3, 3, 2], fps: 10, burst: { streams: 200, within: 10, duration: 5 } },
    quick: { durations: [2], reps: [2], fps: 10, burst: { streams: 20, within: 2, duration: 2 } },
    test: { durations: [0.2], reps: [1], fps: 50, burst: { streams: 5, within: 0.2, duration: 0.2 } },
  }[size];
  const frames = makeFrames();
  const grays = frames.map(grayscale);
  const server = port === undefined ? await startServer() : { port, stop: async () => {} };
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const cases = [];
  const check = (system, n, r) => {
    if (r.count !== n || !r.inOrder || r.checksum !== expectedChecksum(grays, n)) {
      throw new Error(`${system}: frames processed wrong (count ${r.count}/${n}, in order ${r.inOrder}, checksum ${r.checksum})`);
    }
  };
  try {
    for (const [k, duration] of cfg.durations.entries()) {
      const n = Math.round(duration * cfg.fps);
      for (const system of Object.keys(SYSTEMS)) {
        const runs = [];
        for (let rep = 0; rep < cfg.reps[k]; rep++) {
          const r = await playStream(system, { agent, port: server.port, frames, n, fps: cfg.fps, startAt: nowMs() + 20 });
          check(system, n, r);
          runs.push(r);
        }
        cases.push({ case: `${duration} s stream`, system, runs });
        log(`${system.padEnd(9)} ${duration} s x${runs.length}: penalty ${runs.map((r) => r.penalty.toFixed(5)).join(' ')}, overhead ${runs.map((r) => r.overheadMs.toFixed(2)).join(' ')} ms`);
      }
    }
    const b = cfg.burst;
    const n = Math.round(b.duration * cfg.fps);
    let seed = 99;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const offsets = Array.from({ length: b.streams }, () => rand() * b.within * 1000);
    for (const system of Object.keys(SYSTEMS)) {
      const base = nowMs() + 50;
      const runs = await Promise.all(
        offsets.map((o) => playStream(system, { agent, port: server.port, frames, n, fps: cfg.fps, startAt: base + o })),
      );
      for (const r of runs) check(system, n, r);
      cases.push({ case: `burst: ${b.streams} streams within ${b.within} s, ${b.duration} s each`, system, runs });
      log(`${system.padEnd(9)} burst: penalty p50 ${quantile(runs.map((r) => r.penalty), 0.5).toFixed(5)}, overhead p50 ${quantile(runs.map((r) => r.overheadMs), 0.5).toFixed(2)} ms`);
    }
  } finally {
    agent.destroy();
    await server.stop();
  }
  return cases.map((c) => ({
    case: c.case,
    system: c.system,
    streams: c.runs.length,
    penalty: { median: quantile(c.runs.map((r) => r.penalty), 0.5), p99: quantile(c.runs.map((r) => r.penalty), 0.99) },
    overheadMs: { median: quantile(c.runs.map((r) => r.overheadMs), 0.5), p99: quantile(c.runs.map((r) => r.overheadMs), 0.99) },
  }));
}

function table(results) {
  const rows = [];
  rows.push('| case | system | streams | cold start penalty, median | p99 | processing overhead, median | p99 |');
  rows.push('|---|---|---|---|---|---|---|');
  for (const r of results) {
    rows.push(
      `| ${r.case} | ${SYSTEMS[r.system]} | ${r.streams} | ${r.penalty.median.toFixed(5)} | ${r.penalty.p99.toFixed(5)} | ${r.overheadMs.median.toFixed(2)} ms | ${r.overheadMs.p99.toFixed(2)} ms |`,
    );
  }
  return rows.join('\n');
}

function targets(results) {
  const velo = results.filter((r) => r.system === 'stream');
  return [
    ...velo.map((r) => ({ what: `${r.case}: cold start penalty median <= 0.001`, value: r.penalty.median, pass: r.penalty.median <= 0.001 })),
    ...velo.map((r) => ({ what: `${r.case}: processing overhead median <= 2 ms`, value: r.overheadMs.median, pass: r.overheadMs.median <= 2 })),
    ...velo
      .filter((r) => r.case.startsWith('burst'))
      .map((r) => ({ what: `${r.case}: processing overhead p99 <= 10 ms`, value: r.overheadMs.p99, pass: r.overheadMs.p99 <= 10 })),
  ];
}

/** A bar chart of both metrics' medians (log scale for the penalty). */
function chart(results) {
  const rows = results.map((r) => ({ label: `${r.case}: ${r.system}`, penalty: r.penalty.median, overhead: r.overheadMs.median, velo: r.system === 'stream' }));
  const h = 18;
  const top = 48;
  const left = 330;
  const w = 250;
  const logScale = (v) => Math.max(0, (Math.log10(Math.max(v, 1e-6)) + 6) / 6); // 1e-6 .. 1
  const maxOver = Math.max(...rows.map((r) => r.overhead), 1);
  const bars = rows
    .map((r, i) => {
      const y = top + i * (h + 4);
      const color = r.velo ? '#d9480f' : '#868e96';
      return [
        `<text x="${left - 8}" y="${y + 13}" text-anchor="end">${r.label}</text>`,
        `<rect x="${left}" y="${y}" width="${(logScale(r.penalty) * w).toFixed(1)}" height="${h}" fill="${color}"/>`,
        `<text x="${left + logScale(r.penalty) * w + 4}" y="${y + 13}">${r.penalty.toPrecision(2)}</text>`,
        `<rect x="${left + w + 90}" y="${y}" width="${((r.overhead / maxOver) * w).toFixed(1)}" height="${h}" fill="${color}"/>`,
        `<text x="${left + w + 94 + (r.overhead / maxOver) * w}" y="${y + 13}">${r.overhead.toFixed(1)} ms</text>`,
      ].join('\n');
    })
    .join('\n');
  const height = top + rows.length * (h + 4) + 20;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${left + 2 * w + 170}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="15" font-weight="bold">Paper's video experiment: medians (velo-stream in orange)</text>
<text x="${left}" y="40" font-weight="bold">cold start penalty (log scale, 1e-6 .. 1)</text>
<text x="${left + w + 90}" y="40" font-weight="bold">processing overhead (ms)</text>
${bars}
</svg>
`;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const size = values.quick ? 'quick' : 'full';
  const t0 = Date.now();
  const results = await experiment(size, (line) => console.log(line));
  console.log(`\n${table(results)}\n`);
  console.log('Published in the paper: cold start penalty 0.0363 and 0.0061 for Beaver at its two stream durations; ~1.0 for a mature stream engine.');
  for (const t of targets(results)) console.log(`${t.pass ? 'PASS' : 'FAIL'}  ${t.what} (${t.value.toPrecision(3)})`);
  const quick = size !== 'full';
  const svg = writeOut('charts/paper.svg', quick, chart(results));
  const json = writeOut('paper/results.json', quick, JSON.stringify({ size, date: new Date().toISOString(), results }, null, 2) + '\n');
  console.log(`\n${((Date.now() - t0) / 1000).toFixed(0)} s; chart in ${svg}, figures in ${json}`);
}
