// npm run bench:redis [-- --quick]       the full measurement (below)
// node bench/redis.mjs drain [events] [keys]
// node bench/redis.mjs drains [rounds] [events] [--base <copy>] [--variant '<json>'] [--journal]   the drain of `full`: one velo
//   worker, the naive consumer (and another copy's worker; workers of this copy with other options), rounds rotating,
//   with redis-server's command time per event; PERF=<dir> records redis-server with perf, CALLGRIND=1 (the server
//   run under callgrind through VELO_REDIS_SERVER) dumps its counts per drain, CHILD_PROF=<dir> profiles the consumers
//   (any mode with consumers in child processes: CHILD_NODE_ARGS='--trace-gc --trace-gc-nvp' adds node options to each,
//   CHILD_STDOUT=<dir> keeps each one's stdout there, where --trace-gc prints its collections)
//   --journal: the velo worker with a handler calling `compute(e)` per event against one calling it through
//   `ctx.run(...)` (a journaled call), in place of the velo worker and the naive consumer; with --base, the other
//   copy's worker runs its journaled handler (`base`, its ratio to this copy's `plain`), or with BASE_CALL=<handler>
//   another of bench/redis/child.mjs (`awaited`, `encoded`: an `await`, or encoding the result, without the journal)
// node bench/redis.mjs live [events/s] [seconds] [keys]
// node bench/redis.mjs full-live [seconds]   only the live runs of `full`, printed
// node bench/redis.mjs failover [runs]       only the failover runs of `full` (default 3), each printed, and the medians
// IDLE_MS=1000 node bench/redis.mjs backlog [keys] [events per key] [maxConcurrent]   a lone worker on a backlog
// node bench/redis.mjs reader [outputs] [other package dir]   a group reader's outputs/s (against another copy)
// node bench/redis.mjs servers [rounds] [--quick]   redis-server and Valkey side by side, in one sitting (below)
// node bench/redis.mjs openings [events/s] [keys] [seconds]   only the openings shape of `full` (below), printed
// RATE=<events/s> node bench/redis.mjs slots [keys] [maxConcurrent] [idleTimeout] [--quick]   only the slots shape of `full`, printed
//
// `--server valkey` (any mode but `servers`): the private server is a valkey-server instead of redis-server, found or
// installed as `npm run test:valkey` does (scripts/valkey.mjs); mode full then writes redis-results-valkey.json and
// charts/redis-valkey.svg. `--server redis` (the default): redis-server from PATH.
//
// Mode `servers`: a redis-server and a valkey-server, both private, no persistence; per round (3 by default), on
// each in turn (the order alternating): a drain by one velo-stream worker in a child process (100,000 events over
// 1,000 keys, 30,000 with --quick) and a live run of one worker at 5K events/s (10 s, 3 with --quick), as in mode
// full. Prints each run and, per server, the medians: drain events/s, CPU per drained event of the worker and of the
// server, live p50 / p99 and CPU per event. Nothing written.
//
// `npm run bench:redis` (mode `full`): consumers in child processes
// (bench/redis/child.mjs) on a private redis-server, 16 partitions, 1,000
// keys, one output written back per event; writes bench/redis-results.json
// and bench/charts/redis.svg (a quick run: under bench/quick/, see out.mjs).
// - Drain: a backlog of events over the 1,000 keys (1,000 live sessions)
//   is written while the consumers are stopped (SIGSTOP, after they took
//   their partitions), then they are resumed (SIGCONT): events/s from the
//   resume to the last output in Redis. velo-stream with 1 worker and with 2
//   (aggregate), and the naive baseline (bench/redis/naive.mjs: a stream per
//   session, all 1,000 named in one XREAD). Rounds interleave the three;
//   medians are reported; every run's outputs are checked.
// - Live: a producer sends at 5K events/s per worker, in batches every 10 ms;
//   the handler records the time from just before the XADD to the event
//   reaching it (p50, p99), velo-stream with 1 and 2 workers, the naive one
//   at 5K/s. Also the CPU per event of the consumer processes and of
//   redis-server (the producer's XADDs included) from just before the
//   producer starts to the last output, redis-server's time by command
//   (INFO commandstats), and the naive consumer's events per XREAD.
// - Failover: 2 workers with leaseTtl 2000; every key's session is live;
//   kill -9 of one, then one more event to each of its keys: the time from
//   the kill to the survivor's first output of one of those (replayed)
//   sessions, split into the wait for the lease (expiry + the survivor's
//   next balance) and the replay up to that output; and the survivor's
//   take-over less the dead worker's first lease expiry (past expiry).
// - Openings (issue 57): as Live, 2,000 keys at 2,000 events/s, so that the
//   run's first 2,000 events each open a session within its first second:
//   their latency (`first`) apart from the later events' (`later`), velo-stream
//   with 1 worker and the naive consumer.
// - Slots (issue 57): more live keys than session slots: 2,000 keys at 2,000
//   events/s (5 s; 3 with --quick), idleTimeout 5 s (2 s), one worker with
//   maxConcurrent 1,000, then the same with the function's default: latency,
//   the worker's stats().slots and its ERR_VELO_SESSION_SLOTS reports.
//
// drain / live: first measurements, one worker in this process, 16
// partitions, one output written back per event:
// - drain: a backlog of `events` events over `keys` keys; events/s from the
//   worker's start to its last output committed.
// - live: a producer sends at `events/s` for `seconds`; the handler records
//   the time from just before the XADD to the event reaching it (p50, p99).
// - reader: `outputs` output entries written straight into the 16 partitions' output streams, then read to the
//   end by a `redisOutputs` loop with a consumer group (count 1000, a new group each run), 3 runs; with another
//   package copy's path, its reader runs too, alternating with this one, and the ratio of the medians is printed.
// Both print the worker's round-trip times to Redis (stats().roundTrip, ms)
// and the CPU per event of this process (drain: the worker; live: the worker
// and the producer) and of redis-server; live also redis-server's time by
// command.
import os from 'node:os';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { streamFn } from '../index.mjs';
import { redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { start } from '../__test__/helpers/child.mjs';
import { serverCommand, startRedis } from '../__test__/helpers/redis-server.mjs';
import { findValkeyServer } from '../scripts/valkey.mjs';
import { naiveKeys, naiveSend } from './redis/naive.mjs';
import { sumFn, writeBacklog } from './redis/drain.mjs';
import { barChart } from './svg.mjs';
import { writeOut } from './out.mjs';

const [mode = 'drain', a, b, c] = process.argv.slice(2).filter((arg, i, all) => !arg.startsWith('--') && !['--server', '--base', '--variant'].includes(all[i - 1]));
const quick = process.argv.includes('--quick');
const serverFlag = process.argv.indexOf('--server');
const serverKind = serverFlag === -1 ? 'redis' : process.argv[serverFlag + 1];
if (serverKind !== 'redis' && serverKind !== 'valkey') throw new Error(`--server ${serverKind}: redis or valkey`);
/** The binary of a server kind: valkey-server as scripts/valkey.mjs finds (or installs) it, or redis-server. */
const commandOf = (kind) => (kind === 'valkey' ? findValkeyServer().path : serverCommand());
const partitions = 16;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

// ---- npm run bench:redis (mode full) ----

const CHILD = fileURLToPath(new URL('./redis/child.mjs', import.meta.url));
const FULL = { partitions: 16, keys: 1000 };
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const epochNow = () => performance.timeOrigin + performance.now();

const TICK_MS = existsSync('/proc/self/stat') ? 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) : 0;

/** CPU time (user + system) of a process so far, ms, from /proc (Linux; null elsewhere). */
function cpuMs(pid) {
  if (TICK_MS === 0) return null;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/**
 * Starts measuring the CPU time of the processes `pids` together and of redis-server. The function it returns ends
 * the measurement: CPU per event (µs, `digits` decimals) of each, { pids, redis }; null without /proc. /proc counts
 * in ticks (10 ms), so measure over seconds.
 */
function cpuMeter(pids, digits = 1) {
  const read = () => (TICK_MS === 0 ? null : { pids: pids.reduce((x, pid) => x + cpuMs(pid), 0), redis: cpuMs(redis.pid) });
  const before = read();
  return (events) => {
    const after = read();
    const per = (what) => (after === null ? null : +(((after[what] - before[what]) * 1000) / events).toFixed(digits));
    return { pids: per('pids'), redis: per('redis') };
  };
}

/**
 * redis-server's own accounting by command since `CONFIG RESETSTAT`, per event: { command: { calls, usPerEvent } },
 * most time first. The time a command ran, not the reading and writing of its connection; the commands a Lua script
 * calls are counted under their own names as well as in the script's time.
 */
async function commandsPerEvent(client, events) {
  const info = String(await client.sendCommand(['INFO', 'commandstats']));
  const rows = [...info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)].map(([, name, calls, usec]) => [name, Number(calls), Number(usec)]);
  rows.sort((x, y) => y[2] - x[2]);
  return Object.fromEntries(rows.map(([name, calls, usec]) => [name, { calls, usPerEvent: +(usec / events).toFixed(2) }]));
}

/** Polls `check` every `ms` until it is truthy; fails after `timeout` ms. */
async function until(check, what, timeout = 120_000, ms = 10) {
  const deadline = performance.now() + timeout;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(ms);
  }
}

/** The partitions a velo consumer child last said it owns. */
function ownedOf(child) {
  const lines = child.stdout.split('\n').filter((l) => l.startsWith('owned '));
  if (lines.length === 0) return null;
  const list = lines.at(-1).split(' ')[1];
  return list === '' ? [] : list.split(',').map(Number);
}

/** `count` consumer children of `kind`; velo ones once they own equal shares of the partitions. */
async function startConsumers(url, kind, count, name, { ttl = 30_000, pollMs = 100, keys = FULL.keys, options = {}, child = CHILD } = {}) {
  // CHILD_PROF=<dir>: each consumer writes a CPU profile (node --cpu-prof) there when it exits.
  const prof = process.env.CHILD_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CHILD_PROF}`] : [];
  // CHILD_NODE_ARGS='--trace-gc ...': more node options for each consumer (split at spaces).
  if (process.env.CHILD_NODE_ARGS) prof.push(...process.env.CHILD_NODE_ARGS.split(' ').filter((a) => a !== ''));
  const args = (i) => [...prof, child, url, name, kind, FULL.partitions, keys, ttl, pollMs, JSON.stringify(options)].map(String);
  const children = Array.from({ length: count }, (_, i) => start(args(i), { timeout: 600_000 }));
  await Promise.all(children.map((c) => c.waitFor(/^ready$/m)));
  if (kind === 'velo') {
    await until(() => children.every((c) => ownedOf(c)?.length === FULL.partitions / count), 'equal shares', 60_000);
  }
  return children;
}

async function stopAll(children) {
  for (const c of children) c.child.kill('SIGTERM');
  for (const c of children) {
    const { stdout } = await c.finished();
    // CHILD_STDOUT=<dir>: each consumer's stdout kept there (with CHILD_NODE_ARGS=--trace-gc, its collections).
    if (process.env.CHILD_STDOUT) writeFileSync(`${process.env.CHILD_STDOUT}/${c.child.pid}.out`, stdout);
    if (/^error /m.test(stdout)) throw new Error(`a consumer reported an error:\n${stdout}`);
  }
}

/** The report line a consumer prints on `report`, once it has come in whole (it can be hundreds of KB). */
async function report(child) {
  const before = child.stdout.length;
  child.child.stdin.write('report\n');
  const pattern = /^report (.*)\n/m;
  await until(() => pattern.test(child.stdout.slice(before)), 'a report', 30_000);
  return JSON.parse(pattern.exec(child.stdout.slice(before))[1]);
}

const veloOutputs = (name) => Array.from({ length: FULL.partitions }, (_, p) => `velo:{${name}:p${p}}:out`);

async function countOutputs(client, streams) {
  const lengths = await Promise.all(streams.map((s) => client.xLen(s)));
  return lengths.reduce((x, y) => x + y, 0);
}

/** Checks every output of a drain: one per event, per key the running totals of its events in order. */
async function checkDrain(client, streams, events) {
  const byKey = new Map();
  let count = 0;
  for (const stream of streams) {
    for (const { message } of await client.xRange(stream, '-', '+')) {
      const key = message.k;
      const { n, total } = JSON.parse(message.v);
      const last = byKey.get(key) ?? { n: -1, total: 0 };
      if (n <= last.n || total !== last.total + n) throw new Error(`wrong output for ${key}: ${message.v} after ${JSON.stringify(last)}`);
      byKey.set(key, { n, total });
      count++;
    }
  }
  if (count !== events) throw new Error(`${count} outputs for ${events} events`);
  for (let k = 0; k < FULL.keys; k++) {
    // Events k, k + keys, k + 2 keys, ...: the last one is the largest below `events`.
    const last = k + FULL.keys * Math.floor((events - 1 - k) / FULL.keys);
    if (byKey.get(`k${k}`)?.n !== last) throw new Error(`k${k}: last output ${JSON.stringify(byKey.get(`k${k}`))}, expected n ${last}`);
  }
}

/** Events 0..events-1 over the keys round-robin, in batches of 1000. */
function* batches(events) {
  for (let i = 0; i < events; i += 1000) {
    yield Array.from({ length: Math.min(1000, events - i) }, (_, j) => [`k${(i + j) % FULL.keys}`, { n: i + j }]);
  }
}

/** One drain run: events/s from the resume of the stopped consumers to the last output in Redis. */
async function drainRun(url, client, kind, workers, events, name, { child = CHILD, options = {} } = {}) {
  const children = await startConsumers(url, kind === 'naive' ? 'naive' : 'velo', workers, name, { child, options });
  // Let the consumers block in their wake-up reads, then stop them while the backlog is written.
  await sleep(300);
  for (const c of children) c.child.kill('SIGSTOP');
  if (kind === 'naive') for (const pairs of batches(events)) await naiveSend(client, name, pairs);
  else {
    const producer = redisProducer({ client, name, partitions: FULL.partitions });
    for (const pairs of batches(events)) await producer.sendMany(pairs);
  }
  const streams = kind === 'naive' ? [naiveKeys(name).output] : veloOutputs(name);
  // CPU per event (µs) of the consumer processes together and of redis-server, over the drain.
  await client.sendCommand(['CONFIG', 'RESETSTAT']);
  // PERF=<dir>: a `perf record` (cpu-clock samples) of redis-server over the drain, to <dir>/<name>-<kind>.data.
  const perf = process.env.PERF
    ? spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '4000', '-p', String(redis.pid), '-o', `${process.env.PERF}/${name}-${kind}.data`], { stdio: 'ignore' })
    : null;
  if (perf !== null) await sleep(500);
  // CALLGRIND=1, with the server run under callgrind (VELO_REDIS_SERVER a wrapper): its counts zeroed here and
  // dumped at the end, so the dump holds the drain alone.
  if (process.env.CALLGRIND) execFileSync('callgrind_control', ['-z', String(redis.pid)]);
  const meter = cpuMeter(children.map((c) => c.child.pid));
  const t0 = performance.now();
  for (const c of children) c.child.kill('SIGCONT');
  await until(async () => (await countOutputs(client, streams)) >= events, `${events} outputs`);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = meter(events);
  // (The XLEN polls of `until` are in it, a few per drain.)
  const redisCommands = await commandsPerEvent(client, events);
  if (process.env.CALLGRIND) execFileSync('callgrind_control', ['-d', `${name}-${kind}`, String(redis.pid)]);
  if (perf !== null) {
    perf.kill('SIGINT');
    await new Promise((resolve) => perf.once('exit', resolve));
  }
  const reports = await Promise.all(children.map(report));
  await stopAll(children);
  await checkDrain(client, streams, events);
  await client.flushAll();
  return {
    eventsPerSecond: Math.round(events / seconds),
    seconds: +seconds.toFixed(3),
    consumerCpuUsPerEvent: cpu.pids,
    redisCpuUsPerEvent: cpu.redis,
    redisCommands,
    roundTrip: reports.map((r) => r.stats.roundTrip),
  };
}

/**
 * A live run: `rate` events/s for `seconds`; XADD-to-handler latency over every event, and the CPU per event of the
 * consumer processes and of redis-server from just before the producer starts to the last output in Redis. The
 * redis-server figure includes the producer's XADDs (this process's own CPU is not counted) and this process's XLEN
 * polls for the outputs at the end; `redisCommands` splits redis-server's time by command.
 */
async function liveRun(url, client, kind, workers, rate, seconds, name, { keys = FULL.keys, options = {}, split = false } = {}) {
  const children = await startConsumers(url, kind, workers, name, { ttl: 10_000, keys, options });
  await sleep(300);
  // (Reports are read from the consumers' stdout below; stopAll only fails on `error` lines.)
  const producer = redisProducer({ client, name, partitions: FULL.partitions });
  const total = rate * seconds;
  const perTick = Math.max(1, Math.round(rate / 100));
  // The naive consumer counts its XREAD calls (stats().reads) since its start: those before the producer are taken off.
  const readsBefore = (await Promise.all(children.map(report))).map((r) => r.stats.reads);
  await client.sendCommand(['CONFIG', 'RESETSTAT']);
  const meter = cpuMeter(children.map((c) => c.child.pid));
  const started = performance.now();
  let sent = 0;
  const sends = [];
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + perTick);
    const pairs = [];
    const t = epochNow();
    // (`f`: a key's first event of the run, which opens its session: `split` reports those apart.)
    for (; sent < due; sent++) pairs.push([`k${sent % keys}`, sent < keys && split ? { n: sent, t, f: 1 } : { n: sent, t }]);
    if (pairs.length > 0) sends.push(kind === 'naive' ? naiveSend(client, name, pairs) : producer.sendMany(pairs));
    await sleep(10);
  }
  await Promise.all(sends);
  const streams = kind === 'naive' ? [naiveKeys(name).output] : veloOutputs(name);
  await until(async () => (await countOutputs(client, streams)) >= total, `${total} outputs`);
  const cpu = meter(total);
  const redisCommands = await commandsPerEvent(client, total);
  const reports = await Promise.all(children.map(report));
  await stopAll(children);
  await client.flushAll();
  const all = reports.flatMap((r) => r.latencies).sort((x, y) => x - y);
  if (all.length !== total) throw new Error(`${all.length} latencies for ${total} events`);
  const percentiles = (list) => {
    const sorted = list.sort((x, y) => x - y);
    return { events: sorted.length, p50Ms: +quantile(sorted, 0.5).toFixed(2), p99Ms: +quantile(sorted, 0.99).toFixed(2), maxMs: +sorted.at(-1).toFixed(2) };
  };
  // Reports of keys waiting for a session slot (ERR_VELO_SESSION_SLOTS), and the workers' slot figures.
  const slotReports = children.reduce((n, c) => n + (c.stdout.match(/^slots /gm)?.length ?? 0), 0);
  const slots = kind === 'velo' ? { reports: slotReports, stats: reports.map((r) => r.stats.slots) } : undefined;
  // The naive consumer's XREADs that returned between the producer's start and the end of the run.
  const xreads = kind === 'naive' ? reports.reduce((x, r, i) => x + r.stats.reads - readsBefore[i], 0) : undefined;
  return {
    rate,
    seconds,
    keys,
    events: total,
    ...(split ? { first: percentiles(reports.flatMap((r) => r.first)), later: percentiles(reports.flatMap((r) => r.later)) } : {}),
    ...(slots === undefined ? {} : { slots }),
    p50Ms: +quantile(all, 0.5).toFixed(2),
    p99Ms: +quantile(all, 0.99).toFixed(2),
    maxMs: +all.at(-1).toFixed(2),
    consumerCpuUsPerEvent: cpu.pids,
    redisCpuUsPerEvent: cpu.redis,
    ...(xreads === undefined ? {} : { xreads, eventsPerXread: +(total / xreads).toFixed(2) }),
    redisCommands,
    roundTrip: reports.map((r) => r.stats.roundTrip),
  };
}

/** Kill -9 of one of two workers, then one event per key of its partitions: kill -> first output of those. */
async function failoverRun(url, client, ttl, eventsPerKey, name) {
  const [a, b] = await startConsumers(url, 'velo', 2, name, { ttl, pollMs: 2 });
  const producer = redisProducer({ client, name, partitions: FULL.partitions });
  let n = 0;
  for (let r = 0; r < eventsPerKey; r++) await producer.sendMany(Array.from({ length: FULL.keys }, (_, k) => [`k${k}`, { n: n++ }]));
  const all = veloOutputs(name);
  await until(async () => (await countOutputs(client, all)) >= n, 'the live sessions caught up');
  const mine = ownedOf(a);
  const keysA = Array.from({ length: FULL.keys }, (_, k) => `k${k}`).filter((key) => mine.includes(producer.partitionOf(key)));
  const streams = mine.map((p) => all[p]);
  const ids = [];
  for (const s of streams) ids.push((await client.xRevRange(s, '+', '-', { COUNT: 1 }))[0]?.id ?? '0-0');
  const watcher = await client.duplicate().connect();
  const first = watcher.sendCommand(['XREAD', 'COUNT', '1', 'BLOCK', '0', 'STREAMS', ...streams, ...ids]).then(() => epochNow());
  const killedAt = epochNow();
  a.child.kill('SIGKILL');
  await a.finished().catch((error) => {
    if (!/killed by SIGKILL/.test(String(error))) throw error;
  });
  // When the dead worker's leases run out (Redis' clock, this machine's): the lease wait less this is the
  // survivor's part of it; the rest is where the kill fell in the renewal period, the same for any engine.
  const leaseEnds = await Promise.all(mine.map((p) => client.sendCommand(['PEXPIRETIME', `velo:{${name}:p${p}}:lease`])));
  const expiredAt = Math.min(...leaseEnds.map(Number).filter((t) => t > 0));
  await producer.sendMany(keysA.map((key) => [key, { n: n++ }]));
  const firstOutput = await first;
  await watcher.close();
  // The survivor's first `owned` line after the kill with one of the dead worker's partitions.
  const taken = b.stdout
    .split('\n')
    .filter((l) => l.startsWith('owned '))
    .map((l) => l.split(' '))
    .find(([, list, at]) => Number(at) > killedAt && list.split(',').map(Number).some((p) => mine.includes(p)));
  const acquiredAt = Number(taken[2]);
  await until(async () => (await countOutputs(client, all)) >= n, 'every output');
  const stats = (await report(b)).stats;
  await stopAll([b]);
  await client.flushAll();
  return {
    leaseTtl: ttl,
    failoverMs: Math.round(firstOutput - killedAt),
    leaseWaitMs: Math.round(acquiredAt - killedAt),
    pastExpiryMs: Math.round(acquiredAt - expiredAt),
    replayToFirstOutputMs: Math.round(firstOutput - acquiredAt),
    replayedEntries: stats.replayed,
    replayedSessions: stats.replayedSessions,
  };
}

/** The live runs of mode full: velo-stream with 1 worker at 5K/s and 2 at 10K/s, the naive consumer at 5K/s. */
async function liveRuns(url, client, seconds, log) {
  const live = {
    velo1: await liveRun(url, client, 'velo', 1, 5000, seconds, 'live1'),
    velo2: await liveRun(url, client, 'velo', 2, 10_000, seconds, 'live2'),
    naive: await liveRun(url, client, 'naive', 1, 5000, seconds, 'live3'),
  };
  for (const [label, result] of Object.entries(live)) log(`live ${label}`, result);
  // How many times the CPU per event of the naive run is velo-stream's with 1 worker (> 1: velo-stream uses less).
  const over = (what) => (live.velo1[what] ? +(live.naive[what] / live.velo1[what]).toFixed(2) : null);
  live.naiveOverVelo1 = { consumerCpu: over('consumerCpuUsPerEvent'), redisCpu: over('redisCpuUsPerEvent') };
  return live;
}

function printLive({ velo1, velo2, naive, naiveOverVelo1 }) {
  console.log(
    `live p50 / p99 (ms): velo 1 worker at 5K/s ${velo1.p50Ms} / ${velo1.p99Ms}, 2 workers at 10K/s ${velo2.p50Ms} / ${velo2.p99Ms}, naive at 5K/s ${naive.p50Ms} / ${naive.p99Ms}`,
  );
  console.log(
    `live CPU per event (µs), consumers / redis-server: velo 1 worker ${velo1.consumerCpuUsPerEvent} / ${velo1.redisCpuUsPerEvent}, 2 workers ${velo2.consumerCpuUsPerEvent} / ${velo2.redisCpuUsPerEvent}, naive ${naive.consumerCpuUsPerEvent} / ${naive.redisCpuUsPerEvent} (naive / velo 1 worker: consumers x${naiveOverVelo1.consumerCpu}, redis-server x${naiveOverVelo1.redisCpu}); naive ${naive.eventsPerXread} events per XREAD (${naive.xreads} XREADs)`,
  );
}

const log = (what, result) => console.log(`${what.padEnd(26)} ${JSON.stringify(result)}`);

/**
 * Shape "openings" (issue 57): `keys` keys at `rate` events/s (each key one event a `keys / rate` s), so the run's
 * first `keys` events each open a session, all within the first `keys / rate` s: their latency (XADD to handler) is
 * reported apart from the later events'. velo-stream with 1 worker (slots for every key), and the naive consumer,
 * each twice: in a new process (its first events are also the first its code runs), and warm (the process first ran
 * the same consumer over as many other keys, two events each: bench/redis/child.mjs, `warm`).
 */
async function openingRuns(url, client, seconds, { rate = 2000, keys = 2000 } = {}) {
  const run = async (kind, label, n, warm) => {
    const options = warm ? { warm: keys } : {};
    const result = await liveRun(url, client, kind, 1, rate, seconds, `openings${n}`, { keys, split: true, options });
    log(`openings ${label}`, result);
    return result;
  };
  const velo1 = await run('velo', 'velo1', 1, false);
  const naive = await run('naive', 'naive', 2, false);
  const velo1Warm = await run('velo', 'velo1 warm', 3, true);
  const naiveWarm = await run('naive', 'naive warm', 4, true);
  return { rate, keys, seconds, velo1, naive, warm: { velo1: velo1Warm, naive: naiveWarm } };
}

function printOpenings({ rate, keys, velo1, naive, warm }) {
  const line = (r) => `first ${r.first.p50Ms} / ${r.first.p99Ms}, later ${r.later.p50Ms} / ${r.later.p99Ms}, all ${r.p50Ms} / ${r.p99Ms}`;
  const ratios = (v, n) => `velo first / later p50 x${(v.first.p50Ms / v.later.p50Ms).toFixed(2)}; velo / naive p99 x${(v.p99Ms / n.p99Ms).toFixed(2)}`;
  console.log(`openings, ${keys} keys at ${rate}/s, p50 / p99 (ms): velo 1 worker ${line(velo1)}; naive ${line(naive)}`);
  console.log(`openings ratios: ${ratios(velo1, naive)}`);
  console.log(`openings warm, p50 / p99 (ms): velo 1 worker ${line(warm.velo1)}; naive ${line(warm.naive)}`);
  console.log(`openings warm ratios: ${ratios(warm.velo1, warm.naive)}`);
}

/**
 * Shape "slots" (issue 57): more live keys than session slots. `keys` keys at `rate` events/s with `idleTimeout`
 * `idle`, on 1 worker with `maxConcurrent` `slots` (the keys beyond wait until sessions go idle: after the run), then
 * the same with the function's default `maxConcurrent`. Latency (first events apart), the worker's slot figures
 * (`stats().slots`) and its ERR_VELO_SESSION_SLOTS reports.
 */
async function slotRuns(url, client, seconds, { rate = 2000, keys = 2000, slots = 1000, idle = 2000 } = {}) {
  const over = await liveRun(url, client, 'velo', 1, rate, seconds, 'slots1', {
    keys,
    split: true,
    options: { idleTimeout: idle, maxConcurrent: slots },
  });
  log('slots over', over);
  const byDefault = await liveRun(url, client, 'velo', 1, rate, seconds, 'slots2', {
    keys,
    split: true,
    options: { idleTimeout: idle, maxConcurrent: null },
  });
  log('slots default', byDefault);
  return { rate, keys, seconds, idleTimeout: idle, slots, over, byDefault };
}

function printSlots({ rate, keys, slots, idleTimeout, over, byDefault }) {
  const line = (r) =>
    `p50 / p99 / max ${r.p50Ms} / ${r.p99Ms} / ${r.maxMs} ms (first events p99 ${r.first.p99Ms}), slots ${JSON.stringify(r.slots.stats[0])}, ${r.slots.reports} report(s)`;
  console.log(`slots, ${keys} keys at ${rate}/s, idleTimeout ${idleTimeout}: maxConcurrent ${slots}: ${line(over)}`);
  console.log(`slots, the same with the default maxConcurrent: ${line(byDefault)}`);
}

async function full(client) {
  const url = redis.url;
  const rounds = quick ? 1 : 3;
  const drainEvents = quick ? 30_000 : 100_000;
  const liveSeconds = quick ? 3 : 10;
  const failovers = quick ? 1 : 3;
  const results = {
    date: new Date().toISOString(),
    quick,
    machine: {
      cpus: os.availableParallelism(),
      cpu: os.cpus()[0]?.model,
      node: process.version,
      redis: redis.server.text,
      // 1, 5 and 15 min load averages at the start and the end (2 cores: 2 means both busy).
      load: os.loadavg(),
    },
    partitions: FULL.partitions,
    keys: FULL.keys,
  };

  const drain = { velo1: [], velo2: [], naive: [] };
  const order = [
    ['velo1', 'velo', 1],
    ['velo2', 'velo', 2],
    ['naive', 'naive', 1],
  ];
  let id = 0;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < order.length; i++) {
      const [label, kind, workers] = order[(i + r) % order.length];
      const result = await drainRun(url, client, kind, workers, drainEvents, `drain${++id}`);
      log(`drain ${label}`, result);
      drain[label].push(result);
    }
  }
  const rate = (label) => median(drain[label].map((x) => x.eventsPerSecond));
  const cpuOf = (label, what) => (drain[label][0][what] === null ? null : median(drain[label].map((x) => x[what])));
  const cpus = (label) => ({ consumerCpuUsPerEvent: cpuOf(label, 'consumerCpuUsPerEvent'), redisCpuUsPerEvent: cpuOf(label, 'redisCpuUsPerEvent') });
  results.drain = {
    events: drainEvents,
    rounds,
    velo1: { eventsPerSecond: rate('velo1'), ...cpus('velo1'), runs: drain.velo1 },
    velo2: { eventsPerSecond: rate('velo2'), perWorker: Math.round(rate('velo2') / 2), ...cpus('velo2'), runs: drain.velo2 },
    naive: { eventsPerSecond: rate('naive'), ...cpus('naive'), runs: drain.naive },
    twoVsOne: +(rate('velo2') / rate('velo1')).toFixed(2),
    veloVsNaive: +(rate('velo1') / rate('naive')).toFixed(2),
  };

  results.live = await liveRuns(url, client, liveSeconds, log);
  results.openings = await openingRuns(url, client, liveSeconds);
  results.slots = await slotRuns(url, client, quick ? 3 : 5, { idle: quick ? 2000 : 5000 });

  const runs = [];
  for (let i = 0; i < failovers; i++) {
    const result = await failoverRun(url, client, 2000, 10, `failover${i}`);
    log('failover', result);
    runs.push(result);
  }
  results.failover = {
    leaseTtl: 2000,
    failoverMs: median(runs.map((x) => x.failoverMs)),
    leaseWaitMs: median(runs.map((x) => x.leaseWaitMs)),
    replayToFirstOutputMs: median(runs.map((x) => x.replayToFirstOutputMs)),
    pastExpiryMs: median(runs.map((x) => x.pastExpiryMs)),
    runs,
  };

  results.machine.loadAfter = os.loadavg();
  // Valkey's figures beside redis-server's, never over them.
  const suffix = serverKind === 'valkey' ? '-valkey' : '';
  const written = [writeOut(`redis-results${suffix}.json`, quick, `${JSON.stringify(results, null, 2)}\n`)];
  const K = (x) => x / 1000;
  const svg = barChart({
    title: `velo-stream/redis on ${results.machine.cpus} cores, ${redis.server.name} ${redis.server.version} (npm run bench:redis${quick || suffix ? ' --' : ''}${quick ? ' --quick' : ''}${suffix ? ' --server valkey' : ''})`,
    unit: 'medians; one output persisted per event',
    groupScale: true,
    format: (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1)),
    groups: [
      {
        name: `Drain of ${drainEvents.toLocaleString('en-US')} events over 1,000 live sessions (K events/s)`,
        bars: [
          { label: 'velo-stream, 1 worker', value: K(results.drain.velo1.eventsPerSecond), color: '#2b6cb0' },
          { label: 'velo-stream, 2 workers', value: K(results.drain.velo2.eventsPerSecond), color: '#4299e1' },
          { label: 'naive: a stream per session', value: K(results.drain.naive.eventsPerSecond), color: '#a0aec0' },
        ],
      },
      {
        name: 'Live, XADD to handler p99 (ms)',
        bars: [
          { label: 'velo-stream, 1 worker, 5K/s', value: results.live.velo1.p99Ms, color: '#2b6cb0' },
          { label: 'velo-stream, 2 workers, 10K/s', value: results.live.velo2.p99Ms, color: '#4299e1' },
          { label: 'naive, 5K/s', value: results.live.naive.p99Ms, color: '#a0aec0' },
        ],
      },
      ...(results.live.velo1.redisCpuUsPerEvent === null
        ? []
        : [
            ['redis-server CPU per event (µs; the producer\'s XADDs included)', 'redisCpuUsPerEvent'],
            ['consumer processes\' CPU per event (µs)', 'consumerCpuUsPerEvent'],
          ].map(([what, field]) => ({
            name: `Live, ${what}`,
            bars: [
              { label: 'velo-stream, 1 worker, 5K/s', value: results.live.velo1[field], color: '#2b6cb0' },
              { label: 'velo-stream, 2 workers, 10K/s', value: results.live.velo2[field], color: '#4299e1' },
              { label: 'naive, 5K/s', value: results.live.naive[field], color: '#a0aec0' },
            ],
          }))),
      {
        name: `Failover after kill -9, leaseTtl ${results.failover.leaseTtl} ms (ms)`,
        bars: [
          { label: 'waiting for the lease', value: results.failover.leaseWaitMs, color: '#dd6b20' },
          { label: 'replay to first output', value: results.failover.replayToFirstOutputMs, color: '#f6ad55' },
          { label: 'kill -> first output', value: results.failover.failoverMs, color: '#c05621' },
        ],
      },
    ],
  });
  written.push(writeOut(`charts/redis${suffix}.svg`, quick, svg));
  console.log(
    `\ndrain: velo 1 worker ${results.drain.velo1.eventsPerSecond}/s, 2 workers ${results.drain.velo2.eventsPerSecond}/s (x${results.drain.twoVsOne}), naive ${results.drain.naive.eventsPerSecond}/s (velo / naive x${results.drain.veloVsNaive})`,
  );
  console.log(
    `CPU per event (µs), consumers / redis-server: velo 1 worker ${results.drain.velo1.consumerCpuUsPerEvent} / ${results.drain.velo1.redisCpuUsPerEvent}, 2 workers ${results.drain.velo2.consumerCpuUsPerEvent} / ${results.drain.velo2.redisCpuUsPerEvent}, naive ${results.drain.naive.consumerCpuUsPerEvent} / ${results.drain.naive.redisCpuUsPerEvent}`,
  );
  printLive(results.live);
  printOpenings(results.openings);
  printSlots(results.slots);
  console.log(`load average (1, 5, 15 min): ${results.machine.load.join(', ')} at the start, ${results.machine.loadAfter.join(', ')} at the end`);
  console.log(`written: ${written.join(', ')}`);
}

/**
 * Mode servers: redis-server and valkey-server side by side in one sitting, the order alternating by round; `redis`
 * (whose process cpuMeter measures) is the server of the run at hand.
 */
async function servers(first, rounds) {
  const second = await startRedis({ command: commandOf(first.server.name === 'valkey' ? 'redis' : 'valkey') });
  const drainEvents = quick ? 30_000 : 100_000;
  const liveSeconds = quick ? 3 : 10;
  const runs = new Map([first, second].map((s) => [s, { drain: [], live: [] }]));
  try {
    for (let r = 0; r < rounds; r++) {
      for (const server of r % 2 === 0 ? [first, second] : [second, first]) {
        redis = server;
        const label = `${server.server.name} ${server.server.version}`;
        const c = await server.client();
        const drain = await drainRun(server.url, c, 'velo', 1, drainEvents, `drain${r}`);
        log(`drain ${label}`, drain);
        runs.get(server).drain.push(drain);
        const live = await liveRun(server.url, c, 'velo', 1, 5000, liveSeconds, `live${r}`);
        log(`live ${label}`, live);
        runs.get(server).live.push(live);
      }
    }
  } finally {
    redis = first;
    await second.stop();
  }
  console.log(`\nmedians of ${rounds} round(s), one velo-stream worker; load average (1, 5, 15 min) at the end: ${os.loadavg().join(', ')}`);
  for (const [server, { drain, live }] of runs) {
    const m = (xs, what) => (xs[0][what] === null ? null : median(xs.map((x) => x[what])));
    console.log(
      `${server.server.text}\n  drain of ${drainEvents} events: ${m(drain, 'eventsPerSecond')} events/s; CPU per event, worker / server: ${m(drain, 'consumerCpuUsPerEvent')} / ${m(drain, 'redisCpuUsPerEvent')} µs\n` +
        `  live at 5K/s: p50 / p99 ${m(live, 'p50Ms')} / ${m(live, 'p99Ms')} ms; CPU per event, worker / server: ${m(live, 'consumerCpuUsPerEvent')} / ${m(live, 'redisCpuUsPerEvent')} µs`,
    );
  }
}

/**
 * Mode drains: the drain of mode full, one velo-stream worker and the naive consumer (and with `--base <dir>`, one
 * worker of another copy of the package: its bench/redis/child.mjs), `rounds` rounds, the order rotating; per run
 * events/s, CPU per event of the consumer and of redis-server, and redis-server's command time per event
 * (`INFO commandstats`, usec / events). Prints each run, then the medians and the ratios to the naive consumer.
 */
async function drains(client, rounds, events) {
  const baseFlag = process.argv.indexOf('--base');
  // --journal: instead, the velo worker with a handler that calls `compute(e)` per event (`plain`) and one that makes
  // that call through `ctx.run('svc', ...)` (`journal`: bench/redis/child.mjs), ratios to `plain`.
  const journal = process.argv.includes('--journal');
  const kinds = journal ? [['plain', CHILD], ['journal', CHILD]] : [['velo', CHILD], ['naive', CHILD]];
  const reference = journal ? 'plain' : 'naive';
  if (baseFlag !== -1) kinds.push(['base', path.resolve(process.argv[baseFlag + 1], 'bench/redis/child.mjs')]);
  // --variant '<json>': more velo workers of this copy, one per object (an array) with those redisWorker options.
  const variantFlag = process.argv.indexOf('--variant');
  const variants = variantFlag === -1 ? [] : [JSON.parse(process.argv[variantFlag + 1])].flat();
  variants.forEach((_, v) => kinds.push([`var${v + 1}`, CHILD]));
  const runs = new Map(kinds.map(([k]) => [k, []]));
  let id = 0;
  for (let r = 0; r < rounds; r++) {
    for (let j = 0; j < kinds.length; j++) {
      const [label, child] = kinds[(r + j) % kinds.length];
      // (With --journal, the base copy's worker runs its journaled handler, or BASE_CALL's: this copy's `journal` against another's.)
      const call = label === 'base' ? (process.env.BASE_CALL ?? 'journal') : label;
      const options = label.startsWith('var') ? { worker: variants[Number(label.slice(3)) - 1] } : journal ? { call } : {};
      const result = await drainRun(redis.url, client, label === 'naive' ? 'naive' : 'velo', 1, events, `drains${++id}`, { child, options });
      const top = Object.entries(result.redisCommands).slice(0, 6).map(([c, x]) => `${c} ${x.calls} ${x.usPerEvent}`).join(', ');
      console.log(`drain ${label.padEnd(7)} ${result.eventsPerSecond} events/s, CPU/event consumer ${result.consumerCpuUsPerEvent} redis ${result.redisCpuUsPerEvent} µs; commands (calls, µs/event): ${top}`);
      runs.get(label).push(result);
    }
  }
  const m = (label, what) => median(runs.get(label).map((x) => x[what]));
  const cmd = (label) => median(runs.get(label).map((x) => Object.values(x.redisCommands).reduce((t, c) => t + c.usPerEvent, 0)));
  console.log(`\nmedians of ${rounds} round(s), ${events} events over ${FULL.keys} keys; load average ${os.loadavg().map((x) => x.toFixed(1)).join(', ')}`);
  for (const [label] of kinds) {
    const ratio = (what) => (m(label, what) / m(reference, what)).toFixed(2);
    console.log(
      `${label.padEnd(7)} ${m(label, 'eventsPerSecond')} events/s (x${ratio('eventsPerSecond')} ${reference}); CPU/event consumer ${m(label, 'consumerCpuUsPerEvent')} (x${ratio('consumerCpuUsPerEvent')}), redis ${m(label, 'redisCpuUsPerEvent')} µs (x${ratio('redisCpuUsPerEvent')}); command time ${cmd(label).toFixed(2)} µs/event (x${(cmd(label) / cmd(reference)).toFixed(2)})`,
    );
  }
}

// The private server; mode servers swaps it per run (cpuMeter reads its pid).
let redis = await startRedis({ command: commandOf(serverKind) });
console.log(`server: ${redis.server.text}`);
try {
  const client = await redis.client();
  const name = mode;
  const producer = redisProducer({ client, name, partitions });
  if (mode === 'drain') {
    const events = Number(a ?? 100_000);
    const keys = Number(b ?? 1000);
    await writeBacklog(producer, events, keys);
    const fn = sumFn(keys);
    const started = performance.now();
    // CPU per event (µs) of this process (the worker) and of redis-server: steadier than events/s on a busy machine.
    const meter = cpuMeter([process.pid], 2);
    const worker = redisWorker(fn, { client, name, partitions, leaseTtl: 10_000 });
    while (worker.stats().outputs < events) await sleep(5);
    const seconds = (performance.now() - started) / 1000;
    const cpu = meter(events);
    const { roundTrip } = worker.stats();
    console.log(
      JSON.stringify({ mode, events, keys, partitions, seconds: +seconds.toFixed(3), eventsPerSecond: Math.round(events / seconds), workerCpuUsPerEvent: cpu.pids, redisCpuUsPerEvent: cpu.redis, roundTrip }),
    );
    await worker.close();
  } else if (mode === 'live') {
    const rate = Number(a ?? 5000);
    const seconds = Number(b ?? 5);
    const keys = Number(c ?? 1000);
    const latencies = [];
    const fn = streamFn(
      async function* timed(xs) {
        for await (const x of xs) {
          latencies.push(performance.now() - x.t);
          yield { n: x.n };
        }
      },
      { idleTimeout: 0, maxConcurrent: keys * 2 },
    );
    const worker = redisWorker(fn, { client, name, partitions, leaseTtl: 10_000 });
    while (worker.stats().owned.length < partitions) await sleep(5);
    // Batches every 10 ms at the rate asked, each event stamped just before its batch is sent.
    const total = rate * seconds;
    const perTick = Math.max(1, Math.round(rate / 100));
    // CPU per event (µs) of this process (the worker and the producer) and of redis-server, as in mode full.
    await client.sendCommand(['CONFIG', 'RESETSTAT']);
    const meter = cpuMeter([process.pid]);
    const start = performance.now();
    let sent = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + perTick);
      const pairs = [];
      const t = performance.now();
      for (; sent < due; sent++) pairs.push([`k${sent % keys}`, { n: sent, t }]);
      if (pairs.length > 0) void producer.sendMany(pairs);
      await sleep(10);
    }
    while (worker.stats().outputs < total) await sleep(5);
    const cpu = meter(total);
    const redisCommands = await commandsPerEvent(client, total);
    const sorted = latencies.sort((x, y) => x - y);
    console.log(
      JSON.stringify({
        mode,
        rate,
        seconds,
        keys,
        partitions,
        events: sorted.length,
        p50Ms: +quantile(sorted, 0.5).toFixed(2),
        p99Ms: +quantile(sorted, 0.99).toFixed(2),
        workerAndProducerCpuUsPerEvent: cpu.pids,
        redisCpuUsPerEvent: cpu.redis,
        redisCommands,
        // The worker's calls to Redis (last 1024): where the time goes when p99 is high.
        roundTrip: worker.stats().roundTrip,
      }),
    );
    await worker.close();
  } else if (mode === 'backlog') {
    // A backlog of `keys` keys x `perKey` events (keys interleaved, so each key's events span the backlog) on
    // 64 partitions, sent before one worker starts with the function's defaults but maxConcurrent and
    // idleTimeout: the time to drain it, this process's peak RSS (the worker and the producer's client), and
    // the worker's leases, waiting keys and renewal lateness. One output written back per event.
    const keys = Number(a ?? 100_000);
    const perKey = Number(b ?? 5);
    const maxConcurrent = Number(c ?? 1000);
    const idleTimeout = Number(process.env.IDLE_MS ?? 1000);
    const parts = 64;
    const backlogProducer = redisProducer({ client, name: 'backlog', partitions: parts });
    for (let r = 0; r < perKey; r++) {
      for (let k = 0; k < keys; k += 1000) {
        await backlogProducer.sendMany(Array.from({ length: Math.min(1000, keys - k) }, (_, j) => [`k${k + j}`, { n: r * keys + k + j }]));
      }
    }
    const events = keys * perKey;
    const fn = streamFn(
      async function* sum(xs) {
        let total = 0;
        for await (const x of xs) yield { total: (total += x.n) };
      },
      { idleTimeout, maxConcurrent },
    );
    let peakRss = 0;
    let maxWaitingKeys = 0;
    await client.sendCommand(['CONFIG', 'RESETSTAT']);
    const started = performance.now();
    const meter = cpuMeter([process.pid], 2);
    const worker = redisWorker(fn, { client, name: 'backlog', partitions: parts });
    while (worker.stats().outputs < events) {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      maxWaitingKeys = Math.max(maxWaitingKeys, worker.stats().waitingKeys);
      await sleep(100);
    }
    const seconds = (performance.now() - started) / 1000;
    const cpu = meter(events);
    const st = worker.stats();
    console.log(
      JSON.stringify({
        mode,
        keys,
        perKey,
        events,
        partitions: parts,
        maxConcurrent,
        idleTimeout,
        seconds: +seconds.toFixed(1),
        eventsPerSecond: Math.round(events / seconds),
        peakRssMB: Math.round(peakRss / 1e6),
        maxWaitingKeys,
        lost: st.lost,
        fenced: st.fenced,
        replayed: st.replayed,
        renewals: st.renewals,
        workerCpuUsPerEvent: cpu.pids,
        redisCpuUsPerEvent: cpu.redis,
        sessions: fn.stats().opened,
        redisCommands: await commandsPerEvent(client, events),
      }),
    );
    await worker.close();
  } else if (mode === 'reader') {
    const outputs = Number(a ?? 100_000);
    const copies = [['this package', redisOutputs]];
    if (b !== undefined) copies.push([b, (await import(pathToFileURL(`${b}/dist/redis/index.js`).href)).redisOutputs]);
    for (let i = 0; i < outputs; i += 1000) {
      const batch = client.multi();
      for (let j = i; j < Math.min(outputs, i + 1000); j++) {
        const stream = `velo:{${name}:p${j % partitions}}:out`;
        batch.xAdd(stream, '*', { sid: `k${j % 1000}@1-0`, seq: String(1 + Math.floor(j / 1000)), k: `k${j % 1000}`, v: JSON.stringify({ n: j }) });
      }
      await batch.exec();
    }
    const rates = new Map(copies.map(([label]) => [label, []]));
    for (let run = 0; run < 3; run++) {
      for (const [label, read] of run % 2 === 0 ? copies : [...copies].reverse()) {
        const started = performance.now();
        let n = 0;
        for await (const _ of read({ client, name, partitions, group: `g${run}${label}`, count: 1000 })) if (++n === outputs) break;
        const perSecond = Math.round(outputs / ((performance.now() - started) / 1000));
        rates.get(label).push(perSecond);
        console.log(JSON.stringify({ mode, copy: label, run, outputs, perSecond }));
      }
    }
    const medians = [...rates].map(([label, r]) => [label, [...r].sort((x, y) => x - y)[1]]);
    console.log(JSON.stringify({ mode, medians: Object.fromEntries(medians), ...(medians.length === 2 ? { ratio: +(medians[0][1] / medians[1][1]).toFixed(2) } : {}) }));
  } else if (mode === 'openings') {
    const result = await openingRuns(redis.url, client, Number(c ?? (quick ? 3 : 10)), { rate: Number(a ?? 2000), keys: Number(b ?? 2000) });
    printOpenings(result);
  } else if (mode === 'slots') {
    const rate = Number(process.env.RATE ?? 2000);
    const result = await slotRuns(redis.url, client, quick ? 3 : 5, { rate, keys: Number(a ?? 2000), slots: Number(b ?? 1000), idle: Number(c ?? 2000) });
    printSlots(result);
  } else if (mode === 'drains') {
    await drains(client, Number(a ?? 3), Number(b ?? (quick ? 30_000 : 100_000)));
  } else if (mode === 'full') {
    await full(client);
  } else if (mode === 'servers') {
    await servers(redis, Number(a ?? 3));
  } else if (mode === 'full-live') {
    // Only the live runs of mode full (consumers in child processes), printed; nothing written.
    const load = os.loadavg();
    printLive(await liveRuns(redis.url, client, Number(a ?? (quick ? 3 : 10)), log));
    console.log(`load average (1, 5, 15 min): ${load.join(', ')} at the start, ${os.loadavg().join(', ')} at the end`);
  } else if (mode === 'failover') {
    // Only the failover runs of mode full, printed; nothing written.
    const runs = [];
    for (let i = 0; i < Number(a ?? 3); i++) {
      runs.push(await failoverRun(redis.url, client, 2000, 10, `failover${i}`));
      log('failover', runs.at(-1));
    }
    const pick = (what) => median(runs.map((x) => x[what]));
    console.log(
      `failover medians (${runs.length} runs, leaseTtl 2000): kill -> first output ${pick('failoverMs')} ms, waiting for the lease ${pick('leaseWaitMs')} ms (past its expiry ${pick('pastExpiryMs')} ms), replay to first output ${pick('replayToFirstOutputMs')} ms`,
    );
  } else throw new Error(`unknown mode ${mode}: full, full-live, failover, servers, drain, live, backlog or reader`);
} finally {
  await redis.stop();
}
