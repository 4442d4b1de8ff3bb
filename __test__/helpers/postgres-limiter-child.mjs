// A process of a fleet sharing one postgresLimiter (postgres-limiter tests start several). argv[2]: JSON
// { config (a pg.Pool's), name, role, limiter (options without pool and name), ... }. Roles:
// - audit: `rounds` acquires, `parallel` at once, each held `holdMs` (default 0-3 ms); after each grant increments the auditor row (table `audit`,
//   outside the limiter's tables) and decrements it right before the release; prints `done {"max":...,"admitted":...}`
//   (the largest value the increment returned) and `held`: per permit, [its grant time, the time of its decrement]
//   on the server's clock (an interval within its holding).
// - hold: acquires `permits` permits, prints `held <tokens>`, and waits (to be killed).
// - rate: `rounds` acquires, `parallel` at once, none released (rate-only: each lease ends by itself); prints
//   `done {"at":[grant times, the server's clock]}`.
import pg from 'pg';
import { postgresLimiter } from 'velo-stream/postgres';

const options = JSON.parse(process.argv[2]);
const pool = new pg.Pool({ ...options.config, max: 6 });
pool.on('error', () => {});
const limiter = postgresLimiter({ pool, name: options.name, ...options.limiter });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

if (options.role === 'audit') {
  let max = 0;
  let admitted = 0;
  const held = [];
  const one = async (i) => {
    const permit = await limiter.acquire(i);
    const { rows } = await pool.query('UPDATE audit SET n = n + 1 WHERE id = $1 RETURNING n', [options.audit]);
    max = Math.max(max, rows[0].n);
    admitted++;
    await sleep(options.holdMs ?? Math.random() * 3);
    const down = await pool.query(
      'UPDATE audit SET n = n - 1 WHERE id = $1 RETURNING floor(extract(epoch from clock_timestamp()) * 1000)::bigint AS t',
      [options.audit],
    );
    held.push([permit.grantedAt, Number(down.rows[0].t)]);
    permit.release();
    if (!(await permit.released())) throw new Error('a permit released within its lease was not freed');
  };
  const running = [];
  for (let i = 0; i < options.rounds; i++) {
    running.push(one(i));
    if (running.length === options.parallel) await running.shift();
  }
  await Promise.all(running);
  console.log(`done ${JSON.stringify({ max, admitted, held })}`);
  await limiter.close();
  await pool.end();
} else if (options.role === 'rate') {
  const at = [];
  const loop = async (count) => {
    for (let i = 0; i < count; i++) at.push((await limiter.acquire(i)).grantedAt);
  };
  await Promise.all(Array.from({ length: options.parallel }, () => loop(options.rounds / options.parallel)));
  console.log(`done ${JSON.stringify({ at })}`);
  await limiter.close();
  await pool.end();
} else if (options.role === 'hold') {
  const permits = [];
  for (let i = 0; i < options.permits; i++) permits.push(await limiter.acquire(i));
  console.log(`held ${permits.map((p) => p.token).join(' ')}`);
  await new Promise(() => {
    setInterval(() => {}, 1 << 30);
  });
}
