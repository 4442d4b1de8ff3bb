// Memory of idle sessions on one Redis worker (issue 57): what a live key costs the worker while its session waits
// for its next event, to size the session slots (`maxConcurrent`).
//
//   node --expose-gc bench/redis-idle-sessions.mjs [sessions ...]     default: 1000 10000 20000
//
// Each count runs in a process of its own (a child of this one), on a private redis-server: one in-process worker,
// 16 partitions, `maxConcurrent` above the count, `idleTimeout` 0 (sessions never end); after the worker took its
// partitions, a warm-up of 200 sessions (opened and committed, so that the code paths and the connection's buffers
// are warm), then one event to each of `sessions` new keys: each opens a session whose handler (a running total, as
// in `bench:redis`) yields one output and waits for the next event. Once every output is committed and the
// worker's buffers are empty, `gc()` three times, then heapUsed, external and RSS are read; the figures per session
// are the deltas from the same reading after the warm-up, divided by `sessions`. The same handler opened `sessions`
// times with `fn.open()` and one event sent to each (no Redis) is measured the same way, in another child: the
// core's share of the cost.
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { streamFn } from '../index.mjs';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { startRedis } from '../__test__/helpers/redis-server.mjs';

const SELF = fileURLToPath(import.meta.url);
const PARTITIONS = 16;
const WARM = 200;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function handler() {
  return async function* sum(events) {
    let total = 0;
    for await (const e of events) yield { n: e.n, total: (total += e.n) };
  };
}

async function settle() {
  for (let i = 0; i < 3; i++) {
    await sleep(50);
    globalThis.gc();
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.external, rss: m.rss };
}

async function until(check, what, timeout = 300_000) {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** In a child: `sessions` idle sessions of one worker; prints a JSON line. */
async function redisChild(sessions) {
  const redis = await startRedis();
  const client = await redis.client();
  try {
    const fn = streamFn(handler(), { idleTimeout: 0, maxConcurrent: sessions + WARM + 10 });
    const name = 'idle';
    const worker = redisWorker(fn, { client, name, partitions: PARTITIONS, leaseTtl: 30_000, onError: (e) => console.error(e) });
    const producer = redisProducer({ client, name, partitions: PARTITIONS });
    await until(() => worker.stats().owned.length === PARTITIONS, 'every partition');
    const send = async (from, count) => {
      for (let i = 0; i < count; i += 1000) {
        const pairs = Array.from({ length: Math.min(1000, count - i) }, (_, j) => [`k${from + i + j}`, { n: 1 }]);
        await producer.sendMany(pairs);
      }
    };
    const committed = async (n) => {
      await until(() => worker.stats().outputs >= n && worker.stats().buffered === 0, `${n} outputs`);
      // (Outputs counted when committed; their write replies and the outbox settle within a few turns.)
      await sleep(200);
    };
    await send(0, WARM);
    await committed(WARM);
    const before = await settle();
    await send(WARM, sessions);
    await committed(WARM + sessions);
    if (worker.stats().sessions !== WARM + sessions) throw new Error(`${worker.stats().sessions} sessions`);
    const after = await settle();
    console.log(JSON.stringify({ kind: 'redis', sessions, before, after }));
    await worker.close();
  } finally {
    await client.close().catch(() => {});
    await redis.stop();
  }
}

/** In a child: `sessions` streams of the same handler opened with `fn.open()`, one event each, then idle. */
async function coreChild(sessions) {
  const fn = streamFn(handler(), { idleTimeout: 0, maxConcurrent: sessions + 10 });
  const streams = [];
  const before = await settle();
  for (let i = 0; i < sessions; i++) {
    const s = fn.open();
    await s.send({ n: 1 });
    streams.push(s);
  }
  for (const s of streams) await s.recv();
  const after = await settle();
  console.log(JSON.stringify({ kind: 'core', sessions, before, after, open: fn.stats().open }));
  for (const s of streams) s.end();
}

const [role, n] = process.argv.slice(2);
if (role === 'redis-child') await redisChild(Number(n));
else if (role === 'core-child') await coreChild(Number(n));
else {
  const counts = process.argv.slice(2).map(Number);
  for (const sessions of counts.length > 0 ? counts : [1000, 10_000, 20_000]) {
    for (const kind of ['redis', 'core']) {
      const out = execFileSync(process.execPath, ['--expose-gc', SELF, `${kind}-child`, String(sessions)], { encoding: 'utf8' });
      const { before, after } = JSON.parse(out.trim().split('\n').at(-1));
      const per = (k) => Math.round((after[k] - before[k]) / sessions);
      console.log(
        `${kind.padEnd(5)} ${String(sessions).padStart(6)} idle sessions: per session heap ${per('heap')} B, external ${per('external')} B, RSS ${per('rss')} B; total RSS ${(after.rss / 2 ** 20).toFixed(1)} MB`,
      );
    }
  }
}
