// Where a session's opening goes (issue 57): what a key's first event costs a Redis worker against a later event
// of a live session, in calls to the log (round trips, by kind), Redis commands and worker CPU.
//
//   node bench/redis-openings.mjs [keys] [rounds] [--key-state] [--cpu-prof]
//
// One in-process worker on a private redis-server, 16 partitions, `maxConcurrent` above the keys, `idleTimeout` 0
// (sessions never end), the running-total handler of `bench:redis`. A child process writes, per round, one event to
// each of `keys` keys (sendMany, 1,000 a call) while the worker runs; a round ends when all its outputs are committed.
// Round 1 opens a session per key (openings); the later rounds go to live sessions (later events). Per round: the
// worker's calls to its log by kind (each one request and its reply: read, commit, keyState, ...) per event,
// redis-server's commands per event (INFO commandstats: the producer's XADDs, 1 per event, included), this
// process's CPU per event (the worker alone: the producer is a child), and the round's wall time. `--key-state`:
// the worker keeps keys' states (`keyState`), so an opening reads its key's. `--cpu-prof`: writes a CPU profile of
// the openings round and of the first later round (sampled in this process) and prints their top functions by self time
// (PROF_OUT=<path prefix>: each profile is also written to <prefix>-<round>.cpuprofile).
// Round 1 also prints, from each session's opening (its handler's start) to its first event, the sessions opened
// meanwhile and the time. `--heap-prof`: samples the allocations of the same rounds (V8's sampling heap profiler, every 4 KB) and prints
// the functions that allocated most, by bytes still live at the round's end and by bytes allocated.
import { spawn } from 'node:child_process';
import { Session } from 'node:inspector/promises';
import { fileURLToPath } from 'node:url';
import { streamFn } from '../index.mjs';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { startRedis } from '../__test__/helpers/redis-server.mjs';

const SELF = fileURLToPath(import.meta.url);
const PARTITIONS = 16;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

if (process.argv[2] === 'producer') {
  // Child: writes one round, prints `sent`.
  const [, , url, name, keys, round] = process.argv.slice(1);
  const { createClient } = await import('redis');
  const client = createClient({ url });
  await client.connect();
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const n = Number(keys);
  for (let i = 0; i < n; i += 1000) {
    await producer.sendMany(Array.from({ length: Math.min(1000, n - i) }, (_, j) => [`k${i + j}`, { n: Number(round) }]));
  }
  console.log('sent');
  await client.close();
  process.exit(0);
}

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const keys = Number(args[0] ?? 10_000);
const rounds = Number(args[1] ?? 3);
const keyState = process.argv.includes('--key-state');
const profile = process.argv.includes('--cpu-prof');
const heapProfile = process.argv.includes('--heap-prof');

async function until(check, what, timeout = 300_000, ms = 5) {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(ms);
  }
}

async function commandStats(client) {
  const info = await client.info('commandstats');
  const out = {};
  for (const [, cmd, calls, usec] of info.matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g))
    out[cmd] = { calls: +calls, usec: +usec };
  return out;
}

function diffCommands(before, after, events) {
  const out = {};
  for (const [cmd, { calls, usec }] of Object.entries(after)) {
    const d = calls - (before[cmd]?.calls ?? 0);
    if (d > 0 && cmd !== 'info')
      out[cmd] = { perEvent: +(d / events).toFixed(4), usPerEvent: +((usec - (before[cmd]?.usec ?? 0)) / events).toFixed(2) };
  }
  return out;
}

/** The top functions of a profile by self time, and by total time (their callees' included), as shares of the busy time. */
function topFunctions(profileJson, n = 20) {
  const { nodes, samples, timeDeltas } = profileJson;
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const parent = new Map();
  for (const node of nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const labelOf = (node) => {
    const f = node.callFrame;
    return `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
  };
  const self = new Map();
  const inclusive = new Map();
  let busy = 0;
  for (let i = 0; i < samples.length; i++) {
    const node = byId.get(samples[i]);
    if (node.callFrame.functionName === '(idle)') continue;
    busy += timeDeltas[i];
    self.set(labelOf(node), (self.get(labelOf(node)) ?? 0) + timeDeltas[i]);
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) seen.add(labelOf(byId.get(id)));
    for (const label of seen) inclusive.set(label, (inclusive.get(label) ?? 0) + timeDeltas[i]);
  }
  const top = (map) =>
    [...map.entries()]
      .filter(([label]) => !label.startsWith('(root)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([label, us]) => `${((100 * us) / busy).toFixed(1).padStart(5)}%  ${label}`);
  return { busyMs: busy / 1000, self: top(self), total: top(inclusive) };
}

const redis = await startRedis();
const client = await redis.client();
const name = 'openings';
// Per session, from its handler's start (its opening) to its first event: the sessions opened meanwhile (a read's
// later openings, when its first event waits for them) and the time, ms.
let openedCount = 0;
const behind = [];
const waitedMs = [];
const fn = streamFn(
  async function* sum(events) {
    const opened = ++openedCount;
    const at = performance.now();
    let total = 0;
    let first = true;
    for await (const e of events) {
      if (first) {
        first = false;
        behind.push(openedCount - opened);
        waitedMs.push(performance.now() - at);
      }
      yield { n: e.n, total: (total += e.n) };
    }
  },
  { idleTimeout: 0, maxConcurrent: keys + 10 },
);
const worker = redisWorker(fn, {
  client,
  name,
  partitions: PARTITIONS,
  leaseTtl: 30_000,
  onError: (e) => console.error(`error ${e?.code} ${e?.message}`),
  ...(keyState ? { keyState: { retention: 3_600_000 } } : {}),
});
// Every call to the log, by kind (each is one request and its reply, but for `wait`, the blocking wake-up).
const calls = {};
for (const [kind, call] of Object.entries(worker.log)) {
  if (typeof call !== 'function' || kind === 'close' || kind === 'interrupt') continue;
  worker.log[kind] = (...a) => {
    calls[kind] = (calls[kind] ?? 0) + 1;
    return call(...a);
  };
}
const outputs = () => worker.counters?.outputs ?? worker.stats().outputs;
const inspector = profile || heapProfile ? new Session() : null;
if (inspector) {
  inspector.connect();
  await inspector.post('HeapProfiler.enable');
  await inspector.post('Profiler.enable');
  await inspector.post('Profiler.setSamplingInterval', { interval: 100 });
}
try {
  await until(() => worker.stats().owned.length === PARTITIONS, 'every partition');
  await sleep(500);
  console.log(
    `${keys} keys, ${rounds} rounds, keyState ${keyState}; load average ${(await import('node:os'))
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  );
  for (let r = 1; r <= rounds; r++) {
    for (const k of Object.keys(calls)) delete calls[k];
    const commandsBefore = await commandStats(client);
    const outputsBefore = outputs();
    if (profile && (r === 1 || r === 2)) await inspector.post('Profiler.start');
    // (Objects collected are dropped from the samples: with GC-free sampling flags off, what is left at the end is live.)
    if (heapProfile && (r === 1 || r === 2)) await inspector.post('HeapProfiler.startSampling', { samplingInterval: 4096 });
    const cpu = process.cpuUsage();
    const t0 = performance.now();
    const child = spawn(process.execPath, [SELF, 'producer', redis.url, name, String(keys), String(r)], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    // (The worker's own counter, not stats(): at 10,000 sessions, polling stats() was a tenth of the profile.)
    await until(() => outputs() - outputsBefore >= keys, `round ${r}'s outputs`, 300_000, 20);
    const ms = performance.now() - t0;
    const used = process.cpuUsage(cpu);
    let prof;
    if (profile && (r === 1 || r === 2)) prof = (await inspector.post('Profiler.stop')).profile;
    if (prof && process.env.PROF_OUT)
      (await import('node:fs')).writeFileSync(`${process.env.PROF_OUT}-${r}.cpuprofile`, JSON.stringify(prof));
    let heap;
    // (Garbage collected first, with --expose-gc: what the samples keep is then what is live.)
    if (heapProfile && (r === 1 || r === 2)) {
      globalThis.gc?.();
      heap = (await inspector.post('HeapProfiler.stopSampling')).profile;
    }
    await exited;
    const commands = diffCommands(commandsBefore, await commandStats(client), keys);
    const perEvent = Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, +(v / keys).toFixed(4)]));
    console.log(
      `round ${r} (${r === 1 ? 'openings' : 'later events'}): ${ms.toFixed(0)} ms, worker CPU ${((used.user + used.system) / keys).toFixed(1)} µs/event; log calls per event ${JSON.stringify(perEvent)}`,
    );
    console.log(`  redis-server commands per event ${JSON.stringify(commands)}`);
    if (r === 1) {
      const q = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
      console.log(
        `  from a session's opening to its first event: sessions opened meanwhile p50 ${q(behind, 0.5)} / p99 ${q(behind, 0.99)}; ms p50 ${q(waitedMs, 0.5).toFixed(2)} / p99 ${q(waitedMs, 0.99).toFixed(2)}`,
      );
    }
    if (heap) {
      const bytes = new Map();
      let all = 0;
      const walk = (node) => {
        const f = node.callFrame;
        const label = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
        bytes.set(label, (bytes.get(label) ?? 0) + node.selfSize);
        all += node.selfSize;
        for (const child of node.children) walk(child);
      };
      walk(heap.head);
      console.log(`  live sampled allocations at the round's end: ${(all / keys).toFixed(0)} B per event; top functions:`);
      for (const [label, b] of [...bytes.entries()].sort((x, y) => y[1] - x[1]).slice(0, 20))
        console.log(`    ${(b / keys).toFixed(0).padStart(6)} B/event  ${label}`);
    }
    if (prof) {
      const top = topFunctions(prof);
      console.log(`  busy ${top.busyMs.toFixed(0)} ms sampled; top self time, round ${r}:`);
      for (const line of top.self) console.log(`    ${line}`);
      console.log(`  top total time (callees included), round ${r}:`);
      for (const line of top.total) console.log(`    ${line}`);
    }
  }
  if (worker.stats().sessions !== keys) throw new Error(`${worker.stats().sessions} sessions`);
} finally {
  await worker.close();
  await client.close().catch(() => {});
  await redis.stop();
}
