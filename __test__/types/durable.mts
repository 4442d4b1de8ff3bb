// velo-stream/durable and the backends' entry points with the clients users have: a pg.Pool typed by @types/pg
// and a node-redis client, under `strict`. The Postgres and Redis examples of the docs (docs/postgres.md,
// docs/redis/README.md) compile here as written, typed; lines marked @ts-expect-error must fail to compile.
import pg from 'pg';
import { createClient } from 'redis';
import { streamFn } from 'velo-stream';
import {
  exportRecording,
  fleetLimiter,
  functionName,
  keyCursor,
  keyNdjson,
  keyOutputs,
  keySse,
  keyState,
  materialize,
  sessionOutputs,
  sessionProducer,
  sessionVersions,
  sessionWorker,
  type FleetLimiterStats,
  type FleetPermit,
  type OutputItem,
  type Producer,
  type Worker,
  type WorkerOptions,
} from 'velo-stream/durable';
import {
  postgresCursor,
  postgresKeyOutputs,
  postgresLimiter,
  postgresOutputs,
  postgresProducer,
  postgresRecording,
  postgresVersions,
  postgresWorker,
  type PostgresLimiterStats,
} from 'velo-stream/postgres';
import { redisClientOptions, redisOutputs, redisProducer, redisWorker, type RedisLimiterStats } from 'velo-stream/redis';
import type { IncomingMessage, ServerResponse } from 'node:http';

declare const req: IncomingMessage;
declare const res: ServerResponse;

// docs/postgres.md: the quick start, typed.
interface Deposit {
  amount: number;
}
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const totals = streamFn(
  async function* totals(events: AsyncIterable<Deposit>) {
    let total = 0;
    for await (const e of events) yield { total: (total += e.amount) };
  },
  { idleTimeout: 60_000 },
);
const shared = { pool, schema: 'velo_stream', name: 'totals', partitions: 16 };
const pgWorker: Worker = postgresWorker(totals, shared);
const pgProducer = postgresProducer<Deposit>(shared);
await pgProducer.send('acct-1', { amount: 5 });
for await (const item of postgresOutputs<{ total: number }>(shared))
  console.log(item.key, item.sid, item.seq, 'value' in item ? item.value : item.error);

// docs/postgres.md: effects in your transaction (a ledger).
interface Move {
  n: number;
  amount: number;
}
const ledger = streamFn(
  async function* ledger(events: AsyncIterable<Move>, ctx) {
    let { balance } = (ctx.restored as { balance: number } | undefined) ?? { balance: 0 };
    for await (const e of events) {
      balance += e.amount;
      yield { n: e.n, amount: e.amount, balance };
      ctx.checkpoint({ balance });
    }
  },
  { idleTimeout: 30_000 },
);
postgresWorker(ledger, {
  pool,
  name: 'ledger',
  keyState: { retention: 30 * 86_400_000 },
  effects: async (tx, outputs) => {
    for (const o of outputs) {
      if ('error' in o) continue;
      await tx.query('INSERT INTO ledger VALUES ($1, $2, $3, $4, $5, $6)', [
        o.key,
        o.value.n,
        o.value.amount,
        o.value.balance,
        o.sid,
        o.seq,
      ]);
    }
  },
});

// Every entry point of velo-stream/postgres takes the pg.Pool as `pool`.
postgresKeyOutputs({ pool, name: 'totals', key: 'acct-1' });
await postgresCursor({ pool, name: 'totals', key: 'acct-1' });
postgresVersions({ pool, name: 'totals' });
await postgresRecording({ pool, name: 'totals' });
const pgLimiterStats: PostgresLimiterStats = postgresLimiter({ pool, name: 'api', concurrency: 4 }).stats();
const pgDown: boolean = pgLimiterStats.postgresDown && pgLimiterStats.backendDown;

// docs/redis/README.md, typed.
interface Tx {
  amount: number;
}
declare const fraudScorer: import('velo-stream').StreamFn<Tx, { score: number }>;
declare const user: string, other: string, tx: Tx, tx1: Tx, tx2: Tx;
declare function handle(out: OutputItem<{ score: number }>): void;
const client = await createClient(redisClientOptions({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }))
  .on('error', (error: Error) => console.error('redis:', error.message))
  .connect();
const opts = { client, name: functionName(fraudScorer, 'fraud'), partitions: 64 };
// As the docs write it: an unset variable's `undefined` is left out (exactOptionalPropertyTypes).
const fromEnv = redisClientOptions({ url: process.env.REDIS_URL });
const url: string | undefined = fromEnv.url;
void url;
void createClient(fromEnv);
void createClient(redisClientOptions({ url: process.env.REDIS_URL, socket: { connectTimeout: 1000 } }));
const producer = redisProducer(opts);
await producer.send(user, tx);
await producer.sendMany([
  [user, tx1],
  [other, tx2],
]);
const worker = redisWorker(fraudScorer, { ...opts, version: 'v1' });
process.on('SIGTERM', async () => {
  await worker.close();
  await client.close();
});
for await (const out of redisOutputs({ ...opts, group: 'alerts' })) handle(out);
const redisStats: RedisLimiterStats['redisDown'] = false;

// velo-stream/durable with either client: the same calls.
const fraud = functionName(fraudScorer, 'fraud');
// (One function per client: an option of a union of both clients is no option of either.)
async function onRedis(c: typeof client) {
  const w: Worker = sessionWorker(fraudScorer, { client: c, name: fraud, version: 'v1' });
  const p: Producer<Tx> = sessionProducer({ client: c, name: fraud });
  await p.send('u', { amount: 1 });
  for await (const out of sessionOutputs({ client: c, name: fraud })) {
    const score: number | undefined = 'value' in out ? out.value.score : undefined;
    void score;
  }
  for await (const out of keyOutputs({ client: c, name: fraud, key: 'u' })) void out.cursor;
  await keyCursor({ client: c, name: 'fraud', key: 'u' });
  await keySse(req, res, { client: c, name: fraud, key: 'u' });
  await keyNdjson(req, res, { client: c, name: fraud, keys: ['u', 'v'] });
  await sessionVersions({ client: c, name: 'fraud' }).drained('v1');
  await exportRecording({ client: c, name: 'fraud', keys: ['u'] });
  const limiter = fleetLimiter<string>({ client: c, name: 'api', concurrency: 4, whenBackendFails: 'local' });
  const permit: FleetPermit = await limiter.acquire('x');
  permit.release();
  const stats: FleetLimiterStats = limiter.stats();
  const down: boolean = stats.backendDown;
  void [w, down];
}
async function onPostgres(c: pg.Pool) {
  const w: Worker = sessionWorker(fraudScorer, { client: c, name: fraud, version: 'v1' });
  const p: Producer<Tx> = sessionProducer({ client: c, name: fraud });
  await p.send('u', { amount: 1 });
  for await (const out of sessionOutputs({ client: c, name: fraud })) {
    const score: number | undefined = 'value' in out ? out.value.score : undefined;
    void score;
  }
  for await (const out of keyOutputs({ client: c, name: fraud, key: 'u' })) void out.cursor;
  await keyCursor({ client: c, name: 'fraud', key: 'u' });
  await keySse(req, res, { client: c, name: fraud, key: 'u' });
  await keyNdjson(req, res, { client: c, name: fraud, keys: ['u', 'v'] });
  await sessionVersions({ client: c, name: 'fraud' }).drained('v1');
  await exportRecording({ client: c, name: 'fraud', keys: ['u'] });
  const limiter = fleetLimiter<string>({ client: c, name: 'api', concurrency: 4, whenBackendFails: 'local' });
  const permit: FleetPermit = await limiter.acquire('x');
  permit.release();
  const stats: FleetLimiterStats = limiter.stats();
  const down: boolean = stats.backendDown;
  void [w, down];
}
void [onRedis, onPostgres];
// The backend's own options, by its client.
sessionProducer({ client, name: fraud, maxLag: 1000 });
sessionOutputs({ client, name: fraud, group: 'alerts', claimIdle: 60_000 });
sessionOutputs({ client: pool, schema: 'app', name: fraud, after: { 0: '1-0' }, pollInterval: 50 });
// `after` and batches on both backends: a batch's outputs typed by the function, its positions to store.
async function ledgerBatches(c: typeof client | pg.Pool) {
  const reader =
    c instanceof pg.Pool
      ? sessionOutputs({ client: c, name: fraud, after: {} })
      : sessionOutputs({ client: c, name: fraud, after: { 3: '5-0' } });
  for await (const batch of reader.batches({ max: 500 })) {
    const scores: number[] = batch.outputs.flatMap((o) => ('value' in o ? [o.value.score] : []));
    const from: Readonly<Record<number, string>> = batch.from;
    const to: Readonly<Record<number, string>> = batch.to;
    void [scores, from, to];
  }
  // @ts-expect-error max is a number
  reader.batches({ max: '5' });
}
void ledgerBatches;
sessionWorker(ledger, {
  client: pool,
  schema: 'app',
  name: 'ledger',
  listen: false,
  callTimeout: 30_000,
  effects: async (t) => void (await t.query('SELECT 1')),
});
// callTimeout on both backends' producers; on Postgres' workers too.
sessionProducer({ client, name: fraud, callTimeout: 2000 });
sessionProducer({ client: pool, name: fraud, callTimeout: Infinity });
fleetLimiter({ client: pool, schema: 'app', name: 'api', concurrency: 1, listen: false });
keyState<{ balance: number }>({ client, name: 'ledger' });
materialize<{ score: number }>({ client, name: fraud, key: (o) => `f:${o.key}`, fields: (o) => ({ score: o.value.score }) });

// Wrong combinations.
// @ts-expect-error schema names a Postgres schema: a Redis client takes none
sessionWorker(fraudScorer, { client, schema: 'app', name: fraud });
// @ts-expect-error schema names a Postgres schema: a Redis client takes none
sessionProducer({ client, schema: 'app', name: fraud });
// @ts-expect-error schema names a Postgres schema: a Redis client takes none
fleetLimiter({ client, schema: 'app', name: 'api', concurrency: 1 });
// @ts-expect-error the durable entry points take the pool as `client`
sessionProducer({ pool, name: fraud });
// @ts-expect-error a client of neither kind
sessionVersions({ client: {}, name: 'fraud' });
// @ts-expect-error key states are read on Redis only, for now
keyState({ client: pool, name: 'ledger' });
// @ts-expect-error the materializer writes Redis hashes
materialize({ client: pool, name: fraud, key: () => 'k', fields: () => ({}) });
// @ts-expect-error a name of other events does not fit
sessionProducer<{ other: true }>({ client, name: fraud });
// @ts-expect-error whenRedisFails is velo-stream/redis' name: whenBackendFails here
fleetLimiter({ client, name: 'api', concurrency: 1, whenRedisFails: 'local' });

// @ts-expect-error maxLag is a Redis producer's: a pg.Pool takes none
sessionProducer({ client: pool, name: fraud, maxLag: 5 });
// @ts-expect-error pollInterval is a Postgres reader's (Redis blocks in its reads)
sessionOutputs({ client, name: fraud, pollInterval: 50 });
// @ts-expect-error group is a Redis reader's
sessionOutputs({ client: pool, name: fraud, group: 'g' });
// @ts-expect-error listen is a Postgres worker's
sessionWorker(fraudScorer, { client, name: fraud, listen: false });
// @ts-expect-error a Redis worker takes no callTimeout (its client's socket timeout bounds its calls)
sessionWorker(fraudScorer, { client, name: fraud, callTimeout: 1000 });

const typed: WorkerOptions<{ score: number }, Tx> = { client: pool, name: fraud, listen: true };
void [pgWorker, pgDown, redisStats, typed];
