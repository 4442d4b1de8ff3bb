// The engine on the Postgres log, end to end: a minimal host (`PgHost`, as the simulator's process hosts
// `PartitionRun` over the in-memory log) runs the `totals` handler on a PgLog over a private postgres. Sessions end
// by their idle time (the run's ticks and close markers written into the input), each output is written once per
// (sid, seq), and a second host that takes the partitions over from a crashed one (its lease left to run out)
// replays the pending entries and finishes every session with the outputs a calm run makes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PartitionRun,
  PgLog,
  appendEventsPg,
  jsonCodec,
  newCounters,
  preparePg,
  realClock,
  RETRY_MS,
  StartGate,
  OpeningSlice,
} from '#testing';
import { totals } from './helpers/redis-fixtures.mjs';
import { fresh } from './helpers/redis-suite.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const SCHEMA = 'velo_engine';
const PARTITIONS = 2;
const IDLE = 300;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A worker in miniature: takes every free partition, renews its leases, runs a PartitionRun per partition. */
class PgHost {
  version = '';
  migrate = null;
  clock = realClock;
  readCount = 64;
  codec = jsonCodec;
  maxEventBytes = 1 << 20;
  maxSessionEvents = 0;
  maxSessionAge = 0;
  maxCheckpointBytes = 1 << 20;
  maxSessionTimers = 1000;
  checkReplay = true;
  delivery = null;
  permits = null;
  debounce = null;
  keyState = null;
  counters = newCounters();
  live = 0;
  clockOffset = 0;
  startGate = new StartGate(realClock);
  runs = new Map();
  errors = [];
  #idle = new Map();
  #timer = null;
  #stopped = false;

  constructor(id, log, fn, ttl) {
    this.id = id;
    this.log = log;
    this.fn = fn;
    this.ttl = ttl;
    this.openingSlice = new OpeningSlice(realClock, ttl);
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
    if (!this.#stopped) this.errors.push(error);
  }
  retryWait() {
    return new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
  lose(run) {
    if (this.runs.get(run.partition) !== run) return;
    this.runs.delete(run.partition);
    void run.drop();
  }
  idle(run, tail) {
    if (run.stopping) return Promise.resolve();
    const p = run.partition;
    return new Promise((resolve) => {
      this.#idle.set(p, resolve);
      void (async () => {
        while (this.#idle.get(p) === resolve) {
          const ready = await this.log.wait(new Map([[p, tail]]), 2000).catch((error) => {
            this.report(error);
            return [p];
          });
          if (ready.length > 0) this.wakeIdle(p);
        }
      })();
    });
  }
  wakeIdle(p) {
    const resolve = this.#idle.get(p);
    this.#idle.delete(p);
    resolve?.();
  }
  notifySessionEnded() {
    for (const run of this.runs.values()) run.slotsFreed();
  }

  /** Takes the free partitions and renews the held ones now and every ttl/3. */
  async balance() {
    if (this.#stopped) return;
    for (let p = 0; p < this.log.partitions; p++) {
      const run = this.runs.get(p);
      if (run !== undefined) {
        const sent = Date.now();
        const held = await this.log.renew(run.lease, this.ttl).catch((error) => (this.report(error), true));
        if (!held) this.lose(run);
        else run.validUntil = sent + this.ttl;
        continue;
      }
      const sent = Date.now();
      const lease = await this.log.acquire(p, this.id, this.ttl).catch((error) => (this.report(error), null));
      if (lease !== null && 'token' in lease && !this.#stopped) this.runs.set(p, new PartitionRun(this, lease, sent));
    }
    if (!this.#stopped) this.#timer = setTimeout(() => void this.balance(), Math.floor(this.ttl / 3));
  }

  /** kill -9 in miniature: no renewal, no write from now on (what it committed stays); its leases run out. */
  async crash() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const runs = [...this.runs.values()];
    this.runs.clear();
    await Promise.all(runs.map((run) => run.drop()));
    await this.log.close();
  }

  /** A graceful stop: every partition handed back (outputs committed, leases released). */
  async close() {
    clearTimeout(this.#timer);
    const runs = [...this.runs.values()];
    await Promise.all(runs.map((run) => run.release()));
    this.#stopped = true;
    this.runs.clear();
    await this.log.close();
  }
}

/** Sends `rounds` rounds of one event per key (key i to partition i % PARTITIONS), `gap` ms apart; `sent`: key -> ns. */
async function send(space, keys, rounds, gap, sent, from = 0) {
  for (let r = 0; r < rounds; r++) {
    for (let p = 0; p < PARTITIONS; p++) {
      const batch = [];
      for (let k = p; k < keys; k += PARTITIONS) {
        const n = from + r;
        sent.set(`k${k}`, [...(sent.get(`k${k}`) ?? []), n]);
        batch.push([`k${k}`, Buffer.from(JSON.stringify({ n }))]);
      }
      await appendEventsPg(pool(), space, p, batch);
    }
    await sleep(gap);
  }
}

/** Waits until every session ended and nothing is pending (or fails after `ms`); the outputs, by sid. */
async function settled(space, expected, ms = 30_000) {
  const S = space.S;
  const until = Date.now() + ms;
  for (;;) {
    const { rows } = await pool().query(
      `SELECT (SELECT count(*)::int FROM ${S}.outputs WHERE fn = $1) AS outputs,
              (SELECT count(*)::int FROM ${S}.pending WHERE fn = $1) AS pending,
              (SELECT count(*)::int FROM ${S}.marks WHERE fn = $1) AS marks`,
      [space.fn],
    );
    const { outputs, pending, marks } = rows[0];
    if (outputs >= expected && pending === 0 && marks === 0) break;
    assert.ok(Date.now() < until, `not settled: ${JSON.stringify(rows[0])} (expected ${expected} outputs)`);
    await sleep(50);
  }
  const { rows } = await pool().query(`SELECT sid, oseq, key, field, data FROM ${S}.outputs WHERE fn = $1 ORDER BY ms, seq`, [
    space.fn,
  ]);
  const bySid = new Map();
  for (const r of rows) {
    assert.equal(r.field, 'v', `no handler failure: ${r.data}`);
    bySid.set(r.sid, [...(bySid.get(r.sid) ?? []), { seq: Number(r.oseq), key: r.key, ...JSON.parse(r.data.toString()) }]);
  }
  return bySid;
}

/** Each session's outputs are seq 1..N once each, in order, with its running total; per key, the ns sent, in order. */
function checkOutputs(bySid, sent) {
  const byKey = new Map();
  for (const [sid, outs] of bySid) {
    let total = 0;
    outs.forEach((o, i) => {
      total += o.n;
      assert.deepEqual({ seq: o.seq, total: o.total, count: o.count }, { seq: i + 1, total, count: i + 1 }, `${sid}`);
    });
    const key = outs[0].key;
    byKey.set(key, [...(byKey.get(key) ?? []), ...outs.map((o) => o.n)]);
  }
  assert.deepEqual(new Map([...byKey].sort()), new Map([...sent].sort()), 'every event once, in order per key');
}

test('the engine on Postgres: sessions run, end by their idle time, and each output is written once', async () => {
  // PgLog.open: the schema migrated, the function's partitions made, the log opened, in one call.
  const name = fresh('calm');
  const log = await PgLog.open({ pool: pool(), schema: SCHEMA, name, partitions: PARTITIONS, pollInterval: 50 });
  const space = await preparePg(pool(), SCHEMA, name, PARTITIONS);
  const host = new PgHost('w1', log, totals({ idleTimeout: IDLE }), 3000);
  await host.balance();
  const sent = new Map();
  await send(space, 8, 5, 20, sent);
  const bySid = await settled(space, 40);
  checkOutputs(bySid, sent);
  assert.equal(bySid.size, 8, 'one session per key (no gap past the idle time)');
  await host.close();
  assert.deepEqual(host.errors, []);
  // Nothing of the sessions is left: checkpoints, openings, timers.
  for (const table of ['checkpoints', 'openings', 'timers', 'checks']) {
    const { rows } = await pool().query(`SELECT count(*)::int AS n FROM ${space.S}.${table} WHERE fn = $1`, [space.fn]);
    assert.equal(rows[0].n, 0, table);
  }
});

test('the engine on Postgres: a crashed owner leaves pending entries; a new owner replays them after its lease ran out', async () => {
  const space = await preparePg(pool(), SCHEMA, fresh('takeover'), PARTITIONS);
  const ttl = 600;
  const a = new PgHost('a', new PgLog(pool(), space, PARTITIONS, { pollInterval: 50 }), totals({ idleTimeout: 2000 }), ttl);
  await a.balance();
  const sent = new Map();
  await send(space, 6, 4, 20, sent);
  // Some outputs committed, then the crash: the sessions are open (idle 2 s), their entries pending.
  for (let tries = 0; ; tries++) {
    const { rows } = await pool().query(`SELECT count(*)::int AS n FROM ${space.S}.outputs WHERE fn = $1`, [space.fn]);
    if (rows[0].n >= 12) break;
    assert.ok(tries < 400, 'outputs before the crash');
    await sleep(25);
  }
  await a.crash();
  const { rows: pending } = await pool().query(`SELECT count(*)::int AS n FROM ${space.S}.pending WHERE fn = $1`, [space.fn]);
  assert.ok(pending[0].n > 0, 'entries left pending by the crash');
  await send(space, 6, 3, 20, sent, 100);
  const b = new PgHost('b', new PgLog(pool(), space, PARTITIONS, { pollInterval: 50 }), totals({ idleTimeout: 2000 }), ttl);
  const started = Date.now();
  // b takes each partition once a's lease ran out (its balance retries every ttl/3).
  await b.balance();
  const bySid = await settled(space, 42);
  checkOutputs(bySid, sent);
  assert.equal(bySid.size, 6, 'one session per key: the replay rebuilt each from its pending entries');
  assert.ok(b.runs.size === PARTITIONS, 'b owns every partition');
  assert.ok(b.counters.replayed > 0, 'b replayed the entries a left pending');
  assert.ok(Date.now() - started < 30_000);
  await b.close();
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});
