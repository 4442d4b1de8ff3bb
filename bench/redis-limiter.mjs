// npm run bench:limiter [-- <seconds> [<burst>]]   redisLimiter's cost and accuracy on a private redis-server.
//
// - Cost per decision, in this process: 2,000 permits of a concurrency limit that is never reached (acquire +
//   release), 2,000 of a rate limit that is never reached (acquire +
//   release: a rate-only permit is held until released, as every permit), and 2,000 of concurrency 4 wanted by 32
//   acquires at once (the line, wake-ups and claims). For each: Redis round trips (script calls) per permit and
//   redis-server CPU per permit, both from INFO commandstats (EVALSHA and EVAL calls and usec) taken just before
//   and after, and the renewal calls in that time (one per process per third of a lease).
// - Accuracy: 5 processes sharing R = 200/s with a burst of `burst` (default 20) for `seconds` (default 30), each
//   asking as fast as it can (4 acquires at once): the admitted rate between the first and the last grant (Redis' clock) against R,
//   and the largest burst, max over windows [t_i, t_j] of (grants in it) - (t_j - t_i)/T, which GCRA bounds by the
//   burst.
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import { redisLimiter } from 'velo-stream/redis';
import { start } from '../__test__/helpers/child.mjs';
import { startRedis } from '../__test__/helpers/redis-server.mjs';

const RATE = { limit: 200, period: 1000, burst: 20 };

if (process.argv[2] === 'child') {
  const { url, seconds, burst } = JSON.parse(process.argv[3]);
  RATE.burst = burst;
  const client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  const limiter = redisLimiter({ client, name: 'accuracy', rate: RATE });
  const at = [];
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (performance.now() < until) at.push((await limiter.acquire(0)).grantedAt);
    }),
  );
  console.log(`done ${JSON.stringify(at)}`);
  await limiter.close();
  await client.close();
} else {
  const seconds = Number(process.argv[2] ?? 30);
  RATE.burst = Number(process.argv[3] ?? 20);
  const redis = await startRedis();
  try {
    const client = await redis.client();
    const commandstats = async () => {
      const text = await client.sendCommand(['INFO', 'commandstats']);
      const out = { calls: 0, usec: 0 };
      for (const m of text.matchAll(/cmdstat_(evalsha|eval):calls=(\d+),usec=(\d+)/g)) {
        out.calls += Number(m[2]);
        out.usec += Number(m[3]);
      }
      return out;
    };
    const cost = async (what, options, run) => {
      const limiter = redisLimiter({ client, name: what.replace(/\W+/g, '-'), leaseTtl: 30_000, ...options });
      await new Promise((resolve) => setTimeout(resolve, 50)); // its first renewal
      const before = await commandstats();
      const n = await run(limiter);
      const after = await commandstats();
      await limiter.close();
      // The INFO calls themselves are not scripts; the close's LEAVE comes after `after`.
      const calls = after.calls - before.calls;
      console.log(
        `${what.padEnd(34)} ${(calls / n).toFixed(2)} round trips/permit, ${((after.usec - before.usec) / n).toFixed(1)} us redis-server CPU/permit (${n} permits, ${calls} script calls)`,
      );
    };
    const N = 2000;
    await cost('concurrency, free (acquire+release)', { concurrency: 1000 }, async (l) => {
      for (let i = 0; i < N; i++) {
        const p = await l.acquire(i);
        p.release();
        await p.released();
      }
      return N;
    });
    // (Every permit is held until released, a rate-only one too: so a concurrency limit set later counts it.)
    await cost('rate, free (acquire+release)', { rate: { limit: 1e9, period: 1000 } }, async (l) => {
      for (let i = 0; i < N; i++) {
        const p = await l.acquire(i);
        p.release();
        await p.released();
      }
      return N;
    });
    await cost('concurrency 4, 32 at once (line)', { concurrency: 4 }, async (l) => {
      let left = N;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (left-- > 0) {
            const p = await l.acquire(0);
            p.release();
            await p.released();
          }
        }),
      );
      return N;
    });

    const self = fileURLToPath(import.meta.url);
    const children = Array.from({ length: 5 }, () =>
      start([self, 'child', JSON.stringify({ url: redis.url, seconds, burst: RATE.burst })], { timeout: (seconds + 60) * 1000 }),
    );
    const all = [];
    for (const c of children) all.push(...JSON.parse((await c.waitFor(/done (.*)/))[1]));
    await Promise.all(children.map((c) => c.finished()));
    all.sort((a, b) => a - b);
    const T = RATE.period / RATE.limit;
    const span = all[all.length - 1] - all[0];
    let burst = 0;
    for (let i = 0; i < all.length; i++) {
      for (let j = i; j < all.length && all[j] - all[i] <= 5000; j++) burst = Math.max(burst, j - i + 1 - (all[j] - all[i]) / T);
    }
    const rate = ((all.length - 1) * 1000) / span;
    console.log(
      `accuracy: 5 processes, R = ${RATE.limit}/s, burst ${RATE.burst}, ${seconds} s: ${all.length} admitted over ${(span / 1000).toFixed(2)} s (Redis clock) = ${rate.toFixed(2)}/s (${(((rate - RATE.limit) / RATE.limit) * 100).toFixed(2)} % from R); largest burst ${burst.toFixed(2)} (bound ${RATE.burst})`,
    );
  } finally {
    await redis.stop();
  }
}
