// A worker's lease counters at a takeover, on Postgres and on Redis, with the same script: worker A owns every
// partition, B starts and takes its share (A hands those over: `released`), then A is paused (SIGSTOP) past its
// lease, B takes the rest over, and A, resumed, finds them gone (`lost`). B then hands A its share again; A closes
// (hands it back) and B, alone, takes it before it closes too. `stats().lost` counts the partitions a worker lost
// to another (fenced, or its lease expired), `released` those it handed back, `acquired` the leases it took: the
// same numbers on both backends (docs/redis/metrics.md). Each step waits for a counter or for a balance the workers
// keep, never for a passing state (A owns nothing only until B hands its share back).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { start } from './helpers/child.mjs';
import { startPostgres } from './helpers/postgres-server.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';
import { startRedis } from './helpers/redis-server.mjs';

const CHILD = fileURLToPath(new URL('./helpers/pg-stats-child.mjs', import.meta.url));
const PARTITIONS = 4;
const LEASE = 2000;

const until = (check, what, ms = 60_000) => eventually(check, what, ms);

/** The last stats a child printed. */
function statsOf(child) {
  const line = child.stdout.split('\n').findLast((l) => l.startsWith('stats '));
  return line === undefined ? null : JSON.parse(line.slice(6));
}

async function scenario(backend, connection, name) {
  const args = [CHILD, backend, connection, name, String(PARTITIONS), String(LEASE)];
  const children = [];
  let stopped = false;
  try {
    const a = start(args, { timeout: 120_000 });
    children.push(a);
    await until(() => statsOf(a)?.owned.length === PARTITIONS, 'A owns every partition');
    const b = start(args, { timeout: 120_000 });
    children.push(b);
    await until(() => statsOf(b)?.owned.length === PARTITIONS / 2, 'B takes its share');
    await until(() => statsOf(a)?.owned.length === PARTITIONS / 2, 'A hands its share over');
    process.kill(a.child.pid, 'SIGSTOP');
    stopped = true;
    await until(() => statsOf(b)?.owned.length === PARTITIONS, 'B takes the rest over');
    process.kill(a.child.pid, 'SIGCONT');
    stopped = false;
    await until(() => statsOf(a)?.lost === PARTITIONS / 2, 'A finds its partitions gone');
    const balanced = () => statsOf(a)?.owned.length === PARTITIONS / 2 && statsOf(b)?.owned.length === PARTITIONS / 2;
    await until(balanced, 'B hands A its share again');
    const closed = ({ stdout }) => JSON.parse(stdout.split('\n').find((l) => l.startsWith('closed ')).slice(7));
    process.kill(a.child.pid, 'SIGTERM');
    const fa = await a.finished();
    await until(() => statsOf(b)?.owned.length === PARTITIONS, 'B takes what A handed back');
    process.kill(b.child.pid, 'SIGTERM');
    const fb = await b.finished();
    return { a: closed(fa), b: closed(fb) };
  } finally {
    if (stopped) process.kill(children[0].child.pid, 'SIGCONT');
    for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  }
}

const counters = (s) => ({ acquired: s.acquired, lost: s.lost, released: s.released });

test('a takeover of a paused owner: acquired, lost and released count the same on Postgres as on Redis', async () => {
  const postgres = await startPostgres();
  const redis = await startRedis();
  try {
    const pg = await scenario('postgres', JSON.stringify({ ...postgres.config, max: 4 }), 'taken');
    const rd = await scenario('redis', redis.url, 'taken');
    // A: took every partition, handed half to B, lost the other half to B's takeover, took its share back and
    // handed it back at its close. B: took its share, the rest from A, A's share at A's close; handed A's share
    // back once, and everything at its close.
    const expected = {
      a: { acquired: PARTITIONS + PARTITIONS / 2, lost: PARTITIONS / 2, released: PARTITIONS },
      b: { acquired: PARTITIONS + PARTITIONS / 2, lost: 0, released: PARTITIONS + PARTITIONS / 2 },
    };
    assert.deepEqual({ a: counters(rd.a), b: counters(rd.b) }, expected, 'Redis');
    assert.deepEqual({ a: counters(pg.a), b: counters(pg.b) }, expected, 'Postgres');
  } finally {
    await redis.stop();
    await postgres.stop();
  }
});
