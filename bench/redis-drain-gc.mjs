// The garbage collector over a drain (issue 57): what a worker allocates and keeps per drained event.
//
//   node bench/redis-drain-gc.mjs [runs] [events] [--base <copy>] [--worker '<json>']
//
// Each run is a child process (node --trace-gc --trace-gc-nvp) on a private redis-server: a backlog of `events`
// (100,000) over 1,000 keys on 16 partitions, written before one in-process worker starts (the running-total function
// of bench/redis/drain.mjs, one output per event); the run ends at its last output. Per run: events/s, the child's
// CPU per event from the worker's start, and V8's own account of the drain: scavenges and mark-compacts, their
// pauses, and the bytes promoted out of the young generation per event (what lived past two scavenges). With
// `--base <copy>`, runs alternate between this copy and another copy of the package (its package.json, dist/ and
// native/, node_modules linked). `--worker`: more options of redisWorker (JSON), for both copies.
import { spawn } from 'node:child_process';
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const HERE = path.resolve(path.dirname(SELF), '..');

if (process.argv[2] === 'child') {
  const [, , , root, eventsArg, workerJson = '{}'] = process.argv;
  const events = Number(eventsArg);
  const { streamFn } = await import(pathToFileURL(path.join(root, 'dist/index.js')).href);
  const { redisProducer, redisWorker } = await import(pathToFileURL(path.join(root, 'dist/redis/index.js')).href);
  const { startRedis } = await import(pathToFileURL(path.join(HERE, '__test__/helpers/redis-server.mjs')).href);
  const { writeBacklog } = await import(pathToFileURL(path.join(HERE, 'bench/redis/drain.mjs')).href);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const redis = await startRedis();
  const client = await redis.client();
  const producer = redisProducer({ client, name: 'gc', partitions: 16 });
  await writeBacklog(producer, events, 1000);
  const fn = streamFn(
    async function* sum(xs) {
      let total = 0;
      for await (const x of xs) yield { total: (total += x.n) };
    },
    { idleTimeout: 0, maxConcurrent: 2000 },
  );
  console.log('--- drain start');
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  const worker = redisWorker(fn, { client, name: 'gc', partitions: 16, leaseTtl: 10_000, ...JSON.parse(workerJson) });
  // (The worker's own counter, polled: stats() per poll would be part of what is measured.)
  while (worker.stats().outputs < events) await sleep(20);
  const ms = performance.now() - t0;
  const used = process.cpuUsage(cpu);
  console.log('--- drain end');
  console.log(`result ${JSON.stringify({ eventsPerSecond: Math.round((events / ms) * 1000), cpuUs: (used.user + used.system) / events })}`);
  await worker.close();
  await client.close().catch(() => {});
  await redis.stop();
  process.exit(0);
}

const args = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--base' && all[i - 1] !== '--worker');
const workerFlag = process.argv.indexOf('--worker');
const workerJson = workerFlag === -1 ? '{}' : process.argv[workerFlag + 1];
const runs = Number(args[0] ?? 3);
const events = Number(args[1] ?? 100_000);
const baseFlag = process.argv.indexOf('--base');
const copies = [['this', HERE]];
if (baseFlag !== -1) copies.push(['base', path.resolve(process.argv[baseFlag + 1])]);

/** One run in a child: its result and the GC lines between the drain's markers, summed. */
function run(root) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--trace-gc', '--trace-gc-nvp', SELF, 'child', root, String(events), workerJson], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    child.stdout.on('data', (chunk) => (text += chunk));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`child exited ${code}`));
      const lines = text.split('\n');
      const drain = lines.slice(lines.indexOf('--- drain start'), lines.indexOf('--- drain end'));
      const gc = { scavenges: 0, markCompacts: 0, pauseMs: 0, promoted: 0 };
      for (const line of drain) {
        if (!line.includes('gc=')) continue;
        const f = Object.fromEntries(line.split(/\s+/).filter((x) => x.includes('=')).map((x) => x.split('=')));
        if (f.gc === 's') gc.scavenges++;
        else gc.markCompacts++;
        gc.pauseMs += Number(f.pause);
        gc.promoted += Number(f.promoted ?? 0);
      }
      const result = JSON.parse(lines.find((l) => l.startsWith('result ')).slice(7));
      resolve({ ...result, ...gc });
    });
  });
}

for (let r = 0; r < runs; r++) {
  for (let j = 0; j < copies.length; j++) {
    const [label, root] = copies[(r + j) % copies.length];
    const load = os.loadavg()[0].toFixed(1);
    const x = await run(root);
    console.log(
      `${label.padEnd(5)} load ${load}: ${x.eventsPerSecond} events/s, CPU ${x.cpuUs.toFixed(2)} µs/event; ${x.scavenges} scavenges, ${x.markCompacts} mark-compacts, pauses ${x.pauseMs.toFixed(0)} ms; promoted ${(x.promoted / events).toFixed(0)} B/event`,
    );
  }
}
