// Per-user rolling features materialized into Redis hashes: a feature store.
// Transactions go into Redis Streams (a producer), a worker keeps one session
// per user computing rolling features over that user's last five
// transactions, and a materializer writes each newest set into the hash
// `features:<user>`, where any service reads it with one HGETALL.
//
// Producer, worker and materializer run in one process here; in production
// each can be its own process (or many: workers share the partitions,
// materializers in one group share the outputs).
//
//   node examples/redis-feature-store.mjs            # starts a private redis-server (Debian package redis-server)
//   REDIS_URL=redis://127.0.0.1:6379 node examples/redis-feature-store.mjs   # uses yours; removes its keys after
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { createClient } from 'redis';
import { streamFn } from 'velo-stream';
import { redisClientOptions, redisMaterialize, redisProducer, redisWorker } from 'velo-stream/redis';

const WINDOW = 5;

/**
 * Rolling features of one user, one set per transaction. Deterministic over its inputs (a new owner replays
 * them after a crash): time comes from the transaction, never from the clock.
 */
export const userFeatures = streamFn(
  async function* userFeatures(transactions) {
    const recent = [];
    let count = 0;
    let total = 0;
    for await (const { amount, at } of transactions) {
      count++;
      total += amount;
      recent.push(amount);
      if (recent.length > WINDOW) recent.shift();
      const sum = recent.reduce((a, b) => a + b, 0);
      yield { count, total, avg5: +(sum / recent.length).toFixed(2), max5: Math.max(...recent), lastAt: at };
    }
  },
  { idleTimeout: 60_000 },
);

/** Deterministic transactions for a few users: [user, { amount, at }]. */
export function transactions(n = 60) {
  const users = ['alice', 'bob', 'carol'];
  return Array.from({ length: n }, (_, i) => [users[i % 3], { amount: ((i * 37) % 90) + 10, at: 1_700_000_000_000 + i * 1000 }]);
}

/** The features each user's hash must hold after `list`: those of the user's last transaction. */
export function expectedFeatures(list) {
  const byUser = new Map();
  for (const [user, t] of list) byUser.set(user, [...(byUser.get(user) ?? []), t]);
  const out = {};
  for (const [user, ts] of byUser) {
    const recent = ts.slice(-WINDOW).map((t) => t.amount);
    const sum = recent.reduce((a, b) => a + b, 0);
    out[user] = {
      count: String(ts.length),
      total: String(ts.reduce((a, t) => a + t.amount, 0)),
      avg5: String(+(sum / recent.length).toFixed(2)),
      max5: String(Math.max(...recent)),
      lastAt: String(ts.at(-1).at),
    };
  }
  return out;
}

/** A private redis-server on a free 127.0.0.1 port, without persistence; stop() kills it by PID. */
async function privateRedis() {
  const port = await new Promise((resolve, reject) => {
    const probe = createServer().once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address();
      probe.close(() => resolve(free));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'velo-feature-store-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'];
  const server = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise((resolve, reject) => {
    let log = '';
    server.once('error', (error) =>
      reject(new Error(`Could not start redis-server (install the Debian package redis-server, or set REDIS_URL): ${error.message}`)),
    );
    server.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${log}`)));
    server.stdout.on('data', (chunk) => {
      log += chunk;
      if (/Ready to accept connections/.test(log)) resolve();
    });
  });
  server.removeAllListeners('exit');
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      const exited = new Promise((resolve) => server.once('exit', resolve));
      process.kill(server.pid, 'SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function main() {
  const own = process.env.REDIS_URL ? null : await privateRedis();
  // The recommended timeouts and reconnects (docs/redis.md, set up).
  const client = createClient(redisClientOptions({ url: own?.url ?? process.env.REDIS_URL }));
  // Without an 'error' listener, node-redis' error on a lost connection (a Redis restart) ends the process.
  client.on('error', (error) => console.error('redis:', error.message));
  await client.connect();
  // A name of its own: on a shared server this run touches no one else's keys.
  const name = `features-${process.pid}`;
  const prefix = `features:${process.pid}:`;
  const options = { client, name, partitions: 8 };
  const worker = redisWorker(userFeatures, options);
  const view = redisMaterialize({
    ...options,
    key: (output) => `${prefix}${output.key}`,
    fields: (output) => output.value,
  });
  try {
    const list = transactions();
    await redisProducer(options).sendMany(list);
    for (const deadline = Date.now() + 30_000; view.stats().applied < list.length; ) {
      if (Date.now() > deadline) throw new Error(`only ${view.stats().applied} of ${list.length} outputs materialized`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const expected = expectedFeatures(list);
    let correct = 0;
    for (const user of Object.keys(expected)) {
      const hash = await client.hGetAll(`${prefix}${user}`);
      // The materializer's mark of the last output applied (`_velo:<user>`) sits next to the features.
      const features = Object.fromEntries(Object.entries(hash).filter(([field]) => !field.startsWith('_velo:')));
      console.log(`features:${user}`, JSON.stringify(features));
      if (isDeepStrictEqual(features, expected[user])) correct++;
    }
    console.log(`users correct ${correct} / ${Object.keys(expected).length}`);
    console.log(`materialized ${JSON.stringify(view.stats())}`);
    return correct;
  } finally {
    await view.close();
    await worker.close();
    if (own === null) {
      // A shared server: remove what this run wrote.
      for await (const keys of client.scanIterator({ MATCH: `velo:{${name}*`, COUNT: 500 })) if (keys.length) await client.del(keys);
      for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) if (keys.length) await client.del(keys);
    }
    await client.close();
    await own?.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
