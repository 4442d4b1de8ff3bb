// A checkout session that emits `payment-timeout` a while after the cart closes, unless a payment came first.
// The same handler runs in-process (`sessions()`) and, with REDIS_URL set, on a `redisWorker`, where the
// timer and the session's state survive a crash of the worker: `ctx.wakeAt` is written into the log when due,
// and `ctx.checkpoint` records the cart when it closes.
//
//   node examples/checkout-timeout.mjs                     # in-process only
//   REDIS_URL=redis://127.0.0.1:6379 node examples/checkout-timeout.mjs   # also on Redis; removes its keys after
//   --window <ms>   the payment window (default 300; a shop would use 10 minutes)
import { parseArgs } from 'node:util';
import { streamFn } from 'velo-stream';

/**
 * One checkout per user. Deterministic over its events (a new owner replays them after a crash): the timer's
 * time comes from the log (`ctx.entry.time`, Redis' clock, on which timers fire) on a `redisWorker`, and from the
 * `close` event's own `at` in-process (no log there), never from the clock.
 */
export function checkoutFn(windowMs) {
  return streamFn(
    async function* checkout(events, ctx) {
      const cart = ctx.restored ?? { items: 0, closed: false };
      for await (const e of events) {
        if (e.type === 'add' && !cart.closed) {
          cart.items++;
          yield { cart: cart.items };
        } else if (e.type === 'close') {
          cart.closed = true;
          ctx.wakeAt((ctx.entry?.time ?? e.at) + windowMs, { type: 'payment-timeout' });
          yield { closed: cart.items };
          ctx.checkpoint(cart);
        } else if (e.type === 'pay' && cart.closed) {
          yield { paid: cart.items };
          return;
        } else if (e.type === 'payment-timeout') {
          yield { timeout: cart.items };
          return;
        }
      }
    },
    // Longer than the payment window for the in-process sessions, whose timer does not hold off the idle end (on a
    // redisWorker a pending timer keeps its session open).
    { idleTimeout: windowMs + 30_000 },
  );
}

/** Alice closes her cart and never pays; Bob pays in time. */
export function shoppers(at) {
  return [
    ['alice', { type: 'add' }],
    ['bob', { type: 'add' }],
    ['alice', { type: 'add' }],
    ['alice', { type: 'close', at }],
    ['bob', { type: 'close', at }],
    ['bob', { type: 'pay' }],
  ];
}

/** What each user's session yields. */
export const EXPECTED = {
  alice: [{ cart: 1 }, { cart: 2 }, { closed: 2 }, { timeout: 2 }],
  bob: [{ cart: 1 }, { closed: 1 }, { paid: 1 }],
};

const byUser = (outputs) => {
  const out = { alice: [], bob: [] };
  for (const [key, value] of outputs) out[key].push(value);
  return out;
};

async function inProcess(fn) {
  const sessions = fn.sessions();
  const outputs = [];
  const reading = (async () => {
    for await (const item of sessions) {
      outputs.push([item.key, item.value]);
      // Both sessions returned: nothing more will come.
      if (outputs.length === 7) break;
    }
  })();
  for (const [user, event] of shoppers(Date.now())) await sessions.send(user, event);
  await reading;
  await sessions.close();
  return byUser(outputs);
}

async function onRedis(fn, url) {
  const { createClient } = await import('redis');
  const { redisClientOptions, redisOutputs, redisProducer, redisWorker } = await import('velo-stream/redis');
  // An 'error' listener: without one, node-redis' error on a lost connection (a Redis restart) ends the process.
  const client = await createClient(redisClientOptions({ url }))
    .on('error', (error) => console.error('redis:', error.message))
    .connect();
  const opts = { client, name: `checkout-${process.pid}`, partitions: 4 };
  const worker = redisWorker(fn, { ...opts, leaseTtl: 2000 });
  const outputs = [];
  try {
    await redisProducer(opts).sendMany(shoppers(Date.now()));
    const abort = new AbortController();
    for await (const out of redisOutputs({ ...opts, signal: abort.signal })) {
      outputs.push([out.key, out.value]);
      if (outputs.length === 7) abort.abort();
    }
  } catch (error) {
    if (error?.name !== 'AbortError') throw error;
  } finally {
    await worker.close();
    const keys = await client.keys(`velo:{${opts.name}*`);
    if (keys.length > 0) await client.del(keys);
    await client.close();
  }
  return byUser(outputs);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { window: { type: 'string', default: '300' } } });
  const fn = checkoutFn(Number(values.window));
  const tiers = [['in-process', () => inProcess(fn)]];
  if (process.env.REDIS_URL) tiers.push(['redis', () => onRedis(fn, process.env.REDIS_URL)]);
  let ok = true;
  for (const [tier, run] of tiers) {
    const got = await run();
    for (const user of ['alice', 'bob']) {
      console.log(`${tier} ${user} ${JSON.stringify(got[user])}`);
      ok &&= JSON.stringify(got[user]) === JSON.stringify(EXPECTED[user]);
    }
  }
  console.log(`as expected: ${ok ? 'yes' : 'no'}`);
  process.exitCode = ok ? 0 : 1;
}
