// A rolling deploy of new handler code while carts are live: version v1 of a cart handler runs on two worker
// processes; v2 (which also reports the cart's item count) is deployed on two more, which still carry v1's handler
// for the carts that opened on it. Every cart session finishes on the version it opened with, new carts open on v2,
// and the deploy script waits for `redisVersions().drained('v1')` before it stops the old workers. One of the new
// workers is killed -9 in the middle; the other takes its partitions over.
//
// It prints what happened and exits 0 only when every session ran on one version, every item was counted once in
// its cart's session, the carts opened after the hand-over ran v2, and no v1 output came after `drained`.
//
//   node examples/redis-rolling-deploy.mjs            # starts a private redis-server (Debian package redis-server)
//   REDIS_URL=redis://127.0.0.1:6379 node examples/redis-rolling-deploy.mjs   # uses yours; removes its keys after
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createClient } from 'redis';
import { streamFn } from 'velo-stream';
import { redisClientOptions, redisProducer, redisVersions, redisWorker } from 'velo-stream/redis';

const SELF = fileURLToPath(import.meta.url);
const PARTITIONS = 8;
const CARTS = 10;
/** A cart's session ends 500 ms after its last item (the next item opens a new one). */
const IDLE = 500;

/** v1: the cart's running total after each item. */
const cartV1 = streamFn(
  async function* cartV1(items) {
    let total = 0;
    for await (const { price } of items) {
      total += price;
      yield { version: 'v1', total };
    }
  },
  { idleTimeout: IDLE },
);

/** v2: the running total and the item count. */
const cartV2 = streamFn(
  async function* cartV2(items) {
    let total = 0;
    let count = 0;
    for await (const { price } of items) {
      total += price;
      count++;
      yield { version: 'v2', total, count };
    }
  },
  { idleTimeout: IDLE },
);

async function connect(url) {
  const client = createClient(redisClientOptions({ url }));
  client.on('error', (error) => console.error(`redis: ${error.message}`));
  await client.connect();
  return client;
}

/** `worker <url> <name> <v1|v2>`: a worker of that version (v2 keeps v1's handler) until SIGTERM. */
async function workerRole([url, name, version]) {
  const client = await connect(url);
  const worker = redisWorker(version === 'v1' ? cartV1 : cartV2, {
    client,
    name,
    partitions: PARTITIONS,
    leaseTtl: 1500,
    version,
    ...(version === 'v2' ? { versions: { v1: cartV1 } } : {}),
  });
  process.once('SIGTERM', async () => {
    await worker.close();
    await client.close();
  });
  console.log('ready');
}

/** A private redis-server on a free 127.0.0.1 port, without persistence; stop() ends it by PID. */
async function privateRedis() {
  const port = await new Promise((resolve, reject) => {
    const probe = createServer().once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address();
      probe.close(() => resolve(free));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'velo-rolling-'));
  const server = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise((resolve) => server.once('close', resolve));
  let log = '';
  await new Promise((resolve, reject) => {
    server.once('error', (error) =>
      reject(
        new Error(`could not start redis-server (install the Debian package redis-server, or set REDIS_URL): ${error.message}`),
      ),
    );
    exited.then((code) => reject(new Error(`redis-server exited (${code}):\n${log}`)));
    server.stdout.setEncoding('utf8').on('data', (text) => {
      log += text;
      if (/Ready to accept connections/.test(log)) resolve();
    });
  }).catch((error) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: server.pid,
    async stop() {
      if (server.exitCode === null && server.signalCode === null) process.kill(server.pid, 'SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A worker process of `version`; `ready` resolves once it runs, `exit` with its exit. */
function startWorker(url, name, version, label) {
  const child = spawn(process.execPath, [SELF, 'worker', url, name, version], { stdio: ['ignore', 'pipe', 'inherit'] });
  const proc = { label, version, child, pid: child.pid, stdout: '' };
  proc.exit = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  proc.ready = new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (text) => {
      proc.stdout += text;
      if (/^ready$/m.test(proc.stdout)) resolve();
    });
    proc.exit.then(({ code, signal }) => reject(new Error(`${label} exited before it was ready (${code ?? signal})`)));
  });
  return proc;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Shoppers: each cart gets 8-15 items 100 ms apart, then pauses past the idle time; `sent`: cart -> prices. */
function shoppers(producer, sent) {
  let stopped = false;
  let seed = 11;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  let price = 0;
  const loops = Array.from({ length: CARTS }, async (_, c) => {
    const cart = `cart-${c}`;
    await sleep(random() * 300);
    while (!stopped) {
      for (let i = 8 + Math.floor(random() * 8); i > 0 && !stopped; i--) {
        const item = { price: ++price };
        sent.set(cart, [...(sent.get(cart) ?? []), item.price]);
        await producer.send(cart, item);
        await sleep(100);
      }
      await sleep(IDLE + 300 + random() * 300);
    }
  });
  return async () => {
    stopped = true;
    await Promise.all(loops);
  };
}

async function waitFor(what, check, ms = 30_000) {
  for (const until = Date.now() + ms; Date.now() < until; await sleep(50)) if (await check()) return;
  throw new Error(`timed out waiting for ${what}`);
}

export async function main() {
  const name = `rolling-${process.pid}`;
  const own = process.env.REDIS_URL ? null : await privateRedis();
  const url = own?.url ?? process.env.REDIS_URL;
  const client = await connect(url);
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const versions = redisVersions({ client, name, partitions: PARTITIONS });
  const workers = [startWorker(url, name, 'v1', 'old-1'), startWorker(url, name, 'v1', 'old-2')];
  const sent = new Map();
  let stop = async () => {};
  let ok = false;
  try {
    await Promise.all(workers.map((w) => w.ready));
    console.log(`redis      ${own ? `private redis-server (pid ${own.pid})` : 'REDIS_URL'}; v1 on old-1 and old-2`);
    stop = shoppers(producer, sent);
    await waitFor('live v1 sessions', async () => ((await versions.status()).sessions.v1 ?? 0) > 0);
    // The deploy: two workers of v2, which still run v1.
    workers.push(startWorker(url, name, 'v2', 'new-1'), startWorker(url, name, 'v2', 'new-2'));
    await Promise.all(workers.slice(2).map((w) => w.ready));
    await waitFor('the hand-over', async () => {
      const s = await versions.status();
      return s.workers.filter((w) => w.version === 'v1').every((w) => w.superseded && w.partitions.length === 0);
    });
    const handedOver = Date.now();
    const live = (await versions.status()).sessions;
    console.log(`deploy     old workers superseded, partitions handed over; live sessions ${JSON.stringify(live)}`);
    await sleep(300);
    workers[2].child.kill('SIGKILL');
    await workers[2].exit;
    console.log(`crash      new-1 (pid ${workers[2].pid}) killed by SIGKILL; new-2 takes its partitions over`);
    await versions.drained('v1', { interval: 100 });
    const v1Outputs = (await outputs(client, name)).filter((o) => o.value.version === 'v1').length;
    console.log(`drained    v1: no live v1 session, no v1 worker owns a partition; stopping old-1 and old-2`);
    for (const w of workers.slice(0, 2)) w.child.kill('SIGTERM');
    const oldExits = await Promise.all(workers.slice(0, 2).map((w) => w.exit));
    await sleep(1000);
    await stop();
    await waitFor('every session ended', async () => Object.keys((await versions.status()).sessions).length === 0);
    const all = await outputs(client, name);
    // Per session (sid), its outputs in seq order: one version, the running total of its cart's items in order.
    const sessions = new Map();
    for (const o of all) sessions.set(o.sid, [...(sessions.get(o.sid) ?? []), o]);
    let oneVersion = true;
    const counted = new Map();
    for (const [sid, list] of [...sessions].sort(([, a], [, b]) => (a[0].id < b[0].id ? -1 : 1))) {
      list.sort((a, b) => a.seq - b.seq);
      oneVersion &&= list.every((o) => o.value.version === list[0].value.version);
      const cart = sid.slice(0, sid.lastIndexOf('@'));
      counted.set(cart, [...(counted.get(cart) ?? []), list]);
    }
    // Each cart's sessions, by their first entry: the prices they added up are the cart's, in order, each once.
    let once = true;
    for (const [cart, prices] of sent) {
      const lists = (counted.get(cart) ?? []).sort((a, b) => (a[0].sid < b[0].sid ? -1 : 1));
      const seen = lists.flatMap((list) => list.map((o, i) => o.value.total - (i === 0 ? 0 : list[i - 1].value.total)));
      once &&= JSON.stringify(seen) === JSON.stringify(prices);
    }
    const sidTime = (sid) => Number(sid.slice(sid.lastIndexOf('@') + 1).split('-')[0]);
    const late = [...sessions].filter(([sid]) => sidTime(sid) > handedOver + 500);
    const lateV2 = late.length > 0 && late.every(([, list]) => list[0].value.version === 'v2');
    const perVersion = (v) => [...sessions.values()].filter((list) => list[0].value.version === v).length;
    const afterDrained = all.filter((o) => o.value.version === 'v1').length - v1Outputs;
    console.log(
      `sessions   ${sessions.size}: ${perVersion('v1')} on v1, ${perVersion('v2')} on v2; each on one version: ${oneVersion ? 'yes' : 'NO'}`,
    );
    console.log(
      `items      ${[...sent.values()].flat().length} over ${sent.size} carts, each counted once, in order: ${once ? 'yes' : 'NO'}`,
    );
    console.log(`new carts  ${late.length} sessions opened after the hand-over, all on v2: ${lateV2 ? 'yes' : 'NO'}`);
    console.log(`v1 after drained: ${afterDrained} outputs`);
    console.log(`old        exits ${oldExits.map((e) => e.code ?? e.signal).join(', ')}`);
    ok = oneVersion && once && lateV2 && afterDrained === 0 && oldExits.every((e) => e.code === 0);
  } catch (error) {
    console.log(`error      ${error.message}`);
  } finally {
    await stop();
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exit));
    if (own === null)
      for await (const keys of client.scanIterator({ MATCH: `velo:{${name}*`, COUNT: 500 }))
        if (keys.length) await client.del(keys);
    await client.close();
    await own?.stop();
  }
  console.log(`as expected: ${ok ? 'yes' : 'NO'}`);
  if (!ok) process.exitCode = 1;
}

/** Every output of every partition: { id, sid, seq, value }. */
async function outputs(client, name) {
  const all = [];
  for (let p = 0; p < PARTITIONS; p++)
    for (const { id, message } of await client.xRange(`velo:{${name}:p${p}}:out`, '-', '+'))
      all.push({ id, sid: message.sid, seq: Number(message.seq), value: JSON.parse(message.v) });
  return all;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === 'worker') await workerRole(process.argv.slice(3));
  else await main();
}
