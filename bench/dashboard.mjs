// node bench/dashboard.mjs [--rounds 6] [--seconds 5] [--streams 10000]
//
// What the dashboard (velo-stream/dashboard) costs the server: a server process with `--streams` open streams
// under a steady load (every 10 ms, one event to each of the next 500 streams, round robin: 50,000 events/s),
// run with a dashboard mounted and a page's feed connected (sampled once a second), and without any dashboard.
// Each run is its own child process; the two run at the same time (so that other load on the machine falls on
// both), for `--rounds` rounds, and the server's CPU time (process.cpuUsage, user + system) over the same
// `--seconds` of the same load is compared. The feed is read by
// this process, as a browser in another process would. Then, in this process, the cost of one sample (read and
// serialized) with that many open streams, which is the dashboard's whole per-second work, and by `scan`.
//
// node --single-threaded bench/dashboard.mjs --instructions with|without [--ticks 500] [--streams 10000]
//
// The same comparison in instructions, which callgrind counts repeatably where CPU time on this shared machine
// does not: the load's ticks run back to back (100 ticks are one second of the load: 50,000 events), and `with`
// samples the dashboard once per 100 ticks, as the feed's timer would once a second. Run each under
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null node --single-threaded bench/dashboard.mjs --instructions ...
// and compare: (with - without) / samples is one sample; the slope of `without` between two `--ticks` is the load.
// The whole runs differ by a few % from one count to the next (when the collector runs over the 10,000 streams), so
// the sample is also counted alone: `--instructions samples --ticks 0 --samples K`, K samples back to back.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { streamFn } from 'velo-stream';
import { dashboard } from 'velo-stream/dashboard';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '5' },
    streams: { type: 'string', default: '10000' },
    server: { type: 'string' },
    only: { type: 'string' },
    // The variant compared with `without`: `with` (a dashboard and a connected feed) or `listed` (a dashboard, no feed).
    with: { type: 'string', default: 'with' },
    instructions: { type: 'string' },
    ticks: { type: 'string', default: '500' },
    samples: { type: 'string', default: '0' },
  },
});
const STREAMS = Number(args.streams);
const SECONDS = Number(args.seconds);
const PER_TICK = 500;

/** Opens the streams (after mounting a dashboard on their function, with `watched`) and runs the load. */
function openLoad(watched) {
  const relay = streamFn(
    async function* relay(events) {
      for await (const e of events) yield e;
    },
    { name: 'relay', idleTimeout: 0, maxConcurrent: STREAMS },
  );
  // Mounted first, as an application would at start-up: every stream below is listed.
  const dash = watched ? dashboard({ functions: [relay] }) : undefined;
  const streams = Array.from({ length: STREAMS }, () => relay.open());
  const readers = streams.map(async (s) => {
    for await (const _ of s);
  });
  let next = 0;
  let sent = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < PER_TICK; i++) {
      streams[next].send(sent++).catch(() => {});
      next = (next + 1) % STREAMS;
    }
  }, 10);
  return {
    relay,
    dash,
    get sent() {
      return sent;
    },
    async stop() {
      clearInterval(timer);
      await Promise.all(streams.map((s) => s.cancel()));
      await Promise.all(readers.map((r) => r.catch(() => {})));
    },
  };
}

/** The server child: `with` mounts a dashboard (the parent connects to its feed), `without` serves nothing else. */
async function server(variant) {
  const load = openLoad(variant !== 'without');
  const handler = load.dash ?? ((_req, res) => res.end('no dashboard\n'));
  const srv = http.createServer(handler);
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  console.log(`listening ${srv.address().port}`);
  // The parent says when its feed is connected (or, without, at once): the measured window starts then.
  await new Promise((resolve) => process.stdin.once('data', resolve));
  process.stdin.pause();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const cpu0 = process.cpuUsage();
  const sent0 = load.sent;
  const t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - t0;
  const events = load.sent - sent0;
  await load.stop();
  srv.closeAllConnections();
  srv.close();
  console.log(JSON.stringify({ variant, cpuMs: (cpu.user + cpu.system) / 1000, wallMs, events }));
}

async function runOne(variant) {
  const child = spawn(process.execPath, [new URL(import.meta.url).pathname, '--server', variant, '--seconds', String(SECONDS), '--streams', String(STREAMS)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text) => (out += text));
  const exited = new Promise((resolve) => child.once('close', resolve));
  while (!/listening (\d+)/.test(out)) await new Promise((resolve) => child.stdout.once('data', resolve));
  const port = Number(/listening (\d+)/.exec(out)[1]);
  let samples = 0;
  let request;
  if (variant === 'with') {
    await new Promise((resolve, reject) => {
      request = http.get(`http://127.0.0.1:${port}/feed`, (res) => {
        res.setEncoding('utf8');
        res.on('data', (text) => (samples += text.split('\n\n').length - 1));
        res.on('error', () => {});
        resolve();
      });
      request.on('error', reject);
    });
  }
  child.stdin.end('go\n');
  await exited;
  request?.destroy();
  const result = JSON.parse(out.trim().split('\n').at(-1));
  return { ...result, samples };
}

/** One sample with `STREAMS` open streams, in this process: its cost is the dashboard's per-interval work. */
async function sampleCost() {
  const load = openLoad(true);
  const srv = http.createServer(load.dash);
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const times = [];
  await new Promise((resolve) => {
    http.get(`http://127.0.0.1:${srv.address().port}/feed`, (res) => {
      res.setEncoding('utf8');
      let last = performance.now();
      res.on('data', () => {
        const now = performance.now();
        times.push(now - last);
        last = now;
        if (times.length >= 4) {
          res.destroy();
          resolve();
        }
      });
    });
  });
  // The sample itself, timed directly: the same work the feed's timer does once per interval.
  const { Sampler } = await import('../dist/integrations/dashboard-sample.js');
  const sampler = new Sampler([load.relay], [], 250, false); // dashboard()'s default scan
  const costs = [];
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const t = performance.now();
    JSON.stringify(sampler.sample());
    costs.push(performance.now() - t);
  }
  // And by `scan` (listed streams whose metrics a sample reads).
  const byScan = {};
  for (const n of [0, 250, 1000]) {
    const s = new Sampler([load.relay], [], n, false);
    const times = [];
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const t = performance.now();
      JSON.stringify(s.sample());
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    byScan[n] = times[times.length >> 1];
  }
  await load.stop();
  srv.close();
  costs.sort((a, b) => a - b);
  return { medianMs: costs[costs.length >> 1], maxMs: costs.at(-1), byScan };
}

/** `--instructions`: the load's ticks back to back, with a sample (read and serialized) every 100 ticks for `with`. */
async function instructions(variant) {
  const relay = streamFn(
    async function* relay(events) {
      for await (const e of events) yield e;
    },
    { name: 'relay', idleTimeout: 0, maxConcurrent: STREAMS },
  );
  // The sampler a mounted dashboard runs per interval, with its default scan.
  const { Sampler } = await import('../dist/integrations/dashboard-sample.js');
  const sampler = variant !== 'without' ? (dashboard({ functions: [relay] }), new Sampler([relay], [], 250, false)) : undefined;
  const streams = Array.from({ length: STREAMS }, () => relay.open());
  const readers = streams.map(async (s) => {
    for await (const _ of s);
  });
  let next = 0;
  let sent = 0;
  let samples = 0;
  for (let tick = 0; tick < Number(args.ticks); tick++) {
    const sends = [];
    for (let i = 0; i < PER_TICK; i++) {
      sends.push(streams[next].send(sent++));
      next = (next + 1) % STREAMS;
    }
    await Promise.all(sends);
    await new Promise((resolve) => setImmediate(resolve));
    if (sampler !== undefined && tick % 100 === 99) {
      JSON.stringify(sampler.sample());
      samples++;
    }
  }
  // `samples`: that many more, back to back, with the streams open and idle.
  for (let i = 0; i < Number(args.samples); i++) {
    JSON.stringify(sampler.sample());
    samples++;
  }
  await Promise.all(streams.map((s) => s.cancel()));
  await Promise.all(readers.map((r) => r.catch(() => {})));
  console.log(JSON.stringify({ variant, ticks: Number(args.ticks), events: sent, samples }));
}

if (args.instructions) {
  await instructions(args.instructions);
} else if (args.server) {
  await server(args.server);
} else if (args.only) {
  // One run of each variant named (e.g. --only without,listed,with): to find where a difference comes from.
  for (const variant of args.only.split(',')) {
    const one = await runOne(variant);
    console.log(`${variant.padEnd(8)} cpu ${(one.cpuMs / 1000).toFixed(3)} s, ${one.events} events, ${((one.cpuMs / one.events) * 1000).toFixed(2)} ms per 1,000`);
  }
} else {
  const rounds = Number(args.rounds);
  const results = { [args.with]: [], without: [] };
  for (let r = 0; r < rounds; r++) {
    // Both at once: the two share whatever else loads the machine during the same seconds.
    const pair = await Promise.all([runOne('without'), runOne(args.with)]);
    for (const one of pair) {
      const variant = one.variant;
      results[variant].push(one);
      console.log(
        `${variant.padEnd(8)} cpu ${(one.cpuMs / 1000).toFixed(3)} s in ${(one.wallMs / 1000).toFixed(1)} s (${((one.cpuMs / one.wallMs) * 100).toFixed(1)} % of a core), ${one.events} events${variant === 'with' ? `, ${one.samples} samples read` : ''}`,
      );
    }
  }
  // This machine is shared: a run's CPU varies by more than 10 % from one run to the next. The minimum over
  // the rounds is the run least disturbed by others; the median is given too.
  const perEvent = (v) => results[v].map((x) => (x.cpuMs / x.events) * 1000).sort((a, b) => a - b);
  const w = perEvent(args.with);
  const wo = perEvent('without');
  const pct = (a, b) => `${(((a - b) / b) * 100).toFixed(2)} %`;
  const median = (xs) => xs[xs.length >> 1];
  // Paired: each round's two runs shared the machine's other load.
  const paired = results.without
    .map((wo, i) => ((results[args.with][i].cpuMs - wo.cpuMs) / wo.cpuMs) * 100)
    .sort((a, b) => a - b);
  console.log(`paired CPU difference per round: ${paired.map((p) => `${p >= 0 ? '+' : ''}${p.toFixed(1)} %`).join(', ')}`);
  console.log(`CPU per 1,000 events, min: with ${w[0].toFixed(3)} ms, without ${wo[0].toFixed(3)} ms: ${pct(w[0], wo[0])}`);
  console.log(`CPU per 1,000 events, median: with ${median(w).toFixed(3)} ms, without ${median(wo).toFixed(3)} ms: ${pct(median(w), median(wo))}`);
  const cost = await sampleCost();
  console.log(
    `one sample with ${STREAMS} open streams: median ${cost.medianMs.toFixed(2)} ms, max ${cost.maxMs.toFixed(2)} ms (at one sample a second: ${(cost.medianMs / 10).toFixed(3)} % of a core)`,
  );
  console.log(`by scan: ${Object.entries(cost.byScan).map(([n, ms]) => `${n}: ${ms.toFixed(2)} ms`).join(', ')}`);
}
