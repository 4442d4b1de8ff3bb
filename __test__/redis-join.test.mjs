// Workers joining and leaving while producers keep sending: a 2nd and a 3rd
// worker join, one leaves gracefully (SIGTERM), one is killed -9, then a
// fresh one joins the survivor. After each
// change the partitions settle at a fair share, read both from the workers
// and from the leases in Redis; at the end every (sid, seq) is there once, in
// order per key, as in a crash-free run, and nothing is pending.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer } from 'velo-stream/redis';
import { client, fresh, killChild, lastStats, sender, stopChild, useRedis, workerChild } from './helpers/redis-suite.mjs';
import { eventually, settled as settledOutputs } from './helpers/redis-fixtures.mjs';

const PARTITIONS = 12;
const TTL = 1000;
// Longer than any pause a key's events see, takeovers included: each key is one session in every run.
const IDLE = 2500;

useRedis();

/** Partition -> the worker id holding its lease, read from Redis. */
async function leaseHolders(name) {
  const holders = new Map();
  for (let p = 0; p < PARTITIONS; p++) {
    const token = await client.get(`velo:{${name}:p${p}}:lease`);
    if (token !== null) holders.set(p, token.slice(0, token.lastIndexOf(':')));
  }
  return holders;
}

/**
 * True once `workers` (child, id) own the partitions in equal shares, every partition leased, and each worker's
 * own view (its `owned` line) is exactly the leases Redis holds for it.
 */
async function fairShare(name, workers) {
  const holders = await leaseHolders(name);
  if (holders.size !== PARTITIONS) return false;
  const share = PARTITIONS / workers.length;
  for (const { child, id } of workers) {
    const leased = [...holders].filter(([, holder]) => holder === id).map(([p]) => p);
    const owned = lastStats(child)?.owned ?? [];
    if (leased.length !== share || owned.join() !== leased.join()) return false;
  }
  return true;
}

test('workers join and leave under load (2nd and 3rd join, one SIGTERM, one kill -9, a 4th joins): fair shares each time, invariants at the end', async () => {
  const name = fresh('churn');
  const producer = redisProducer({ client, name, partitions: PARTITIONS });
  const sent = new Map();
  const send = sender(producer, 24, sent);
  const children = [];
  const join = async () => {
    const child = workerChild(name, { partitions: PARTITIONS, ttl: TTL, idle: IDLE, delayMs: 1 });
    children.push(child);
    const [, id] = await child.waitFor(/^ready (\S+)$/m);
    return { child, id };
  };
  // The producers: rounds of 24 events (one per key) until stopped.
  let producing = true;
  const producers = (async () => {
    while (producing) {
      await send(24);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  try {
    const a = await join();
    await eventually(() => fairShare(name, [a]), 'A owns every partition');
    const b = await join();
    await eventually(() => fairShare(name, [a, b]), 'A and B: 6 each', 30_000);
    const c = await join();
    await eventually(() => fairShare(name, [a, b, c]), 'A, B and C: 4 each', 30_000);
    const sentBefore = [...sent.values()].flat().length;

    const statsB = await stopChild(b.child);
    assert.equal(statsB.lost, 0, 'B handed back, lost nothing');
    assert.equal(statsB.fenced, 0);
    await eventually(() => fairShare(name, [a, c]), 'A and C: 6 each after B left', 30_000);

    await killChild(c.child);
    await eventually(() => fairShare(name, [a]), "A took C's partitions after its leases ran out", 30_000);
    const d = await join();
    await eventually(() => fairShare(name, [a, d]), 'A and D: 6 each after D joined', 30_000);
    assert.ok([...sent.values()].flat().length > sentBefore, 'the producers kept sending meanwhile');
    producing = false;
    await producers;

    await settledOutputs(client, name, PARTITIONS, sent);

    const statsA = await stopChild(a.child);
    assert.equal(statsA.lost, 0, 'A lost nothing');
    assert.ok(statsA.replayedSessions > 0, "A replayed the sessions of the workers that left (B's hand-off, C's crash)");
    const statsD = await stopChild(d.child);
    assert.equal(statsD.lost, 0, 'D lost nothing');
  } finally {
    producing = false;
    await producers.catch(() => {});
    for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  }
});
