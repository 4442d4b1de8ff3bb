// postgresLimiter against the independent model redisLimiter is held to, seeded random runs: three limiter objects
// of one name (three "processes") acquire, release and abort on three keys with concurrency 2. The model is the
// rule, stated without a store: per key, grants go to the acquires in the order they entered the line (first come
// first served across the processes), at most 2 held, and no acquire waits while its key has a free permit once the
// fleet is quiet (no lost wake-up: here a lost hint is made up by the waiter's poll). Checked after every step, with
// the holders and the line read from Postgres.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresLimiter } from 'velo-stream/postgres';
import { prng } from '../bench/prng.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();
/** Makes the schema (before the first count). */
async function migrated() {
  const l = postgresLimiter({ pool: pool(), name: 'migrate', concurrency: 1 });
  (await l.acquire(0)).release();
  await l.close();
}

const count = async (table, name, key, where = `true`) =>
  Number(
    (await pool().query(`SELECT count(*) AS n FROM velo_stream.${table} WHERE name = $1 AND key = $2 AND ${where}`, [name, key]))
      .rows[0].n,
  );
const heldIn = (name, key) => count(`lim_held`, name, key);
const lastTicket = async () =>
  (await pool().query('SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS last_value FROM velo_stream.lim_tickets')).rows[0]
    .last_value;
const ticketsAfter = (name, key, ticket) => count(`lim_line`, name, key, `ticket > ${BigInt(ticket)}`);

const C = 2;
const KEYS = ['a', 'b', 'c'];

async function quiet(check, what) {
  const until = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > until) assert.fail(`never quiet: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

for (const seed of [1, 2, 3]) {
  test(`seed ${seed}: grants per key in line order, never more than ${C} held, no waiter left while a permit is free`, async () => {
    await migrated();
    const random = prng(seed);
    const name = `model${seed}`;
    const procs = [0, 1, 2].map(() =>
      postgresLimiter({ pool: pool(), name, concurrency: C, key: (k) => k, leaseTtl: 30_000, pollInterval: 50 }),
    );
    // The model: per key, the acquires in the order they entered (those not yet granted), and what each got.
    const line = new Map(KEYS.map((k) => [k, []]));
    const held = new Map(KEYS.map((k) => [k, []]));
    const grants = new Map(KEYS.map((k) => [k, []]));
    let serial = 0;
    try {
      for (let step = 0; step < 80; step++) {
        const r = random();
        const key = KEYS[Math.floor(random() * KEYS.length)];
        if (r < 0.5) {
          const id = ++serial;
          const controller = new AbortController();
          const entry = { id, controller, permit: null, aborted: false };
          const proc = procs[Math.floor(random() * procs.length)];
          // (By ticket number, not by counting rows: an aborted waiter's cancel may still be on its way out.)
          const before = await lastTicket();
          entry.promise = proc.acquire(key, { signal: controller.signal }).then(
            (permit) => {
              entry.permit = permit;
              grants.get(key).push(id);
              line.get(key).splice(line.get(key).indexOf(entry), 1);
              held.get(key).push(entry);
            },
            (error) => {
              assert.ok(entry.aborted, `acquire ${id} failed: ${error}`);
            },
          );
          line.get(key).push(entry);
          // Wait until the acquire is in Postgres (granted or in line): the order it entered is the order of this step.
          await quiet(async () => entry.permit !== null || (await ticketsAfter(name, key, before)) > 0, `acquire ${id} entered`);
        } else if (r < 0.85) {
          const h = held.get(key);
          if (h.length === 0) continue;
          const [entry] = h.splice(Math.floor(random() * h.length), 1);
          entry.permit.release();
          assert.equal(await entry.permit.released(), true);
        } else {
          const waiting = line.get(key);
          if (waiting.length === 0) continue;
          const entry = waiting[Math.floor(random() * waiting.length)];
          entry.aborted = true;
          entry.controller.abort(new Error('aborted'));
          await entry.promise;
          const i = waiting.indexOf(entry);
          if (i >= 0) waiting.splice(i, 1);
          // Granted just before the abort: it holds a permit the model gives back now.
          if (entry.permit !== null) {
            held.get(key).splice(held.get(key).indexOf(entry), 1);
            entry.permit.release();
          }
        }
        // Quiet: for every key, either no one waits or every permit is held (work-conserving), in Postgres and here.
        await quiet(async () => {
          for (const k of KEYS) {
            const inDb = await heldIn(name, k);
            const waiting = line.get(k).filter((e) => !e.aborted).length;
            if (inDb !== held.get(k).length) return false;
            if (waiting > 0 && inDb < C) return false;
          }
          return true;
        }, `step ${step}`);
        for (const k of KEYS) assert.ok(held.get(k).length <= C, `key ${k}: ${held.get(k).length} held`);
      }
      // First come first served: each key's grants in the order its acquires entered (ids grow with entry).
      for (const k of KEYS) {
        const granted = grants.get(k);
        assert.deepEqual(
          granted,
          [...granted].sort((x, y) => x - y),
          `key ${k} granted out of line order: ${granted}`,
        );
      }
      assert.ok(
        KEYS.every((k) => grants.get(k).length > C),
        'every key had to wait (the run is not vacuous)',
      );
    } finally {
      for (const k of KEYS) {
        for (const e of line.get(k)) {
          e.aborted = true;
          e.controller.abort(new Error('end'));
          await e.promise;
        }
      }
      for (const k of KEYS) for (const e of held.get(k)) e.permit.release();
      for (const p of procs) await p.close();
    }
  });
}
