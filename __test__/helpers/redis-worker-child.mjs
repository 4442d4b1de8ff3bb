// A worker process for the Redis fault tests. Args: url name partitions
// leaseTtl idleTimeout delayMs trimInterval [extra], extra a JSON object of
// more worker options, and `handler: 'stuck'` for a handler that takes one
// event per session and then waits until it is cancelled, or `handler:
// 'parked'` for a handler that, at an event `{ park: true }`, waits on a
// promise of its own that never settles (a cancel does not reach it). Prints
// `owned <p,p,...>` whenever its partitions change and `stats <json>` (with
// `rss`, bytes) every 100 ms; recovers from Redis
// errors (printed as `error ...` on stdout); `handler: 'ckpt'` (with `every`) for
// `totals` with a checkpoint every `every` events (see checkpointTotals); `handler: 'timers'` for timerCounts
// (checkpoints every `every` entries, 0: none; `wakeDelay` ms before it makes an event's timers); `handler: 'script'`
// for the scripted handler of session-script.mjs (each event says what it does); `handler: 'versioned'` with
// `runs: ['v1', 'v2', ...]` for `totals` that says its version in each output (`v`), at version runs.at(-1), and
// running the others as older versions (the `version` and `versions` options); on SIGTERM hands off
// (worker.close()), prints `closed <json>` and exits 0.
import { createClient, createCluster } from 'redis';
import { redisWorker } from 'velo-stream/redis';
import { streamFn } from '../../index.mjs';
import { checkpointTotals, serveChildProtocol, timerCounts, totals, versionedTotals } from './redis-fixtures.mjs';
import { scriptHandler } from './session-script.mjs';

const [url, name, partitions, leaseTtl, idleTimeout, delayMs, trimInterval, extraJson = '{}'] = process.argv.slice(2);
// `cluster`: the root nodes' URLs of a Redis Cluster (then `url` is not used).
const {
  handler = 'totals',
  destroyClient = false,
  cluster,
  every = 10,
  maxConcurrent,
  wakeDelay = 0,
  runs,
  ...extra
} = JSON.parse(extraJson);
const stuck = streamFn(
  async function* stuck(events, ctx) {
    for await (const e of events) {
      yield e.n;
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
    }
  },
  { idleTimeout: Number(idleTimeout) },
);
const parked = streamFn(
  async function* parked(events) {
    for await (const e of events) {
      if (e.park) await new Promise(() => {});
      yield e.n;
    }
  },
  { idleTimeout: Number(idleTimeout) },
);
const client = cluster === undefined ? createClient({ url }) : createCluster({ rootNodes: cluster.map((u) => ({ url: u })) });
client.on('error', () => {});
await client.connect();
// `maxConcurrent` (in extra): the function's session slots.
const config = { idleTimeout: Number(idleTimeout), ...(maxConcurrent === undefined ? {} : { maxConcurrent }) };
const fn =
  handler === 'stuck'
    ? stuck
    : handler === 'parked'
      ? parked
      : handler === 'ckpt'
        ? checkpointTotals(config, Number(delayMs), every)
        : handler === 'timers'
          ? timerCounts(config, every, wakeDelay)
          : handler === 'script'
            ? streamFn(scriptHandler(), config)
            : totals(config, Number(delayMs));
if (handler === 'versioned') {
  extra.version = runs.at(-1);
  extra.versions = Object.fromEntries(runs.slice(0, -1).map((v) => [v, versionedTotals(v, config, Number(delayMs))]));
}
const worker = redisWorker(handler === 'versioned' ? versionedTotals(runs.at(-1), config, Number(delayMs)) : fn, {
  ...extra,
  client,
  name,
  partitions: Number(partitions),
  leaseTtl: Number(leaseTtl),
  trimInterval: Number(trimInterval),
  // (Keys waiting for a session slot are a warning, not an error: `slots <message>`.)
  onError: (error) => console.log(`${error?.code === 'ERR_VELO_SESSION_SLOTS' ? 'slots' : `error ${error?.code}`} ${error?.message}`),
});
serveChildProtocol(worker, client, () => ({ rss: process.memoryUsage().rss }), { destroyClient });
