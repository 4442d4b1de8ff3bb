// A user's project importing the package and both subpaths, compiled (never
// run) by subpaths.test.mjs against the package as npm packs it, under each
// moduleResolution users have. With "module": "commonjs" TypeScript resolves
// as Node 10 did, without "exports": the subpaths resolve only through the
// package's typesVersions.
import { createServer } from 'node:http';
import { Registry } from 'prom-client';
import { limiter, streamFn, StreamClosedError } from 'velo-stream';
import { ndjsonEvents, RequestBodyError, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { registerRedisWorkerMetrics, registerStreamMetrics, registerWorkerMetrics } from 'velo-stream/prometheus';
import { dashboard, type DashboardOptions, type Sample } from 'velo-stream/dashboard';

interface Reading {
  celsius: number;
}

const alerts = streamFn(async function* (readings: AsyncIterable<Reading>) {
  for await (const r of readings) if (r.celsius > 40) yield { hot: r.celsius };
});

createServer(async (req, res) => {
  const stream = alerts.open();
  await sendNdjson(res, stream.feed(ndjsonEvents<Reading>(req)));
  await sendSse(res, stream, { serialize: (a) => String(a.hot) });
  // @ts-expect-error serialize gets the typed output: the types are real, not any
  await sendSse(res, stream, { serialize: (a: string) => a });
  toReadable(stream, 'ndjson').pipe(res);
});

registerStreamMetrics(new Registry(), [alerts]);
const dashOptions: DashboardOptions = {
  functions: [alerts],
  authorize: (req) => req.headers['x-ops'] === 'yes',
  showValues: false,
};
const dash = dashboard(dashOptions);
createServer(dash);
const clients: number = dash.clients;
// @ts-expect-error interval is a number of ms
dashboard({ interval: '1s' });
const seenSample = (s: Sample): number => s.functions[0].open + (s.functions[0].queueWaitP99Us ?? 0);
(void clients, seenSample);
const failure: Error = new RequestBodyError(1, new Error('bad line'));
const closed: Error = new StreamClosedError('closed');
(void failure, closed);

// velo-stream/redis with the user's own node-redis client.
import { createClient, createCluster } from 'redis';
import {
  redisClientOptions,
  CloseTimeoutError,
  EventTooLargeError,
  LagLimitError,
  OnOutputError,
  ReplayDivergedError,
  SendError,
  SessionLimitError,
  type RedisProducerOptions,
  type SessionLimitCode,
  type SessionEnd,
  redisLimiter,
  redisMaterialize,
  redisOutputs,
  redisProducer,
  redisWorker,
  redisKeyState,
  type KeyState,
  outputTraceContext,
  type Codec,
  type MaterializeStats,
  type OutputItem,
  type RedisWorkerStats,
} from 'velo-stream/redis';

const redisClient = createClient({ url: 'redis://127.0.0.1:6379' });
// The recommended timeouts fit node-redis' own option types, yours beside them (a single server and a Cluster).
createClient(redisClientOptions({ url: 'redis://127.0.0.1:6379', socket: { tls: true as const }, database: 1 }));
createCluster({ rootNodes: [{ url: 'redis://127.0.0.1:7000' }], defaults: redisClientOptions() });
const timeouts: number = redisClientOptions().socket.socketTimeout + redisClientOptions({ pingInterval: 500 }).pingInterval;
void timeouts;
const producer = redisProducer<Reading>({
  client: redisClient,
  name: 'alerts',
  partitions: 16,
  maxLag: 10_000,
  lagInterval: 500,
  callTimeout: 2000,
});
redisProducer<Reading>({ client: redisClient, name: 'alerts', callTimeout: Infinity });
// @ts-expect-error callTimeout is a number of ms
redisProducer<Reading>({ client: redisClient, name: 'alerts', callTimeout: '2s' });
const producerOptions: RedisProducerOptions<Reading> = { client: redisClient, name: 'alerts', maxLag: 100 };
// @ts-expect-error maxLag is a number of entries
redisProducer<Reading>({ client: redisClient, name: 'alerts', maxLag: '100' });
const behind: Promise<number> = producer.lag('sensor-1');
void producer.lag(3);
void (async () => {
  try {
    await producer.send('sensor-1', { celsius: 1 });
  } catch (error) {
    if (error instanceof LagLimitError) console.log(error.code, error.partition, error.lag, error.limit);
    if (error instanceof SendError) {
      const code: 'ERR_VELO_SEND_FAILED' = error.code;
      const resend: number[] = [];
      error.ids.forEach((id: string | null | undefined, i) => id === null && resend.push(i));
      console.log(code, resend, error.cause);
    }
  }
})();
const capCode: SessionLimitCode = new SessionLimitError('ERR_VELO_SESSION_EVENTS', 5, 'capped').code;
(void producerOptions, behind, capCode);
void producer.send('sensor-1', { celsius: 41 });
// @ts-expect-error the event type is checked
void producer.send('sensor-1', { fahrenheit: 41 });
void producer.sendMany([['sensor-1', { celsius: 20 }]]);
const distributed = redisWorker(alerts, {
  client: redisClient.duplicate(),
  name: 'alerts',
  leaseTtl: 5000,
  maxBufferedEvents: 10_000,
  maxSessionEvents: 1000,
  maxSessionAge: 60_000,
});
const local = redisWorker(alerts, {
  client: redisClient.duplicate(),
  name: 'alerts',
  maxUndelivered: 256,
  checkReplay: true,
  async onOutput(output) {
    const item: OutputItem<{ hot: number }> = output;
    if ('value' in output) console.log(output.sid, output.seq, output.value.hot.toFixed(1));
    else console.log(output.error.message, item.id);
  },
  onError(error) {
    if (error instanceof ReplayDivergedError)
      console.log(error.code, error.kind, error.sid, error.seq, error.committed, error.replayed);
    if (error instanceof ReplayDivergedError && error.kind === 'boundary' && error.ends !== undefined) {
      const first: SessionEnd = error.ends.committed;
      const reason: 'idle' | 'age' | 'events' | 'decode' | 'throw' | 'return' = error.ends.replayed.reason;
      console.log(first.last, reason);
    }
    if (error instanceof OnOutputError) console.log(error.code, error.output, error.cause);
    if (error instanceof CloseTimeoutError) {
      const code: 'ERR_VELO_CLOSE_TIMEOUT' = error.code;
      console.log(code, error.partitions.join(','));
    }
  },
});
const localStats = local.stats();
const delivery: number = localStats.delivered + localStats.undelivered + localStats.diverged + localStats.handedOn;
void delivery;
// @ts-expect-error onOutput gets the function's outputs ({ hot: number } here)
redisWorker(alerts, { client: redisClient, name: 'alerts', onOutput: (output: OutputItem<string>) => void output });
// @ts-expect-error checkReplay is a boolean
redisWorker(alerts, { client: redisClient, name: 'alerts', checkReplay: 1 });
// keyState: a retention in ms; the kept states read back typed by the caller's state type.
redisWorker(alerts, { client: redisClient, name: 'alerts', keyState: { retention: 86_400_000 } });
// @ts-expect-error keyState needs its retention
redisWorker(alerts, { client: redisClient, name: 'alerts', keyState: {} });
const carts = redisKeyState<{ items: string[] }>({ client: redisClient, name: 'carts', partitions: 64 });
void carts.readState('alice').then((kept: KeyState<{ items: string[] }> | undefined) => kept?.state.items.join(','));
// @ts-expect-error the state is typed
void carts.readState('alice').then((kept) => kept?.state.count);
const deleted: Promise<boolean> = carts.deleteState('alice');
void deleted;
const workerStats: RedisWorkerStats = distributed.stats();
const budgetUse: number = workerStats.buffered + workerStats.partitionBuffered[0] + workerStats.capped;
void budgetUse;
const lagged: number = workerStats.lag + workerStats.replayedSessions + workerStats.roundTrip.p99;
registerRedisWorkerMetrics(new Registry(), () => [distributed]);
registerWorkerMetrics(new Registry(), [distributed, local], { prefix: 'app_' });
const backend: 'redis' | 'postgres' | 'memory' = distributed.backend;
// @ts-expect-error a worker's backend is read-only
distributed.backend = 'postgres';
void backend;
dashboard({ functions: [alerts], redisWorkers: [distributed, local] });
dashboard({ functions: [alerts], workers: [distributed, local] });
const workerRow = (s: Sample): string => `${s.workers[0].backend} ${s.workers[0].name} ${s.redis[0].id}`;
void workerRow;
// Limiters of either make, whatever their item type, in one list.
const perTenant = limiter({ name: 'per-tenant', concurrency: 2, key: (job: { tenant: string }) => job.tenant });
const fleetBudget = redisLimiter({ client: redisClient, name: 'budget', rate: { limit: 100, period: 60_000 } });
dashboard({ limiters: [perTenant, fleetBudget] });
// @ts-expect-error limiters is a list, not one limiter
dashboard({ limiters: perTenant });
const limiterRow = (s: Sample): number | null => {
  const row = s.limiters[0];
  return 'error' in row ? null : row.inUse + row.waiting + row.admittedPerSec + (row.rate ?? 0) + (row.limits?.concurrency ?? 0);
};
void limiterRow;
const view = redisMaterialize<{ hot: number }>({
  client: redisClient,
  name: 'alerts',
  key: (output) => `hot:${output.key}`,
  fields: (output) => ({ hot: output.value.hot, sid: output.sid }),
});
// @ts-expect-error field values are strings or numbers
redisMaterialize<{ hot: number }>({ client: redisClient, name: 'alerts', key: (o) => o.key, fields: () => ({ hot: [1] }) });
const materialized: MaterializeStats = view.stats();
void view.done.then(() => view.close());
(void lagged, materialized);
void distributed.close();
const raw: Codec<Buffer> = { encode: (b) => b, decode: (b) => b };
void (async () => {
  for await (const item of redisOutputs<{ hot: number }>({
    client: redisClient,
    name: 'alerts',
    group: 'g',
    claimIdle: 30_000,
  })) {
    const typed: OutputItem<{ hot: number }> = item;
    if ('value' in typed) console.log(typed.sid, typed.seq, typed.value.hot);
  }
})();
const tooLarge: RangeError = new EventTooLargeError('event', 2, 1);
(void raw, tooLarge);

// Tracing through Redis: an output's session span continues in the reader (any OpenTelemetry context type).
declare const otelContext: { getValue(key: symbol): unknown; readonly brand: 'otel' };
async function continueTraces(): Promise<void> {
  for await (const item of redisOutputs<Reading>({ client: redisClient, name: 'alerts' })) {
    const traceparent: string | undefined = item.traceparent;
    const ctx: typeof otelContext = outputTraceContext(item, otelContext);
    const active: object | undefined = outputTraceContext(item);
    (void traceparent, ctx, active);
  }
}
void continueTraces;

// velo-stream/durable (through typesVersions under node10): the tier's one API, on the same client.
import { functionName, sessionOutputs, sessionProducer, sessionWorker, type Worker } from 'velo-stream/durable';
const readingsName = functionName(alerts, 'alerts');
const durableWorker: Worker = sessionWorker(alerts, { client: redisClient, name: readingsName });
void sessionProducer({ client: redisClient, name: readingsName }).send('sensor-1', { celsius: 41 });
void sessionOutputs({ client: redisClient, name: readingsName });
void durableWorker;
