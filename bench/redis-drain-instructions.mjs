// The drain's cost in instructions, for comparing two copies of the package with callgrind:
//
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//     node --single-threaded bench/redis-drain-instructions.mjs <events> [keys] [package dir]
//
// Instructions per event = the difference of two runs' counts (say 2,000 and 6,000 events) over the difference
// of their events: Node's start, the module's load and the compiler's first work cancel out.
//
// CALL=plain or CALL=journal: the handler of `node bench/redis.mjs drains --journal` instead of sumFn: it calls
// `compute(x)` (a small object) per event, plainly or through `await ctx.run('svc', ...)` (a journaled call).
//
// What `node bench/redis.mjs drain` runs (bench/redis/drain.mjs: 16 partitions, one output written back per
// event, no idle end), with what would blur a count taken under callgrind left out of the traced process:
// - the backlog is written by a child process (callgrind follows no children), with this copy's producer, so two
//   copies' counts differ only by their workers;
// - the end is not found by polling the worker's stats() every few milliseconds (it sorts its round-trip
//   samples, and under callgrind's ~50x slow-down the number of polls follows the machine's load): the handler
//   counts its events and resolves a promise at the last, and only the commit of the last outputs is polled.
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import { startRedis } from '../__test__/helpers/redis-server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const [mode, ...args] = process.argv.slice(2);
const partitions = 16;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

if (mode === 'write') {
  // The child: writes the backlog to the server at `url`, then exits.
  const [url, events, keys] = args;
  const { createClient } = await import('redis');
  const { redisProducer } = await import('velo-stream/redis');
  const { writeBacklog } = await import('./redis/drain.mjs');
  const client = createClient({ url });
  await client.connect();
  await writeBacklog(redisProducer({ client, name: 'drain', partitions }), Number(events), Number(keys));
  await client.close();
} else {
  const events = Number(mode ?? 2000);
  const keys = Number(args[0] ?? 1000);
  const dir = path.resolve(args[1] ?? path.join(here, '..'));
  const { streamFn } = await import(pathToFileURL(path.join(dir, 'index.mjs')).href);
  const { redisWorker } = await import(pathToFileURL(path.join(dir, 'dist/redis/index.js')).href);
  const redis = await startRedis();
  try {
    execFileSync(process.execPath, [fileURLToPath(import.meta.url), 'write', redis.url, String(events), String(keys)], {
      stdio: 'inherit',
    });
    // No command timeout: under callgrind's slow-down a command can wait past node-redis' 5 s default to be
    // written, and the retries that follow would be counted as the drain's work.
    const client = await redis.client({ commandOptions: { timeout: 0 } });
    let seen = 0;
    let allSeen;
    const done = new Promise((resolve) => (allSeen = resolve));
    // bench/redis/drain.mjs's sumFn, counting the events it takes; or with CALL, bench/redis/child.mjs's handlers.
    const compute = (x) => ({ n: x.n, half: x.n / 2 });
    const handlers = {
      async *sum(xs) {
        let total = 0;
        for await (const x of xs) {
          if (++seen === events) allSeen();
          yield { total: (total += x.n) };
        }
      },
      async *plain(xs) {
        let total = 0;
        for await (const x of xs) {
          if (++seen === events) allSeen();
          const c = compute(x);
          yield { n: x.n, total: (total += c.n) };
        }
      },
      async *journal(xs, ctx) {
        let total = 0;
        for await (const x of xs) {
          if (++seen === events) allSeen();
          const c = await ctx.run('svc', () => compute(x));
          yield { n: x.n, total: (total += c.n) };
        }
      },
    };
    const handler = handlers[process.env.CALL ?? 'sum'];
    if (handler === undefined) throw new Error(`CALL: plain or journal, not ${process.env.CALL}`);
    const fn = streamFn(handler, { idleTimeout: 0, maxConcurrent: keys * 2 });
    const worker = redisWorker(fn, { client, name: 'drain', partitions, leaseTtl: 10_000 });
    await done;
    while (worker.stats().outputs < events) await sleep(20);
    console.log(JSON.stringify({ events, keys, dir, outputs: worker.stats().outputs }));
    await worker.close();
    await client.close();
  } finally {
    await redis.stop();
  }
}
