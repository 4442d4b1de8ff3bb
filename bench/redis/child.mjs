// A consumer process of `npm run bench:redis` (bench/redis.mjs starts and
// measures it). Args: url name kind partitions keys leaseTtl pollMs [options]
//   kind velo:  a velo-stream redisWorker, one session per key (a running total; idleTimeout 0, maxConcurrent twice
//               the keys; `options`, JSON: `idleTimeout`, and `maxConcurrent` (null: the function's default), `worker`: more options of redisWorker,
//               `call`: 'plain' (the handler calls `compute(e)` per event) or 'journal' (`await ctx.run('svc', () => compute(e))`),
//               or, to split a journaled call's cost, 'awaited' (`await compute(e)`) or 'encoded' (its result JSON.stringify'd));
//   kind naive: the naive baseline (bench/redis/naive.mjs) over the sessions k0..k<keys-1>.
// With `options.warm` (a count of keys), before `ready` the process first runs the same kind of consumer, under a
// name of its own, over that many other keys, two events each (their openings, then later events), and closes it:
// the code the measured consumer runs is then compiled, as in a process that has served for a while.
// Prints `ready`, and for velo `owned <p,p,...> <epoch ms>` when it finds its
// partitions changed (checked every pollMs). A line `report` on stdin prints `report <json>`: events
// handled, and the latency of those that carried a send time `t` (epoch ms,
// performance.timeOrigin + performance.now(): comparable across processes), also split into those marked `f` (a
// key's first event of the run: for velo, the one that opens its session) and the others. A report through
// onError of ERR_VELO_SESSION_SLOTS (keys wait for a session slot) prints `slots <message>`; any other, `error <message>`.
// SIGTERM: stops (velo: hands off), prints `closed`, exits 0.
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import { streamFn } from 'velo-stream';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { naiveConsumer, naiveSend } from './naive.mjs';

const [url, name, kind, partitions, keys, leaseTtl, pollMs, optionsJson = '{}'] = process.argv.slice(2);
const options = JSON.parse(optionsJson);
const now = () => performance.timeOrigin + performance.now();
const client = createClient({ url });
client.on('error', (error) => console.log(`error ${error.message}`));
await client.connect();

const latencies = [];
const firstLatencies = [];
const laterLatencies = [];
let handled = 0;
const onEvent = (event) => {
  handled++;
  if (event.t === undefined) return;
  const ms = now() - event.t;
  latencies.push(ms);
  (event.f === 1 ? firstLatencies : laterLatencies).push(ms);
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** The call of `options.call`: a small object from the event, as a service's answer would be (its `n` makes the total, as checked). */
const compute = (e) => ({ n: e.n, half: e.n / 2 });
const handlers = {
  async *plain(events) {
    let total = 0;
    for await (const e of events) {
      onEvent(e);
      const c = compute(e);
      yield { n: e.n, total: (total += c.n) };
    }
  },
  // (A journaled call's share of an `await` alone, and of encoding its result alone: BASE_CALL in bench/redis.mjs.)
  async *awaited(events) {
    let total = 0;
    for await (const e of events) {
      onEvent(e);
      const c = await compute(e);
      yield { n: e.n, total: (total += c.n) };
    }
  },
  async *encoded(events) {
    let total = 0;
    for await (const e of events) {
      onEvent(e);
      const c = compute(e);
      if (JSON.stringify(c).length === 0) throw new Error();
      yield { n: e.n, total: (total += c.n) };
    }
  },
  async *journal(events, ctx) {
    let total = 0;
    for await (const e of events) {
      onEvent(e);
      const c = await ctx.run('svc', () => compute(e));
      yield { n: e.n, total: (total += c.n) };
    }
  },
};
const makeFn = () =>
  streamFn(
    handlers[options.call] ??
    async function* sum(events) {
      let total = 0;
      for await (const e of events) {
        onEvent(e);
        yield { n: e.n, total: (total += e.n) };
      }
    },
    {
      idleTimeout: options.idleTimeout ?? 0,
      ...(options.maxConcurrent === null ? {} : { maxConcurrent: options.maxConcurrent ?? Number(keys) * 2 }),
    },
  );

/** The warm-up (`options.warm`): the same kind of consumer over other keys, two events each, then closed. */
async function warmUp(count) {
  const warmName = `${name}-warm`;
  const pairs = (round) => Array.from({ length: count }, (_, i) => [`w${i}`, { n: round }]);
  if (kind === 'velo') {
    const worker = redisWorker(makeFn(), { client, name: warmName, partitions: Number(partitions), leaseTtl: Number(leaseTtl) });
    const producer = redisProducer({ client, name: warmName, partitions: Number(partitions) });
    for (let round = 1; round <= 2; round++) {
      for (let i = 0; i < count; i += 1000) await producer.sendMany(pairs(round).slice(i, i + 1000));
      while (worker.stats().outputs < round * count) await sleep(5);
    }
    await worker.close();
  } else {
    const consumer = naiveConsumer(client, {
      name: warmName,
      sessionKeys: Array.from({ length: count }, (_, i) => `w${i}`),
      handle: (total = 0, e) => [total + e.n, { n: e.n, total: total + e.n }],
    });
    for (let round = 1; round <= 2; round++) {
      await naiveSend(client, warmName, pairs(round));
      while (consumer.stats().events < round * count) await sleep(5);
    }
    await consumer.stop();
  }
  handled = 0;
}
if (options.warm > 0) await warmUp(options.warm);

let stop;
let stats = () => ({});
if (kind === 'velo') {
  const fn = makeFn();
  const onError = (e) => console.log(`${e?.code === 'ERR_VELO_SESSION_SLOTS' ? 'slots' : 'error'} ${e?.message}`);
  const worker = redisWorker(fn, { client, name, partitions: Number(partitions), leaseTtl: Number(leaseTtl), onError, ...options.worker });
  let shown = null;
  const timer = setInterval(() => {
    const owned = worker.stats().owned.join(',');
    if (owned !== shown) console.log(`owned ${(shown = owned)} ${now()}`);
  }, Number(pollMs));
  stop = async () => {
    clearInterval(timer);
    await worker.close();
  };
  stats = () => worker.stats();
} else if (kind === 'naive') {
  const consumer = naiveConsumer(client, {
    name,
    sessionKeys: Array.from({ length: Number(keys) }, (_, i) => `k${i}`),
    handle: (total = 0, e) => [total + e.n, { n: e.n, total: total + e.n }],
    onEvent,
  });
  stop = () => consumer.stop();
  stats = () => consumer.stats();
} else throw new Error(`unknown kind ${kind}`);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'report') {
    const out = (list) => list.sort((a, b) => a - b).map((x) => Math.round(x * 1000) / 1000);
    const first = out(firstLatencies);
    const later = out(laterLatencies);
    console.log(`report ${JSON.stringify({ handled, latencies: out(latencies), first, later, stats: stats() })}`);
    latencies.length = 0;
    firstLatencies.length = 0;
    laterLatencies.length = 0;
  }
});
process.once('SIGTERM', async () => {
  await stop();
  console.log('closed');
  await client.close();
  process.stdin.destroy();
});
console.log('ready');
