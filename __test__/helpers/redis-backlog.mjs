// The 100,000-key backlog of redis-backlog*.test.mjs: written before any worker runs (keys interleaved, so each
// key's events span the backlog), drained by worker processes with the function's default session slots, and its
// invariants read from Redis. Two files, so that each drain has the whole of a file's time budget.
import assert from 'node:assert/strict';
import { redisProducer } from 'velo-stream/redis';
import { client, lastStats, workerChild } from './redis-suite.mjs';
import { checkOutputs, eventually, expectedTotals, pendingCount, readAllOutputs, sessionsInLog } from './redis-fixtures.mjs';

export const PARTITIONS = 64;
export const KEYS = 100_000;
export const ROUNDS = 5;
export const TOTAL = KEYS * ROUNDS;
export const IDLE = 1000;

export async function writeBacklog(name) {
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < KEYS; k += 1000) {
      const pairs = [];
      for (let i = k; i < Math.min(KEYS, k + 1000); i++) pairs.push([`k${i}`, { n: r * KEYS + i }]);
      await producer.sendMany(pairs);
    }
  }
}

/**
 * A worker process with the function's defaults but `idleTimeout` (see redis-worker-child.mjs: the `totals` handler).
 * It lives as long as the drain its test allows (the default child deadline, 60 s, is shorter than a drain of the
 * whole backlog on a loaded machine).
 */
export const worker = (name) =>
  // (maxConcurrent 1,000, the default before issue 57: far fewer than the keys.)
  workerChild(name, { partitions: PARTITIONS, ttl: 10_000, idle: IDLE, delayMs: 0, trimInterval: 5000, timeout: 560_000, extra: { maxConcurrent: 1000 } });

/** Outputs of all the workers so far, by their stats lines (cheap to poll, unlike reading 500,000 entries). */
export const outputsOf = (...children) => children.reduce((n, c) => n + (lastStats(c)?.outputs ?? 0), 0);

/** Per key, the outputs of the sessions the log defines (split by the log's clock): read before any worker trims it. */
export async function expectedByKey(name) {
  const byKey = new Map();
  for (const { key, ns } of (await sessionsInLog(client, name, PARTITIONS, IDLE)).values()) {
    if (!byKey.has(key)) byKey.set(key, []);
    byKey.get(key).push(...expectedTotals(ns));
  }
  return byKey;
}

export async function checkInvariants(name, expected) {
  await eventually(async () => (await pendingCount(client, name, PARTITIONS)) === 0, 'nothing pending', 120_000);
  const outputs = await readAllOutputs(client, name, PARTITIONS);
  assert.equal(outputs.length, TOTAL, 'one output per event');
  checkOutputs(outputs, expected);
}
