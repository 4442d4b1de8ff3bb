// A process of a fleet sharing one redisLimiter (the limiter tests start several). argv[2]: JSON
// { url, name, role, limiter (options without client and name), ... }. Roles:
// - audit: `rounds` acquires; after each grant INCR the auditor key (`audit`, outside the limiter's keys), then
//   DECR it right before the release; prints `done {"max":...,"admitted":...}` (the largest value INCR returned).
// - hold: acquires `permits` permits, prints `held <tokens>`; on a line `release` on stdin releases them and
//   prints `released {"freed":[...],"lost":[...]}`, then exits.
// - rate: `rounds` acquires, prints `done {"at":[grant times, Redis' clock]}`.
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import { redisLimiter } from 'velo-stream/redis';

const options = JSON.parse(process.argv[2]);
const client = createClient({ url: options.url });
client.on('error', () => {});
await client.connect();
const limiter = redisLimiter({ client, name: options.name, ...options.limiter });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

if (options.role === 'audit') {
  let max = 0;
  let admitted = 0;
  const one = async (i) => {
    const permit = await limiter.acquire(i);
    max = Math.max(max, await client.incr(options.audit));
    admitted++;
    await sleep(Math.random() * 3);
    await client.decr(options.audit);
    permit.release();
  };
  // Several acquires at once per process, so each process also waits in the line.
  const running = [];
  for (let i = 0; i < options.rounds; i++) {
    running.push(one(i));
    if (running.length === options.parallel) await running.shift();
  }
  await Promise.all(running);
  console.log(`done ${JSON.stringify({ max, admitted })}`);
} else if (options.role === 'hold') {
  const permits = [];
  for (let i = 0; i < options.permits; i++) permits.push(await limiter.acquire(i));
  console.log(`held ${permits.map((p) => p.token).join(' ')}`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== 'release') continue;
    for (const p of permits) p.release();
    const results = await Promise.all(permits.map((p) => p.released()));
    console.log(`released ${JSON.stringify({ freed: results, lost: permits.map((p) => p.lost) })}`);
    break;
  }
} else if (options.role === 'rate') {
  const at = [];
  await Promise.all(
    Array.from({ length: options.parallel }, async () => {
      while (at.length < options.rounds) at.push((await limiter.acquire(0)).grantedAt);
    }),
  );
  console.log(`done ${JSON.stringify({ at })}`);
}
await limiter.close();
await client.close();
