// A worker process for the tests of redisWorker's `limiter` option (redis-worker-limiter.test.mjs). argv[2]: JSON
// { url, name, partitions, leaseTtl, idleTimeout, per: 'session' | 'step', limiter: { name, ...redisLimiter
// options }, byTenant, delayMs, tag, maxWaiting, trimInterval }.
//
// The handler is `totals` (redis-fixtures.mjs: `{ n, total, count }` per event) with an auditor in Redis, outside
// the limiter's keys: with `per: 'session'` a session counts itself in from its first event to its end, in
// `audit:<name>:all` and `audit:<name>:t:<tenant>` (the event's `tenant`); with `per: 'step'` a handler counts
// itself in from an event's take to its next ask. Each count's largest value is kept (`...:max`), and each start is
// logged with Redis' time (`audit:<name>:log`: `<tag> <tenant> <ms>`). The counts are inside the permits' holding
// (taken after the grant, given back before the release), so no count may pass the limit. The limiter (a
// `redisLimiter`, keyed by the key's tenant part `<tenant>:...` with `byTenant`) is wrapped to log each grant's
// time on Redis' clock (`audit:<name>:grants`).
//
// Prints `ready <id>`, `stats <json>` every 100 ms (the worker's, with `limiter`: its stats), and errors as
// `error <code> <message>`; on SIGTERM closes the worker, then the limiter and the client, prints `closed <json>`
// and exits 0.
import { createClient } from 'redis';
import { redisLimiter, redisWorker } from 'velo-stream/redis';
import { streamFn } from '../../index.mjs';

const o = JSON.parse(process.argv[2]);
const client = createClient({ url: o.url });
client.on('error', () => {});
await client.connect();

const AUDIT = `
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[1]) > 0 then
  local m = tonumber(redis.call('GET', KEYS[2]) or '0')
  if v > m then redis.call('SET', KEYS[2], v) end
  if ARGV[2] ~= '' then
    local t = redis.call('TIME')
    redis.call('RPUSH', KEYS[3], ARGV[2] .. ' ' .. (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
  end
end
return v`;
/** Counts `scope` up or down by `by`; a start (`what` given) is logged with Redis' time. */
const audit = (scope, by, what) =>
  client.sendCommand([
    'EVAL',
    AUDIT,
    '3',
    `audit:${o.name}:${scope}`,
    `audit:${o.name}:${scope}:max`,
    `audit:${o.name}:log`,
    String(by),
    what === undefined ? '' : `${o.tag ?? 'w'} ${what}`,
  ]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const fn = streamFn(
  async function* audited(events) {
    let total = 0;
    let count = 0;
    let tenant = null;
    let inStep = false;
    try {
      for await (const e of events) {
        if (o.per === 'session' && tenant === null) {
          tenant = e.tenant;
          await audit('all', 1, tenant);
          await audit(`t:${tenant}`, 1);
        }
        if (o.per === 'step') {
          inStep = true;
          await audit('all', 1, e.tenant);
        }
        if (o.delayMs > 0) await sleep(o.delayMs);
        total += e.n;
        count++;
        yield { n: e.n, total, count };
        if (inStep) {
          inStep = false;
          await audit('all', -1);
        }
      }
    } finally {
      if (inStep) await audit('all', -1);
      if (tenant !== null) {
        await audit('all', -1);
        await audit(`t:${tenant}`, -1);
      }
    }
  },
  { idleTimeout: o.idleTimeout, ...(o.maxConcurrent === undefined ? {} : { maxConcurrent: o.maxConcurrent }) },
);

const { name: limiterName, ...limits } = o.limiter;
const inner = redisLimiter({
  client,
  name: limiterName,
  ...limits,
  ...(o.byTenant ? { key: (item) => item.key.slice(0, item.key.indexOf(':')) } : {}),
});
// The limiter as the worker sees it, each grant's time (Redis' clock) logged.
const limiter = {
  get name() {
    return inner.name;
  },
  async acquire(item, options) {
    const permit = await inner.acquire(item, options);
    await client.rPush(`audit:${o.name}:grants`, String(permit.grantedAt));
    return permit;
  },
  tryAcquire: (item) => inner.tryAcquire(item),
  setLimits: (settings) => inner.setLimits(settings),
  stats: () => inner.stats(),
  close: () => inner.close(),
};

const worker = redisWorker(fn, {
  client,
  name: o.name,
  partitions: o.partitions,
  leaseTtl: o.leaseTtl,
  // (No trim by default: the tests read the log's sessions at the end.)
  trimInterval: o.trimInterval ?? 0,
  limiter: { [o.per]: limiter, ...(o.maxWaiting === undefined ? {} : { maxWaiting: o.maxWaiting }) },
  // (Keys waiting for a session slot are a warning, not an error: `slots <message>`.)
  onError: (error) => console.log(`${error?.code === 'ERR_VELO_SESSION_SLOTS' ? 'slots' : `error ${error?.code}`} ${error?.message}`),
});
const timer = setInterval(() => console.log(`stats ${JSON.stringify({ ...worker.stats(), limiter: inner.stats() })}`), 100);
process.once('SIGTERM', async () => {
  clearInterval(timer);
  await worker.close();
  console.log(`closed ${JSON.stringify({ ...worker.stats(), limiter: inner.stats() })}`);
  await inner.close();
  await client.close();
});
console.log(`ready ${worker.id}`);
