// LLM calls under a fleet-wide tokens-per-minute budget with a per-tenant concurrency cap, on Redis: every
// process that creates these two limiters (same names, same Redis) shares them. A call takes a permit of each,
// in order (the budget first: `cost` is its token estimate; then its tenant's slot: `key`), and gives both back
// when it settles. Two "processes" (two sets of limiters on their own clients) share the limits here.
//
//   node examples/redis-llm-budget.mjs            # starts a private redis-server (Debian package redis-server)
//   REDIS_URL=redis://127.0.0.1:6379 node examples/redis-llm-budget.mjs   # uses yours; removes its keys after
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';
import { redisClientOptions, redisLimiter } from 'velo-stream/redis';

const run = Date.now().toString(36); // names of this run: nothing of an earlier one is shared

/** The two limiters of one process. */
function limiters(client) {
  return [
    // 12,000 tokens a minute for the whole fleet; a call's cost is its token estimate.
    redisLimiter({
      client,
      name: `llm-tokens-${run}`,
      rate: { limit: 12_000, period: 60_000, burst: 6_000 },
      cost: (call) => call.tokens,
    }),
    // At most 2 calls in flight per tenant, fleet-wide.
    redisLimiter({ client, name: `llm-tenants-${run}`, concurrency: 2, key: (call) => call.tenant }),
  ];
}

/** Runs `fn` holding a permit of every limiter, taken in order, all given back when it settles. */
async function limited(all, item, fn) {
  const held = [];
  try {
    for (const limiter of all) held.push(await limiter.acquire(item));
    return await fn(item);
  } finally {
    for (const permit of held) permit.release();
  }
}

const inFlight = new Map();
let most = 0;
/** Stands in for the model: takes a few ms, counts the calls of its tenant in flight. */
async function callModel({ tenant, tokens }) {
  inFlight.set(tenant, (inFlight.get(tenant) ?? 0) + 1);
  most = Math.max(most, inFlight.get(tenant));
  await new Promise((resolve) => setTimeout(resolve, 5));
  inFlight.set(tenant, inFlight.get(tenant) - 1);
  return tokens;
}

async function main(url) {
  const clients = await Promise.all([0, 1].map(() => createClient(redisClientOptions({ url })).connect()));
  const processes = clients.map(limiters);
  const calls = Array.from({ length: 24 }, (_, i) => ({ tenant: `tenant-${i % 3}`, tokens: 200 }));
  const used = await Promise.all(calls.map((call, i) => limited(processes[i % 2], call, callModel)));
  console.log(`calls ${used.length}, tokens ${used.reduce((a, b) => a + b, 0)}, most in flight for one tenant ${most}`);
  // The budget's burst is nearly spent: a big call is refused now by a limiter in reject mode.
  const probe = redisLimiter({
    client: clients[0],
    name: `llm-tokens-${run}`,
    rate: { limit: 12_000, period: 60_000, burst: 6_000 },
    mode: 'reject',
    cost: (n) => n,
  });
  console.log(
    `a 2,000-token call now: ${await probe.acquire(2000).then(
      () => 'admitted',
      (error) => error.code,
    )}`,
  );
  for (const limiter of [...processes.flat(), probe]) await limiter.close();
  for (const key of await clients[0].keys(`velo:lim:{llm-*-${run}}*`)) await clients[0].del(key);
  for (const client of clients) await client.close();
}

if (process.env.REDIS_URL) {
  await main(process.env.REDIS_URL);
} else {
  // A private redis-server on a port of its own, stopped at the end.
  const dir = mkdtempSync(join(tmpdir(), 'llm-budget-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.stdout.on('data', (text) => /Ready to accept connections/.test(text) && resolve());
  });
  try {
    await main(`redis://127.0.0.1:${port}`);
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('close', resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}
