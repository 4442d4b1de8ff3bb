// node bench/postgres-log.mjs [events] [rounds] [--durable]
//
// The partition log itself, Postgres (js/postgres/) and Redis side by side in one sitting, no worker: what the
// owner's calls cost per event. Private servers on 127.0.0.1 (__test__/helpers): a redis-server without
// persistence, and a postgres with fsync off (with --durable: fsync on, synchronous_commit on, as production
// would run it). Per round and backend (the order alternating), one partition:
// - append: `events` events in batches of 100 (the producer's append: one script call / one transaction each);
// - drain: the owner reads '>' 256 at a time and commits each batch: one output per event, its acks, with a serial
//   (as the worker commits), until the backlog is gone;
// - commit: 2,000 commits of one output each, one at a time (the round trip of a live session's output).
// Prints each run, then per backend the medians. Order of magnitude only: one machine, one connection each, no
// handler, no engine.
import { performance } from 'node:perf_hooks';
import { KeySpace, PgLog, RedisLog, appendEvents, appendEventsPg, preparePg } from '#testing';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';

const args = process.argv.slice(2);
const durable = args.includes('--durable');
const [events = 20_000, rounds = 3] = args.filter((a) => !a.startsWith('--')).map(Number);
const payload = Buffer.from(JSON.stringify({ n: 1, pad: 'x'.repeat(40) }));

const redis = await startRedis();
const pg = await startPostgres({ durable });
const client = await redis.client();
const pool = pg.pool({ max: 4 });

let fresh = 0;
const backends = {
  redis: async () => {
    const keys = new KeySpace(`bench${++fresh}`);
    const log = new RedisLog(client, keys, 1, (error) => console.error(error));
    return { log, append: async (batch) => (await appendEvents(client, keys, 0, batch)).ids };
  },
  postgres: async () => {
    const space = await preparePg(pool, 'velo_bench', `bench${++fresh}`, 1);
    return { log: new PgLog(pool, space, 1), append: (batch) => appendEventsPg(pool, space, 0, batch) };
  },
};

async function runOnce(name) {
  const { log, append } = await backends[name]();
  const batch = Array.from({ length: 100 }, (_, i) => [`k${i % 50}`, payload]);
  let t = performance.now();
  for (let i = 0; i < events; i += 100) await append(batch);
  const appendRate = events / ((performance.now() - t) / 1000);
  const lease = await log.acquire(0, 'bench', 600_000);
  const seqs = new Map();
  let serial = 0;
  let drained = 0;
  t = performance.now();
  for (;;) {
    const { entries } = await log.read(lease, '>', 256);
    if (entries.length === 0) break;
    const outputs = entries.map((e) => {
      const sid = `${e.key}@x`;
      const seq = (seqs.get(sid) ?? 0) + 1;
      seqs.set(sid, seq);
      return { sid, seq, key: e.key, payload: e.payload };
    });
    await log.commit(lease, { outputs, acks: entries.map((e) => e.id), ended: [], serial: ++serial, ids: false });
    drained += entries.length;
  }
  const drainRate = drained / ((performance.now() - t) / 1000);
  t = performance.now();
  const n = 2000;
  for (let i = 1; i <= n; i++) {
    await log.commit(lease, { outputs: [{ sid: 'one@x', seq: i, key: 'one', payload }], acks: [], ended: [], serial: ++serial, ids: false });
  }
  const commitRate = n / ((performance.now() - t) / 1000);
  await log.close();
  if (drained !== events) throw new Error(`${name}: drained ${drained} of ${events}`);
  return { append: appendRate, drain: drainRate, commit: commitRate };
}

const results = { redis: [], postgres: [] };
try {
  for (let r = 0; r < rounds; r++) {
    for (const name of r % 2 === 0 ? ['redis', 'postgres'] : ['postgres', 'redis']) {
      const got = await runOnce(name);
      results[name].push(got);
      const f = (x) => Math.round(x).toLocaleString('en-US');
      console.log(`round ${r + 1} ${name}: append ${f(got.append)} events/s, drain ${f(got.drain)} events/s, commit ${f(got.commit)} commits/s`);
    }
  }
} finally {
  await pg.stop();
  await redis.stop();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`\n${events} events, ${rounds} rounds; postgres ${durable ? 'durable (fsync on)' : 'fsync off'}, redis without persistence. Medians:`);
for (const name of ['redis', 'postgres']) {
  const m = (k) => Math.round(median(results[name].map((x) => x[k]))).toLocaleString('en-US');
  console.log(`${name.padEnd(8)} append ${m('append')} events/s   drain ${m('drain')} events/s   commit ${m('commit')} commits/s`);
}
