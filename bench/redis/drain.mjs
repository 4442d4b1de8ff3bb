// The drain workload both `bench/redis.mjs drain` and `bench/redis-cluster.mjs` measure: a backlog of `events`
// events over `keys` keys (each event `{ n }`, keys in turn), and a function keeping each key's running total,
// one output per event, a slot for every key and no idle end.
import { streamFn } from '../../index.mjs';

/** Writes the backlog with `producer.sendMany`, 1,000 events per call. */
export async function writeBacklog(producer, events, keys) {
  for (let i = 0; i < events; i += 1000) {
    await producer.sendMany(Array.from({ length: Math.min(1000, events - i) }, (_, j) => [`k${(i + j) % keys}`, { n: i + j }]));
  }
}

/** The function: `{ total }` after each event of a key. */
export function sumFn(keys) {
  return streamFn(
    async function* sum(xs) {
      let total = 0;
      for await (const x of xs) yield { total: (total += x.n) };
    },
    { idleTimeout: 0, maxConcurrent: keys * 2 },
  );
}
