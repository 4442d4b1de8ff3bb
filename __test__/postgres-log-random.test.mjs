// A randomized differential run of the log contract: seeded sequences of owner calls (appends, reads of new and
// pending entries, commits with outputs, checkpoints, acks, ends and serial retries, close markers, wake-ups, trims,
// hand-overs of the lease) on one partition, the same on the in-memory log and the Postgres one, each call's answer compared
// structurally (helpers/log-contract.mjs). Time plays no part: leases outlive the run and every wake-up is due.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memorySide, postgresSide, runContract } from './helpers/log-contract.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';
import { prng } from '../bench/prng.mjs';

usePostgres();

const KEYS = ['a', 'b', 'c'];

/** Sids in log order of their first entries (string order differs between the logs' ids), then by key. */
function bySidOrder(a, b) {
  const [ka, ia] = [
    a.slice(0, a.lastIndexOf('@')),
    a
      .slice(a.lastIndexOf('@') + 1)
      .split('-')
      .map(Number),
  ];
  const [kb, ib] = [
    b.slice(0, b.lastIndexOf('@')),
    b
      .slice(b.lastIndexOf('@') + 1)
      .split('-')
      .map(Number),
  ];
  return ia[0] - ib[0] || ia[1] - ib[1] || (ka < kb ? -1 : ka > kb ? 1 : 0);
}
const STEPS = 250;

/** The scenario of `seed`: every choice from the PRNG and from what the log answered (the same on both sides). */
const scenario = (seed) => async (side, call) => {
  const { log } = side;
  const rand = prng(seed);
  const pick = (list) => list[Math.floor(rand() * list.length)];
  const some = (list) => list.filter(() => rand() < 0.5);
  const state = [0, 1].map(() => ({ lease: null, pending: [], sids: [], seqs: new Map(), serial: 0, last: null }));
  for (const p of [0, 1]) state[p].lease = await call(`acquire ${p}`, log.acquire(p, 'w1', 600_000));
  for (let step = 0; step < STEPS; step++) {
    // One partition: the records name ids by first sight, and the two logs' ids of different partitions may
    // coincide on one side only (the in-memory clock stands still); the other partition is only looked at.
    const p = 0;
    const s = state[p];
    const r = rand();
    const label = `${step} p${p}`;
    if (r < 0.15) {
      const events = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => [pick(KEYS), Buffer.from(`{"n":${step}}`)]);
      const ids = await side.append(p, events);
      events.forEach(([key], i) => s.sids.push(`${key}@${ids[i]}`));
      await call(`${label} appended`, Promise.resolve(ids));
    } else if (r < 0.3) {
      const got = await call(`${label} read new`, log.read(s.lease, '>', 1 + Math.floor(rand() * 4)));
      for (const e of got.entries ?? []) s.pending.push(e.id);
    } else if (r < 0.37) {
      await call(`${label} replay`, log.read(s.lease, rand() < 0.5 || s.pending.length === 0 ? '0' : pick(s.pending), 3));
    } else if (r < 0.6) {
      const outputs = [];
      for (const sid of some(s.sids).slice(0, 3)) {
        const seq = rand() < 0.3 ? Math.max(1, s.seqs.get(sid) ?? 1) : (s.seqs.get(sid) ?? 0) + 1;
        s.seqs.set(sid, Math.max(seq, s.seqs.get(sid) ?? 0));
        outputs.push(
          rand() < 0.2 ? { sid, seq, key: sid[0], error: `{"m":${step}}` } : { sid, seq, key: sid[0], payload: `o${step}` },
        );
      }
      const checkpoints = some(s.sids.slice(-2)).map((sid) => ({
        sid,
        key: sid[0],
        seq: s.seqs.get(sid) ?? 0,
        lastTime: step,
        events: 1,
        state: `st${step}`,
      }));
      const acks = some(s.pending).slice(0, 3);
      s.pending = s.pending.filter((id) => !acks.includes(id));
      const ended = rand() < 0.25 && s.sids.length > 0 ? [pick(s.sids)] : [];
      for (const sid of ended) s.seqs.delete(sid);
      const check = rand() < 0.3;
      const retry = s.last !== null && rand() < 0.15;
      const commit = retry
        ? s.last
        : {
            outputs,
            checkpoints: [...new Map(checkpoints.map((c) => [c.sid, c])).values()],
            acks,
            ended,
            endedSeqs: ended.map(() => 0),
            check,
            serial: rand() < 0.8 ? ++s.serial : undefined,
            opened: some(s.sids)
              .slice(0, 1)
              .map((sid) => ({
                sid,
                version: pick(['', 'v1']),
                limits: { idleTimeout: 5, maxSessionAge: 0, maxSessionEvents: 0, maxSessionTimers: 10 },
              })),
            kept: ended.map((sid) => ({ key: sid[0], sid, state: `kept${step}` })),
            retention: 600_000,
          };
      s.last = commit;
      await call(`${label} commit${retry ? ' (retry)' : ''}`, log.commit(s.lease, commit));
    } else if (r < 0.66) {
      await call(
        `${label} mark`,
        log.markClose(s.lease, pick(KEYS), s.sids.length > 0 ? pick(s.sids) : '', rand() < 0.3 ? 'age' : undefined),
      );
    } else if (r < 0.74 && s.sids.length > 0) {
      const sid = pick(s.sids);
      await call(`${label} wake`, log.wake(s.lease, sid[0], sid, 1 + Math.floor(rand() * 3), 0, `w${step}`));
    } else if (r < 0.8) {
      await call(`${label} trim`, log.trim(s.lease));
    } else if (r < 0.85) {
      await call(
        `${label} snapshots`,
        log.snapshots(s.lease).then((l) => [...l].sort((x, y) => bySidOrder(x.sid, y.sid))),
      );
      await call(
        `${label} openings`,
        log.openings(s.lease).then((m) => [...m].sort(([x], [y]) => bySidOrder(x, y))),
      );
    } else if (r < 0.9) {
      await call(`${label} lag`, log.lag(p));
      await call(`${label} other partition`, log.lag(1));
      await call(`${label} entries`, log.entries(s.lease, some(s.pending).slice(0, 3)));
      await call(`${label} key state`, log.keyState(p, pick(KEYS)));
    } else if (r < 0.94) {
      const old = s.lease;
      await call(`${label} release`, log.release(s.lease));
      s.lease = await call(`${label} acquire`, log.acquire(p, pick(['w1', 'w2']), 600_000, ['v1']));
      if (!('token' in s.lease)) s.lease = await call(`${label} acquire any`, log.acquire(p, 'w3', 600_000, ['*']));
      s.last = null;
      await call(`${label} the old lease is fenced`, log.markClose(old, 'a', ''));
    }
  }
  await call('outputs', side.outputs(0));
};

/** What the runs went through, all seeds together (a run that never retried or diverged would prove less). */
const seen = { retries: 0, diverged: 0, written: 0, fenced: 0 };

for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
  test(`random owner calls, seed ${seed}: the Postgres log answers as the in-memory log does`, async (t) => {
    const record = await runContract([memorySide, postgresSide(pool)], scenario(seed));
    for (const [label, value] of record) {
      if (label.endsWith('(retry)')) seen.retries++;
      if (Array.isArray(value?.diverged)) seen.diverged += value.diverged.length;
      if (Array.isArray(value?.ids)) seen.written += value.ids.filter((id) => id !== null).length;
      if (value?.code === 'ERR_VELO_FENCED') seen.fenced++;
    }
    t.diagnostic(JSON.stringify(seen));
  });
}

test('the random runs retried commits, diverged, wrote outputs and were fenced', () => {
  assert.ok(seen.retries > 0 && seen.diverged > 0 && seen.written > 0 && seen.fenced > 0, JSON.stringify(seen));
});
