// node bench/postgres-limiter.mjs [<permits>]   postgresLimiter against redisLimiter, in one sitting, on a private
// postgres and a private redis-server started here (the test helpers'; postgres with fsync off, as in the tests).
//
// For each limiter and each case, `permits` (default 2,000) permits acquired and released by 8 loops at once
// (acquire + release: two decisions a permit; a rate-only permit is held until released, as every permit):
// - concurrency, free: a concurrency limit never reached;
// - rate, free: a rate never reached;
// - concurrency 4, 32 at once: 32 loops wanting 4 permits (the line, hints and claims).
// Printed per case: decisions/s (2 x permits / wall time) and the server's CPU per decision, µs: redis-server's
// process, or the postgres backends of this bench's pool (utime + stime from /proc, before and after), so both
// count the whole server work of a call (parsing, the script or function, the network) and nothing else.
import { readFileSync, readdirSync } from 'node:fs';
import { createClient } from 'redis';
import { redisLimiter } from 'velo-stream/redis';
import { postgresLimiter } from 'velo-stream/postgres';
import { startRedis } from '../__test__/helpers/redis-server.mjs';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';

const N = Number(process.argv[2] ?? 2000);
const TICK_US = 1e6 / 100; // USER_HZ

/** CPU (µs) of `pids` so far. */
function cpu(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Gone.
    }
  }
  return ticks * TICK_US;
}

/** The postmaster's children that are client backends (not its own workers). */
function backends(postmaster) {
  const out = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.split(') ')[1].split(' ')[1]);
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (ppid === postmaster && /postgres: velo postgres/.test(cmd)) out.push(Number(name));
    } catch {
      // Gone.
    }
  }
  return out;
}

const CASES = [
  ['concurrency, free', { concurrency: 1_000_000 }, 8],
  ['rate, free', { rate: { limit: 1e9, period: 1000 } }, 8],
  ['concurrency 4, 32 at once', { concurrency: 4 }, 32],
];

async function measure(kind, make, serverPids) {
  for (const [what, limits, loops] of CASES) {
    const limiter = make(`${what.replace(/\W+/g, '-')}`, limits);
    // Warm: the first calls (scripts loaded, statements prepared, connections made).
    for (let i = 0; i < 50; i++) {
      const p = await limiter.acquire(i);
      p.release();
      await p.released();
    }
    const pids = serverPids();
    const before = cpu(pids);
    const started = performance.now();
    let left = N;
    await Promise.all(
      Array.from({ length: loops }, async () => {
        while (left-- > 0) {
          const p = await limiter.acquire(0);
          p.release();
          await p.released();
        }
      }),
    );
    const ms = performance.now() - started;
    const used = cpu(pids) - before;
    await limiter.close();
    const decisions = 2 * N;
    console.log(
      `${kind.padEnd(9)} ${what.padEnd(26)} ${((decisions * 1000) / ms).toFixed(0).padStart(6)} decisions/s, ${(used / decisions).toFixed(0).padStart(4)} µs server CPU/decision (${N} permits, ${(ms / 1000).toFixed(2)} s)`,
    );
  }
}

const redis = await startRedis();
const postgres = await startPostgres();
try {
  const client = await redis.client();
  await measure(
    'redis',
    (name, limits) => redisLimiter({ client, name, leaseTtl: 30_000, ...limits }),
    () => [redis.pid],
  );
  const pool = postgres.pool({ max: 10 });
  await measure(
    'postgres',
    (name, limits) => postgresLimiter({ pool, name, leaseTtl: 30_000, ...limits }),
    () => backends(postgres.pid),
  );
} finally {
  await postgres.stop();
  await redis.stop();
}
