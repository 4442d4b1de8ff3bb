// A worker started on a backlog commits its first outputs after a first slice of a partition's entries, not after its
// whole first read: the dispatch gives the event loop a turn after the first few entries, and the outbox commits their
// outputs then (on Postgres with `effects`, a commit is a transaction of a round trip per output: the first output waits
// for the first commit's). The same for a takeover's replay of the pending entries a crashed owner left. Counted on the
// in-memory log (the outputs of the first commit, and the entries read before it), never timed. Until its first commit
// is answered, only its first few partitions read: the others wait (start-gate.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { testWorker } from 'velo-stream/testing';
import { MemoryStore } from '#testing';

/** Each key's running total, one output per event. */
const totals = streamFn(
  async function* totals(events) {
    let total = 0;
    for await (const e of events) yield (total += e.n);
  },
  { idleTimeout: 60_000, maxConcurrent: 10_000 },
);

/**
 * Runs `body` with the store's reads and commits counted: the entries read, in all and per partition, and, at the
 * first commit with outputs after `mark()`, those counts then.
 */
async function counted(body) {
  const { read, commit, snapshots } = MemoryStore.prototype;
  const seen = { read: 0, partitions: new Map(), loaded: new Set(), first: null };
  MemoryStore.prototype.snapshots = function (partition) {
    seen.loaded.add(partition);
    return snapshots.call(this, partition);
  };
  MemoryStore.prototype.read = function (lease, from, count) {
    const result = read.call(this, lease, from, count);
    seen.read += result.entries.length;
    seen.partitions.set(lease.partition, (seen.partitions.get(lease.partition) ?? 0) + result.entries.length);
    return result;
  };
  MemoryStore.prototype.commit = function (lease, c) {
    if (seen.first === null && c.outputs.length > 0)
      seen.first = {
        read: seen.read,
        partitionRead: seen.partitions.get(lease.partition),
        outputs: c.outputs.length,
        loaded: seen.loaded.size,
      };
    return commit.call(this, lease, c);
  };
  const mark = () => {
    seen.read = 0;
    seen.partitions.clear();
    seen.loaded.clear();
    seen.first = null;
  };
  try {
    await body(mark);
  } finally {
    Object.assign(MemoryStore.prototype, { read, commit, snapshots });
  }
  return seen;
}

const PARTITIONS = 16;
const KEYS = 400;
const EVENTS = 4000;

/** Each key's totals in order, as the handler makes them over the events sent. */
function expected() {
  const want = new Map();
  const sums = new Map();
  for (let i = 0; i < EVENTS; i++) {
    const key = `k${i % KEYS}`;
    sums.set(key, (sums.get(key) ?? 0) + i);
    want.set(key, [...(want.get(key) ?? []), sums.get(key)]);
  }
  return want;
}

/** Every key's outputs, over all its sessions, in order. */
function byKey(w) {
  const got = new Map();
  for (const s of w.sessions()) got.set(s.key, [...(got.get(s.key) ?? []), ...s.outputs.map((o) => o.value)]);
  return got;
}

test('a worker started on a backlog commits its first outputs after a first slice of a partition', async () => {
  let w;
  const seen = await counted(async () => {
    w = testWorker(totals, { partitions: PARTITIONS });
    for (let i = 0; i < EVENTS; i++) w.send(`k${i % KEYS}`, { n: i });
    await w.settle();
  });
  // (Before: 250, the outputs of a partition's whole first read of readCount 256: its backlog.)
  assert.ok(seen.first.outputs <= 8, `the first commit carried ${seen.first.outputs} outputs`);
  assert.ok(seen.first.partitionRead >= 250, `its partition had read ${seen.first.partitionRead} entries: its reads are whole`);
  // Its first partitions served first: until its first commit, 4 of its 16 partitions load what their last owners left
  // and read (the rest wait, start-gate.ts).
  assert.equal(seen.first.loaded, 4, `${seen.first.loaded} partitions had loaded before the first commit`);
  // Nothing lost, nothing twice, each key in order.
  assert.equal(w.outputs().length, EVENTS);
  assert.deepEqual(byKey(w), expected());
  await w.close();
});

test("a takeover's replay of a crashed owner's pending entries commits its first outputs after a first slice", async () => {
  let w;
  const seen = await counted(async (mark) => {
    w = testWorker(totals, { partitions: 1, leaseTtl: 3000 });
    // A backlog the first owner reads whole (its live sessions never end meanwhile: every entry stays pending).
    for (let i = 0; i < EVENTS; i++) w.send(`k${i % KEYS}`, { n: i });
    await w.advance(10);
    assert.equal(w.outputs().length, EVENTS);
    w.crash();
    mark();
    await w.settle();
  });
  // The successor replays the 4,000 pending entries; its commits carry their outputs again (the log keeps each once).
  // (Before: 256, the outputs of its first read of the pending list.)
  assert.ok(seen.first.outputs <= 8, `the successor's first commit carried ${seen.first.outputs} outputs`);
  assert.equal(w.outputs().length, EVENTS);
  assert.deepEqual(byKey(w), expected());
  await w.close();
});
