// maxUndelivered against a partition's first slice: a worker started on a backlog commits a partition's first few
// outputs before the rest of its first read, and those commits are held to the local queue's bound like any other.
// With onOutput held, no commit takes the committed outputs not yet delivered past the bound, and the queue still
// fills up to it (a commit takes the room a first slice left). The engine's partition runs on the in-memory log, each
// commit checked as the log applies it; nothing timed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import {
  LocalDelivery,
  MemoryLog,
  MemoryStore,
  PartitionRun,
  jsonCodec,
  newCounters,
  realClock,
  RETRY_MS,
  StartGate,
  OpeningSlice,
} from '#testing';

/** Each key's running total, one output per event; sessions stay open for the whole test. */
const totals = streamFn(
  async function* totals(events) {
    let total = 0;
    for await (const e of events) yield (total += e.n);
  },
  { idleTimeout: 60_000 },
);

/** A worker in miniature on the in-memory log: a PartitionRun per partition, local delivery through `delivery`. */
class MemoryHost {
  version = '';
  migrate = null;
  clock = realClock;
  readCount = 256;
  codec = jsonCodec;
  maxEventBytes = 1 << 20;
  maxSessionEvents = 0;
  maxSessionAge = 0;
  maxCheckpointBytes = 1 << 20;
  maxJournalBytes = 1 << 20;
  maxSessionTimers = 1000;
  checkReplay = false;
  permits = null;
  debounce = null;
  keyState = null;
  counters = newCounters();
  live = 0;
  clockOffset = 0;
  startGate = new StartGate(realClock);
  openingSlice = new OpeningSlice(realClock, 60_000);
  ttl = 60_000;
  fn = totals;
  runs = new Map();
  errors = [];
  #idle = new Map();

  constructor(log, delivery) {
    this.log = log;
    this.delivery = delivery;
  }
  fnFor() {
    return this.fn;
  }
  runsVersion(version) {
    return version === '';
  }
  share() {
    return 4096;
  }
  report(error) {
    this.errors.push(error);
  }
  retryWait() {
    return new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
  lose(run) {
    this.errors.push(new Error(`partition ${run.partition} lost`));
  }
  idle(run, tail) {
    if (run.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idle.set(run.partition, resolve);
      void this.log.wait(new Map([[run.partition, tail]]), 60_000).then(() => this.wakeIdle(run.partition));
    });
  }
  wakeIdle(partition) {
    const resolve = this.#idle.get(partition);
    this.#idle.delete(partition);
    resolve?.();
  }
  notifySessionEnded() {
    for (const run of this.runs.values()) run.slotsFreed();
  }
  async start() {
    for (let p = 0; p < this.log.partitions; p++) {
      const sent = Date.now();
      const lease = await this.log.acquire(p, 'w1', this.ttl);
      assert.ok('token' in lease, `partition ${p} taken`);
      this.runs.set(p, new PartitionRun(this, lease, sent));
    }
  }
  async close() {
    await Promise.all([...this.runs.values()].map((run) => run.release()));
    for (const p of this.#idle.keys()) this.wakeIdle(p);
    await this.log.close();
  }
}

/**
 * Resolves once `check()` holds, looked at every turn of the event loop; fails if it never does, or at once if a
 * commit passed the bound (`passed`: found as the log applied the commits).
 */
async function turnsUntil(check, what, passed) {
  for (let turns = 0; !check(); turns++) {
    assert.deepEqual(passed, [], 'no commit passed the bound');
    assert.ok(turns < 200_000, `never: ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.deepEqual(passed, [], 'no commit passed the bound');
}

const PARTITIONS = 2;
const KEYS = 10;
const PER_PARTITION = 100;

for (const limit of [2, 6]) {
  test(`maxUndelivered ${limit} on a backlog: no commit passes it, the first slices' included, and the queue fills to it`, async () => {
    const store = new MemoryStore(PARTITIONS, realClock);
    const sent = new Map();
    for (let p = 0; p < PARTITIONS; p++) {
      const events = [];
      for (let i = 0; i < PER_PARTITION; i++) {
        const key = `p${p}k${i % KEYS}`;
        sent.set(key, [...(sent.get(key) ?? []), i]);
        events.push([key, JSON.stringify({ n: i })]);
      }
      store.append(p, events);
    }
    // Every commit as the log applies it: the outputs committed and not yet delivered stay within the bound.
    let committed = 0;
    let delivered = 0;
    const commits = [];
    const passed = [];
    const apply = store.commit.bind(store);
    store.commit = (lease, c) => {
      const after = committed + c.outputs.length - delivered;
      if (after > limit) passed.push(`a commit of ${c.outputs.length} outputs took the undelivered to ${after}`);
      const result = apply(lease, c);
      committed += result.ids.filter((id) => id !== null).length;
      if (c.outputs.length > 0) commits.push(c.outputs.length);
      return result;
    };
    let open;
    const gate = new Promise((resolve) => (open = resolve));
    const got = [];
    const delivery = new LocalDelivery(
      async (output) => {
        await gate;
        got.push(output);
        delivered++;
      },
      limit,
      (error) => host.errors.push(error),
    );
    const host = new MemoryHost(new MemoryLog(store), delivery);
    try {
      await host.start();
      // The first slices' commits leave room short of a full batch: the next commit takes it.
      await turnsUntil(() => delivery.undelivered === limit, `the local queue full (${limit})`, passed);
      assert.equal(delivered, 0);
      assert.equal(committed, limit, 'committed while none was delivered');
      open();
      await turnsUntil(() => delivered === PARTITIONS * PER_PARTITION, 'every output delivered', passed);
      assert.ok(
        commits.every((n) => n <= limit),
        `commits of at most ${limit} outputs: ${commits}`,
      );
      // Each key's totals in order, each once.
      const byKey = new Map();
      for (const o of got) byKey.set(o.key, [...(byKey.get(o.key) ?? []), o.value]);
      for (const [key, ns] of sent) {
        let total = 0;
        assert.deepEqual(
          byKey.get(key),
          ns.map((n) => (total += n)),
          key,
        );
      }
      assert.deepEqual(host.errors, []);
    } finally {
      open();
      await host.close();
    }
  });
}
