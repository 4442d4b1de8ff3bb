// One long session on Redis, with and without checkpoints (issue 28's goals):
//
//   node bench/redis-long.mjs [events] [every] [runs]      (defaults 200000, 1000, 3)
//   node bench/redis-long.mjs chart                        redraws bench/charts/redis-long.svg from the results
//
// - Failover: a worker child process (the test helper's `ckpt` handler: running totals, a checkpoint every
//   `every` events; `every` 0: the plain `totals` handler, no checkpoint) runs one session of `events` events on
//   one partition of a private redis-server (leaseTtl 2000, trimInterval 1000). Once its last output is in Redis
//   it is killed -9, one more event is sent, and a second worker is started: the time from the kill to that
//   event's output (the new worker's process start included), and its replay part alone, from the lease taken (the lease key naming the new worker,
//   polled every 2 ms) to that output.
// - Memory: the outputs are read as a deployment would, by a `redisOutputs` reader with a consumer group (in
//   this process), and the workers run with `outputRetention: 'acked'`; Redis `used_memory` and the XLEN of the
//   partition's input and of its output stream are sampled every 250 ms while the session runs.
// - Overhead: a backlog of 100 keys x 2,000 events, drained by one worker child (SIGSTOP while it is written,
//   then SIGCONT), each key's session ended by a last `stop` event: events/s up to nothing pending (every
//   input acked, by the checkpoints or at the sessions' ends), with a checkpoint every 100 events against none.
//   `node bench/redis-long.mjs drains [runs]` runs only these (in alternating order); each is also timed to its
//   last output (`toLastOutputPerSecond`: the run without checkpoints has acked nothing by then), and the summary
//   gives the overhead of checkpoints on both measures, and on the worker's CPU time per event (user + system,
//   from /proc, SIGCONT to nothing pending: less sensitive than the rates to other load on the machine).
// Prints a JSON summary per run and writes bench/redis-long-results.json.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { redisOutputs, redisProducer } from 'velo-stream/redis';
import { start } from '../__test__/helpers/child.mjs';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { lineChart } from './svg.mjs';

const RESULTS = new URL('./redis-long-results.json', import.meta.url);
const CHART = new URL('./charts/redis-long.svg', import.meta.url);

/** Redis' used_memory and the two XLENs over time in the first run with checkpoints (and used_memory without), as an SVG line chart. */
function chart(results) {
  const pointsOf = (everyN, field, scale) => results.runs.find((r) => r.every === everyN).samples.map((p) => [p.t / 1000, p[field] / scale]);
  return lineChart({
    title: `One session of ${results.events.toLocaleString('en-US')} events, a group reader, outputRetention 'acked' (every 250 ms)`,
    xLabel: 'seconds',
    yLabel: 'MB / thousand entries',
    series: [
      { label: `used_memory, MB (a checkpoint every ${results.every} events)`, color: '#d9480f', points: pointsOf(results.every, 'usedMemory', 1e6) },
      { label: 'used_memory, MB (no checkpoints)', color: '#868e96', points: pointsOf(0, 'usedMemory', 1e6) },
      { label: 'XLEN of the input, thousands (checkpoints)', color: '#1c7ed6', points: pointsOf(results.every, 'xlen', 1e3) },
      { label: 'XLEN of the outputs, thousands (checkpoints)', color: '#5c940d', points: pointsOf(results.every, 'outputs', 1e3) },
    ],
  });
}

if (process.argv[2] === 'chart') {
  writeFileSync(CHART, chart(JSON.parse(readFileSync(RESULTS, 'utf8'))));
  process.exit(0);
}

const drainsOnly = process.argv[2] === 'drains';
const [events = 200_000, every = 1000, runs = 3] = drainsOnly ? [0, 0, Number(process.argv[3] ?? 3)] : process.argv.slice(2).map(Number);
// VELO_BENCH_CPU_PROF=<dir>: the worker children write CPU profiles there (the drains' workers then exit by
// SIGTERM, so that theirs are written).
const PROF = process.env.VELO_BENCH_CPU_PROF;
const CHILD = fileURLToPath(new URL('../__test__/helpers/redis-worker-child.mjs', import.meta.url));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

/** A worker child: `every` 0 runs `totals`, else `ckpt` with a checkpoint every `every` events. */
function worker(url, name, ttl, everyN, workerId) {
  const extra = everyN === 0 ? { workerId } : { handler: 'ckpt', every: everyN, workerId };
  // The failover runs' outputs are read by a group reader: the worker trims what it acked.
  if (ttl === 2000) extra.outputRetention = 'acked';
  const prof = PROF === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${PROF}`, `--cpu-prof-name=worker-every${everyN}-${workerId}.cpuprofile`];
  return start([...prof, CHILD, url, name, 1, ttl, 3_600_000, 0, 1000, JSON.stringify(extra)].map(String), { timeout: 3_600_000 });
}

async function until(check, what, timeout = 600_000, ms = 5) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(ms);
  }
}

const usedMemory = async (client) => Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1]);

async function failover(url, client, everyN, run) {
  const name = `long${everyN}r${run}`;
  const input = `velo:{${name}:p0}`;
  const out = `${input}:out`;
  const a = worker(url, name, 2000, everyN, `a${run}`);
  await until(async () => (await client.get(`${input}:lease`))?.startsWith(`a${run}:`), 'A owns the partition');
  const producer = redisProducer({ client, name, partitions: 1 });
  const abort = new AbortController();
  let read = 0;
  const reading = (async () => {
    for await (const o of redisOutputs({ client, name, partitions: 1, group: 'reader', count: 1000, signal: abort.signal })) if ('value' in o) read++;
  })();
  const samples = [];
  const started = Date.now();
  const sampler = setInterval(async () => {
    samples.push({ t: Date.now() - started, usedMemory: await usedMemory(client), xlen: await client.xLen(input), outputs: await client.xLen(out), read });
  }, 250);
  for (let n = 0; n < events; n += 1000) {
    await producer.sendMany(Array.from({ length: Math.min(1000, events - n) }, (_, i) => ['long', { n: n + i }]));
    // At most a few batches ahead of the worker: a live session, not a backlog.
    await until(() => read >= n - 5000, 'the worker and the reader to keep up', 600_000, 2);
  }
  await until(() => read === events, 'every output read', 600_000, 10);
  // Past a trim (trimInterval 1000, checked every leaseTtl/3): the input as the session leaves it.
  await sleep(2500);
  clearInterval(sampler);
  samples.push({ t: Date.now() - started, usedMemory: await usedMemory(client), xlen: await client.xLen(input), outputs: await client.xLen(out), read });
  const pending = Number((await client.xPending(input, 'velo')).pending);
  a.child.kill('SIGKILL');
  const killed = performance.now();
  await a.finished().catch(() => {});
  await producer.send('long', { n: events });
  const b = worker(url, name, 2000, everyN, `b${run}`);
  await until(async () => (await client.get(`${input}:lease`))?.startsWith(`b${run}:`), 'B owns the partition', 60_000, 2);
  const acquired = performance.now();
  await until(() => read === events + 1, "the new event's output, read", 600_000, 1);
  const output = performance.now();
  abort.abort();
  await reading;
  // Its next stats line (every 100 ms) has the whole replay.
  await sleep(250);
  const stats = JSON.parse(b.stdout.split('\n').filter((l) => l.startsWith('stats ')).at(-1)?.slice(6) ?? '{}');
  b.child.kill('SIGKILL');
  await b.finished().catch(() => {});
  await client.del(await client.keys(`velo:{${name}*`));
  return {
    every: everyN,
    events,
    pendingAtKill: pending,
    killToOutputMs: Math.round(output - killed),
    replayMs: Math.round(output - acquired),
    replayed: stats.replayed,
    restored: stats.restored,
    usedMemoryMax: Math.max(...samples.map((s) => s.usedMemory)),
    usedMemoryMin: Math.min(...samples.map((s) => s.usedMemory)),
    xlenMax: Math.max(...samples.map((s) => s.xlen)),
    xlenLast: samples.at(-1)?.xlen,
    outputsXlenMax: Math.max(...samples.map((s) => s.outputs)),
    outputsXlenLast: samples.at(-1)?.outputs,
    usedMemoryLast: samples.at(-1)?.usedMemory,
    samples,
  };
}

/** CPU time (user + system) of a process so far, ms, from /proc (Linux; clock ticks of 10 ms). */
function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function drain(url, client, everyN, run) {
  const name = `drain${everyN}r${run}`;
  const keys = 100;
  const perKey = 2000;
  const w = worker(url, name, 30_000, everyN, `d${run}`);
  await until(async () => (await client.get(`velo:{${name}:p0}:lease`))?.startsWith(`d${run}:`), 'the worker owns the partition');
  w.child.kill('SIGSTOP');
  const producer = redisProducer({ client, name, partitions: 1 });
  for (let r = 0; r < perKey; r += 10) {
    const batch = [];
    for (let i = r; i < r + 10; i++) for (let k = 0; k < keys; k++) batch.push([`k${k}`, { n: i }]);
    await producer.sendMany(batch);
  }
  await producer.sendMany(Array.from({ length: keys }, (_, k) => [`k${k}`, { n: -1, stop: true }]));
  const cpu0 = cpuMs(w.child.pid);
  const t0 = performance.now();
  w.child.kill('SIGCONT');
  await until(async () => (await client.xLen(`velo:{${name}:p0}:out`)) === keys * perKey, 'the drain', 600_000, 10);
  const msOut = performance.now() - t0;
  await until(async () => Number((await client.xPending(`velo:{${name}:p0}`, 'velo')).pending) === 0, 'every session ended', 600_000, 10);
  const ms = performance.now() - t0;
  const cpu = cpuMs(w.child.pid) - cpu0;
  w.child.kill(PROF === undefined ? 'SIGKILL' : 'SIGTERM');
  await w.finished().catch(() => {});
  await client.del(await client.keys(`velo:{${name}*`));
  const rate = (t) => Math.round((keys * perKey) / (t / 1000));
  return {
    every: everyN,
    events: keys * perKey,
    eventsPerSecond: rate(ms),
    toLastOutputPerSecond: rate(msOut),
    workerCpuUsPerEvent: +((cpu * 1000) / (keys * perKey)).toFixed(2),
  };
}

const results = { events, every, runs: [], drains: [] };
// A redis-server per run: each run's used_memory starts from an empty server (and the test helper's server lives
// at most 10 minutes).
for (let run = 0; run < runs; run++) {
  const redis = await startRedis();
  const client = await createClient({ url: redis.url }).connect();
  try {
    for (const everyN of drainsOnly ? [] : [every, 0]) {
      const r = await failover(redis.url, client, everyN, run);
      const { samples, ...summary } = r;
      console.log(JSON.stringify(summary));
      results.runs.push(r);
    }
    // Alternating which goes first: the machine's drift falls on both.
    for (const everyN of run % 2 === 0 ? [100, 0] : [0, 100]) {
      const d = await drain(redis.url, client, everyN, run);
      console.log(JSON.stringify(d));
      results.drains.push(d);
    }
  } finally {
    await client.close();
    await redis.stop();
  }
}
{
  const pick = (list, everyN, field) => median(list.filter((r) => r.every === everyN).map((r) => r[field]));
  const summary = {
    replayMsWith: pick(results.runs, every, 'replayMs'),
    replayMsWithout: pick(results.runs, 0, 'replayMs'),
    killToOutputMsWith: pick(results.runs, every, 'killToOutputMs'),
    killToOutputMsWithout: pick(results.runs, 0, 'killToOutputMs'),
    xlenMaxWith: pick(results.runs, every, 'xlenMax'),
    xlenMaxWithout: pick(results.runs, 0, 'xlenMax'),
    usedMemoryMaxWith: pick(results.runs, every, 'usedMemoryMax'),
    usedMemoryMaxWithout: pick(results.runs, 0, 'usedMemoryMax'),
    outputsXlenMaxWith: pick(results.runs, every, 'outputsXlenMax'),
    outputsXlenMaxWithout: pick(results.runs, 0, 'outputsXlenMax'),
    drainWith100: pick(results.drains, 100, 'eventsPerSecond'),
    drainWithout: pick(results.drains, 0, 'eventsPerSecond'),
    drainToLastOutputWith100: pick(results.drains, 100, 'toLastOutputPerSecond'),
    drainToLastOutputWithout: pick(results.drains, 0, 'toLastOutputPerSecond'),
    workerCpuUsPerEventWith100: pick(results.drains, 100, 'workerCpuUsPerEvent'),
    workerCpuUsPerEventWithout: pick(results.drains, 0, 'workerCpuUsPerEvent'),
  };
  const cost = (a, b) => `${(100 * (1 - a / b)).toFixed(1)} %`;
  summary.overheadToNothingPending = cost(summary.drainWith100, summary.drainWithout);
  summary.overheadToLastOutput = cost(summary.drainToLastOutputWith100, summary.drainToLastOutputWithout);
  summary.overheadWorkerCpu = `${(100 * (summary.workerCpuUsPerEventWith100 / summary.workerCpuUsPerEventWithout - 1)).toFixed(1)} %`;
  console.log(`summary ${JSON.stringify(summary)}`);
  if (!drainsOnly) {
    writeFileSync(RESULTS, `${JSON.stringify({ ...results, summary }, null, 1)}\n`);
    writeFileSync(CHART, chart(results));
  }
}
