// The types refuse what would fail at run time: a stage, stream, session or
// Redis entry point typed for wider events than it is given (members declared
// as function properties, so their parameters are checked contravariantly),
// checkpoints and wake-ups of the wrong shape, and Redis entry points of one
// function that disagree on its types. Compiled, never run.
import { batch, streamFn, task, type Stream, type StreamContext, type StreamFn, type StreamSessions } from 'velo-stream';
import {
  jsonCodec,
  redisMaterialize,
  redisName,
  redisKeyOutputs,
  redisOutputs,
  redisProducer,
  redisSse,
  redisWorker,
  type Codec,
  type RedisName,
  type RedisProducer,
} from 'velo-stream/redis';
import { checkDeterminism, testWorker, type TestWorker } from 'velo-stream/testing';
import type { RedisClientLike, RedisWorker, RedisWorkerStats } from 'velo-stream/redis';

interface Narrow {
  a: number;
}
interface Wide {
  a: number;
  b: string;
}

const narrow = streamFn(async function* (xs: AsyncIterable<number>) {
  for await (const x of xs) yield { a: x } satisfies Narrow;
});
const needsWide = streamFn(async function* (xs: AsyncIterable<Wide>) {
  for await (const x of xs) yield x.b.length;
});
const needsNarrow = streamFn(async function* (xs: AsyncIterable<Narrow>) {
  for await (const x of xs) yield x.a;
});

// A stage that needs more fields than the previous one yields.
// @ts-expect-error narrow yields { a } and needsWide reads .b
narrow.pipe(needsWide);
// @ts-expect-error the same with a handler
narrow.pipe(async function* (xs: AsyncIterable<Wide>) {
  for await (const x of xs) yield x.b;
});
// One that needs fewer is fine.
const ok: StreamFn<number, number> = narrow.pipe(needsNarrow);
void ok;

// The function, its streams and its sessions are not the wider type's.
// @ts-expect-error run() would hand needsWide events without .b
const asNarrow: StreamFn<Narrow, number> = needsWide;
// @ts-expect-error send() would hand the stream events without .b
const streamAsNarrow: Stream<Narrow, number> = needsWide.open();
// @ts-expect-error the same for a session's send()
const sessionsAsNarrow: StreamSessions<string, Narrow, number> = needsWide.sessions();
// The other way round is what it says: a function of Narrow takes Wide events.
const wideOk: StreamFn<Wide, number> = needsNarrow;
void [asNarrow, streamAsNarrow, sessionsAsNarrow, wideOk];

// task and batch stages are stream functions: the same holds.
const wideTask = task((x: Wide) => x.b);
const wideBatch = batch((xs: Wide[]) => xs.length, { maxSize: 10 });
// @ts-expect-error the task reads .b
narrow.pipe(wideTask);
// @ts-expect-error the batch's items need .b
narrow.pipe(wideBatch);
// @ts-expect-error a task of Wide is not one of Narrow
const taskAsNarrow: StreamFn<Narrow, string> = wideTask;
void taskAsNarrow;

// Checkpoint state and wake-up payloads, typed by the handler's context.
type CartEvent = { type: 'add'; sku: string; at: number } | { type: 'close'; at: number } | { type: 'timeout' };
interface Cart {
  skus: string[];
}
const checkout = streamFn(async function* (events: AsyncIterable<CartEvent>, ctx: StreamContext<Cart, { type: 'timeout' }>) {
  const cart: Cart = ctx.restored ?? { skus: [] };
  // @ts-expect-error restored may be undefined
  const notYet: Cart = ctx.restored;
  void notYet;
  for await (const e of events) {
    if (e.type === 'add') {
      cart.skus.push(e.sku);
      ctx.checkpoint(cart);
      // @ts-expect-error the state is a Cart
      ctx.checkpoint({ items: [] });
    } else if (e.type === 'close') {
      ctx.wakeAt(e.at + 600_000, { type: 'timeout' });
      // @ts-expect-error the payload is the declared wake-up
      ctx.wakeAt(e.at, { type: 'later' });
    } else yield cart.skus.length;
  }
});
const checkoutType: StreamFn<CartEvent, number> = checkout;
void checkoutType;

// @ts-expect-error a wake-up arrives as an event: { type: 'timeout' } is not one of these events
streamFn(async function* (events: AsyncIterable<{ type: 'add' }>, ctx: StreamContext<Cart, { type: 'timeout' }>) {
  for await (const e of events) yield { e, ctx };
});
// The same check for a pipe's handler stage.
// @ts-expect-error the stage's wake-up is no Narrow
narrow.pipe(async function* (xs: AsyncIterable<Narrow>, ctx: StreamContext<unknown, string>) {
  for await (const x of xs) yield { x, ctx };
});

// Unchanged for code that does not say: unknown state and payloads, as before.
streamFn(async function* (events: AsyncIterable<CartEvent>, ctx: StreamContext) {
  ctx.checkpoint({ anything: 1 });
  ctx.wakeAt(1, 'anything');
  const restored: unknown = ctx.restored;
  for await (const e of events) yield { e, restored };
});
streamFn<CartEvent, number>(async function* (events, ctx) {
  ctx.wakeAt(1, { any: 'payload' });
  for await (const e of events) yield e.type.length;
});

// Redis: a RedisName carries the function's types to every entry point.
declare const client: RedisClientLike;
const orders = redisName(checkout, 'checkout');
const typedName: string = orders;
void typedName;
const producer = redisProducer({ client, name: orders });
void producer.send('cart-1', { type: 'close', at: 1 });
// @ts-expect-error the producer sends the function's events
void producer.send('cart-1', { type: 'pay' });
// @ts-expect-error nor can another event type be asked for
redisProducer<Narrow>({ client, name: orders });
// @ts-expect-error a worker of another function's types
redisWorker(needsWide, { client, name: orders });
redisWorker(checkout, { client, name: orders });
async function read(): Promise<void> {
  for await (const item of redisOutputs({ client, name: orders })) {
    if ('value' in item) {
      const n: number = item.value;
      void n;
    }
  }
  // @ts-expect-error outputs are numbers
  redisOutputs<string>({ client, name: orders });
  // Disposable: `await using` ends its loops at the scope's end.
  {
    await using outputs = redisOutputs({ client, name: orders });
    for await (const item of outputs) if ('value' in item) break;
  }
  redisMaterialize({ client, name: orders, key: (o) => o.key, fields: (o) => ({ items: o.value.toFixed(0) }) });
  // A key's reader: the function's outputs, each with its cursor.
  for await (const item of redisKeyOutputs({
    client,
    name: orders,
    key: 'cart-1',
    sessionEnd: (o) => 'value' in o && o.value > 9,
  })) {
    const cursor: string = item.cursor;
    if ('value' in item) {
      const n: number = item.value;
      void n;
    }
    void cursor;
  }
  // @ts-expect-error outputs are numbers
  redisKeyOutputs<string>({ client, name: orders, key: 'cart-1' });
  {
    await using outputs = redisKeyOutputs({ client, name: orders, key: 'cart-1' });
    for await (const item of outputs) if ('value' in item) break;
  }
}
void read;
declare const req: import('node:http').IncomingMessage;
declare const res: import('node:http').ServerResponse;
void redisSse(req, res, { client, name: orders, key: 'cart-1', serialize: (n) => n.toFixed(2), retry: 1000 });
// @ts-expect-error serialize takes the function's outputs
void redisSse(req, res, { client, name: orders, key: 'cart-1', serialize: (s: string) => s });
// Declared without loading the handler, in a producer's process.
const declared = 'checkout' as RedisName<CartEvent, number>;
redisProducer({ client, name: declared }).send('k', { type: 'timeout' });
// A plain name works as before: the types given, or unknown.
const plain: RedisProducer<unknown> = redisProducer({ client, name: 'checkout' });
void plain.send('k', 42);
redisWorker(needsWide, { client, name: 'checkout' });
// migrate is synchronous: a state, not a promise of one (a session cannot wait for its state).
redisWorker(checkout, { client, name: orders, version: 'v2', migrate: (state) => state });
redisWorker(checkout, { client, name: orders, version: 'v2', migrate: (state, from) => (from === 'v1' ? { total: 0 } : state) });
// @ts-expect-error an async migrate
redisWorker(checkout, { client, name: orders, version: 'v2', migrate: async (state) => state });
// @ts-expect-error one that returns a promise
redisWorker(checkout, { client, name: orders, version: 'v2', migrate: (state) => Promise.resolve(state) });
// The versions a worker still runs have its output type: one whose outputs are wider does not widen it.
declare const checkoutV1: StreamFn<CartEvent, number | string>;
// @ts-expect-error v1 yields strings too
redisWorker(checkout, { client, name: orders, version: 'v2', versions: { v1: checkoutV1 } });
const givenTypes: RedisProducer<Wide> = redisProducer<Wide>({ client, name: 'checkout' });
// @ts-expect-error the producer sends Wide
void givenTypes.send('k', { a: 1 });
// @ts-expect-error a producer of Wide is not one of Narrow (send is a function property)
const producerAsNarrow: RedisProducer<Narrow> = givenTypes;
void producerAsNarrow;

// Codecs and test workers: a codec or worker of Wide is not one of Narrow.
declare const wideCodec: Codec<Wide>;
// @ts-expect-error encode() would get values without .b
const codecAsNarrow: Codec<Narrow> = wideCodec;
void [codecAsNarrow, jsonCodec];
const tw = testWorker(needsWide);
// @ts-expect-error send() takes Wide
const twAsNarrow: TestWorker<Narrow, number> = tw;
void twAsNarrow;
// A health check written for redisWorker's handle takes a test worker too: its stats() are the same figures.
const healthy = (worker: Pick<RedisWorker, 'stats'>): boolean => worker.stats().owned.length > 0;
const twStats: RedisWorkerStats = tw.stats();
void [healthy(tw), twStats];
// A key's kept state, typed as keyState<S>() types it: unknown unless named.
const keptItems: string[] | undefined = tw.readState<{ items: string[] }>('alice')?.state.items;
// @ts-expect-error unnamed, the state is unknown
void tw.readState('alice')?.state.items;
void keptItems;
// The worker's onError goes to a test worker as to the worker (docs/durable/testing.md); checkDeterminism takes none.
const reports: unknown[] = [];
void testWorker(needsWide, { leaseTtl: 5000, onError: (error) => reports.push(error) });
// @ts-expect-error its runs crash at every commit: their reports are its own
void checkDeterminism(needsWide, [], { onError: (error: unknown) => reports.push(error) });
// A check runs the one handler it is given: no release options (refused at run time with ERR_INVALID_ARG_VALUE too).
// @ts-expect-error a check runs one release
void checkDeterminism(needsWide, [], { version: 'v1' });
// @ts-expect-error a check runs one release
void checkDeterminism(needsWide, [], { migrate: (state: unknown) => state });
