// The set-up every Redis test file shares: one private redis-server and a
// client for the whole file, fresh function names, and worker child
// processes (helpers/redis-worker-child.mjs) with their checks.
//
// `redis` and `client` are live bindings: `useRedis()` registers the hooks
// that set them (before the file's first test) and stop the server (after
// its last). Each test file runs in a process of its own, so each gets its
// own server.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { start } from './child.mjs';
import { startRedis } from './redis-server.mjs';

/** The file's redis-server (see startRedis), once `useRedis()`'s hook has run. */
export let redis;
/** A connected client of it, closed when the server stops. */
export let client;

/** Starts the file's redis-server before its first test and stops it after its last. Options: see startRedis. */
export function useRedis(options) {
  before(async () => {
    redis = await startRedis(options);
    client = await redis.client();
  });
  after(async () => {
    await redis?.stop();
  });
}

let names = 0;
/** A function name no other test of the file uses: `<what><n>`. */
export const fresh = (what) => `${what}${++names}`;

const CHILD = fileURLToPath(new URL('./redis-worker-child.mjs', import.meta.url));

/**
 * A worker process of the function `name` (the `totals` handler) on the file's server (or at `url`: a proxy in
 * front of it). It prints `owned ...` when its partitions change, `stats <json>` every 100 ms, and on SIGTERM
 * hands off and prints `closed <json>`. `extra`: more worker options (JSON), and `handler: 'stuck'` (see
 * redis-worker-child.mjs). `timeout`: the child's whole life, from its start (killed past it).
 */
export function workerChild(
  name,
  { partitions, ttl, idle, delayMs = 1, trimInterval = 1, url = redis.url, extra = {}, timeout = 60_000 },
) {
  const args = [CHILD, url, name, partitions, ttl, idle, delayMs, trimInterval, JSON.stringify(extra)].map(String);
  return start(args, { timeout });
}

/** The last `stats` line a worker child printed (null before its first). */
export function lastStats(child) {
  const lines = child.stdout.split('\n').filter((l) => l.startsWith('stats '));
  return lines.length === 0 ? null : JSON.parse(lines.at(-1).slice(6));
}

/** A command that waited in the client's queue past node-redis' command timeout, which the worker retries. */
const QUEUED_TIMEOUT = /^error ERR_VELO_REDIS_CONNECTION .*TimeoutError: .*ran out before the command was written/;

/**
 * SIGTERM (graceful hand-off); checks a clean exit with no recovered error, and returns its final stats.
 * `queuedTimeouts`: a worker whose event loop is saturated for seconds (a 100,000-key drain on 2 cores, taken over
 * whole) may see commands time out in its client's queue before they are written, and retry them; such a test
 * checks the outcome itself (its invariants), so those retried timeouts are not failures there. Any other error is.
 */
export async function stopChild(child, { queuedTimeouts = false } = {}) {
  child.child.kill('SIGTERM');
  const { stdout } = await child.finished();
  // The error lines themselves, in the message (a report that cuts the assertion's diff still shows them), not the
  // whole stdout (whose stats lines bury them).
  const errors = stdout.split('\n').filter((l) => l.startsWith('error ') && !(queuedTimeouts && QUEUED_TIMEOUT.test(l)));
  assert.ok(
    errors.length === 0,
    `the worker met ${errors.length} error(s) (a fencing refusal is not one): ${errors.join(' | ')}`,
  );
  return JSON.parse(
    stdout
      .split('\n')
      .find((l) => l.startsWith('closed '))
      .slice(7),
  );
}

/** kill -9, and the check that it died of it. */
export async function killChild(child) {
  child.child.kill('SIGKILL');
  await child.finished().catch((error) => assert.match(String(error), /killed by SIGKILL/));
}

/** Sends `count` events over `keys` keys in rounds, with a pause between rounds; `sent` (key -> ns) records what each key got. */
export function sender(producer, keys, sent) {
  let i = 0;
  return async (count) => {
    for (let end = i + count; i < end;) {
      const batch = [];
      for (let j = 0; j < keys && i < end; j++, i++) {
        const key = `user${i % keys}`;
        sent.set(key, [...(sent.get(key) ?? []), i]);
        batch.push([key, { n: i }]);
      }
      const ids = await producer.sendMany(batch);
      // Each event's entry time, for `settled` with an idle time (`sent.times`: n -> ms).
      sent.times ??= new Map();
      batch.forEach(([, { n }], j) => sent.times.set(n, Number(ids[j].slice(0, ids[j].indexOf('-')))));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
}
