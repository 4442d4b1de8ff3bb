// A trace replay of simulator runs onto the Postgres log. A seed's run (js/durable/testing/simulator.ts, `record: true`)
// records every operation applied to the in-memory store, in order, with the store's virtual time, its arguments
// and its answer (js/durable/testing/recording-store.ts). `replayOnPostgres` applies the same operations in the same
// order to a real `PgLog` (one per simulated process, as each worker has its own), with the Postgres server's clock
// pinned to each operation's recorded time, and compares every answer. If every answer is the same, the engine on
// Postgres would have been given what it was given on the memory store, so it would have made the same calls: the
// simulated run on Postgres would have been the same run, and the seed passes on Postgres.
//
// The replay is serial: it proves that Postgres gives the memory store's answers to the simulator's schedules (the
// interleavings of processes, faults and time the seeds draw), one call at a time. Concurrency between
// transactions (two owners' statements at once, a grant waiting for a commit in flight) is not exercised here: the
// multi-process crash tests cover it (__test__/postgres-crash.test.mjs).
//
// But for one process's commits of one time: a run of consecutive `commit`s by one process at one virtual time, of
// distinct partitions, is applied as a worker's turn applies them, all asked for in one turn of the event loop, so
// that PgLog commits them in groups (commit-turn.ts: one statement, one transaction with each partition's effects).
// Each must still answer as the memory store did alone (a fenced one refused, the others committed). With
// `effects: true` every PgLog has effects that write a ledger row per output written, hostile inside a group (the
// first call for a commit throws, has its connection ended by the server, stalls, or ends the transaction unseen:
// `hostileLedger`): the group is rolled back and each commit applied alone, which must answer as memory did; at the
// end each partition's ledger must hold each output once.
//
// The clock: every time on the Postgres log comes from `clock_timestamp()` (NOW in js/postgres/log/sql.ts, inlined
// in the plpgsql functions of schema.ts and commit-one.ts), an unqualified name found through `search_path`, where
// pg_catalog comes first only if it is not named. The replay's pool (`pinnedPoolOptions`) runs its connections with
// `search_path = velo_simclock, pg_catalog, public`, and `velo_simclock.clock_timestamp()` (VOLATILE) reads the time
// from a one-row table the replay sets before each operation whose time moved: no product SQL changes. (Statements
// and plpgsql functions are planned on those connections, with that path from the start.) One replay at a time per
// database: the row is the database's.
//
// PgLog's two caches on the machine's clock (a pinned age `lag` read stands for the `pinned` right after it for
// 100 ms; the openings `snapshots` read stand for the `openings` of the same lease for 1 s) run on the recorded
// time during the replay (`performance.now()` is the operation's time): they apply as they would in a run of
// that time.
//
// The journal (`ctx.run`, `ctx.stream`): a commit's `journal` and `unjournal` are applied as any commit, the `journal`
// read of a takeover is compared, and at the end each partition's journal left is (empty once its sessions ended).
//
// Left out: `wait()` and `interrupt()` (wake-up hints: they change nothing, and the engine reads the log after
// either); the simulator's own looks at the store for its checks (recording-store.ts).
//
// The one operation that is not a PgLog call, `extendLeases` (the simulator moving over a quiet span, as if the
// processes had renewed meanwhile), is applied to the tables as the store applies it: every live lease and every
// registration (a run-out one not yet removed too) lasts `by` ms longer.
//
// Compared as they are, but for what the logs give in no order: the answers Redis gives from a hash scan or by
// name (`snapshots`, `openings`, `marks`, a heartbeat's `adverts`, `journal`) are compared as sets (sorted by sid,
// worker, or a journal record's sid and place);
// an object's property set to undefined is the property left out (the engine reads both as absent); Buffers by
// their bytes. Lease tokens are `<worker>:<epoch>` on both logs (the epoch one up at each grant of the partition),
// so they are compared as they are too: no token is mapped. Anything else that differs is a finding, but for two
// known differences of the Postgres log, each checked to be only that and counted apart: registrations that end
// with their worker's leases (`heartbeatNext`, `cappedGone`), and openings answered from an earlier read to an
// ex-owner (`staleOpenings`).
import { PgLog, appendEventsPg, endsPg, outputEntriesPg, preparePg } from '#testing';

/** The schema of the pinned clock. */
export const CLOCK_SCHEMA = 'velo_simclock';

/** A pg.Pool's options that pin its connections' clock to the replay's (see the file's comment). */
export const pinnedPoolOptions = { options: `-c search_path=${CLOCK_SCHEMA},pg_catalog,public` };

/** The server's now as the product reads it (sql.ts's NOW), through the pinned clock on a pinned pool. */
const NOW = `floor(extract(epoch from clock_timestamp()) * 1000)::bigint`;

/** Makes the pinned clock (its table and function) in the pool's database, if missing. */
export async function installClock(pool) {
  await pool.query(`CREATE SCHEMA IF NOT EXISTS ${CLOCK_SCHEMA}`);
  await pool.query(
    `CREATE TABLE IF NOT EXISTS ${CLOCK_SCHEMA}.now (one boolean PRIMARY KEY DEFAULT true CHECK (one), ms double precision NOT NULL)`,
  );
  await pool.query(`INSERT INTO ${CLOCK_SCHEMA}.now (ms) VALUES (0) ON CONFLICT DO NOTHING`);
  // (Milliseconds to microseconds exactly: an interval is a count of microseconds.)
  await pool.query(
    `CREATE OR REPLACE FUNCTION ${CLOCK_SCHEMA}.clock_timestamp() RETURNS timestamptz LANGUAGE sql VOLATILE
       AS $$ SELECT timestamptz 'epoch' + ms * interval '1 millisecond' FROM ${CLOCK_SCHEMA}.now $$`,
  );
}

/** Pins the clock to `ms` (virtual ms since the epoch). */
export async function setClock(pool, ms) {
  await pool.query(`UPDATE ${CLOCK_SCHEMA}.now SET ms = $1`, [ms]);
}

/** A Buffer as text when it is UTF-8, else base64. */
function bufferForm(b) {
  const text = b.toString('utf8');
  return Buffer.from(text).equals(b) ? `buf:${text}` : `buf64:${b.toString('base64')}`;
}

const byName = ([a], [b]) => (a < b ? -1 : a > b ? 1 : 0);

/** An answer's value as plain data to compare (see the file's comment for what is compared as a set). */
function form(value) {
  if (value === undefined) return '<none>';
  if (Buffer.isBuffer(value)) return bufferForm(value);
  // (The answers' Maps are by sid or worker id: openings, marks, a heartbeat's adverts.)
  if (value instanceof Map) return { map: [...value].map(([k, v]) => [form(k), form(v)]).sort(byName) };
  if (Array.isArray(value)) return value.map((v) => form(v));
  if (value instanceof Error) return { error: value.name, code: value.code, message: value.message };
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, form(v)])
        .sort(byName),
    );
  }
  return value;
}

/**
 * An answer (`{ ok, value }` or `{ ok: false, error }`) as compared: snapshots as a set by sid; a heartbeat without
 * its `next` (see `heartbeatNext`).
 */
function answerForm(call, answer) {
  if (!answer.ok) return { threw: form(answer.error instanceof Error ? answer.error : new Error(String(answer.error))) };
  if (call === 'snapshots') return { value: form([...answer.value].sort((a, b) => byName([a.sid], [b.sid]))) };
  if (call === 'journal') return { value: form(byPlace(answer.value)) };
  if (call === 'heartbeat') {
    const { next: _, ...rest } = answer.value;
    return { value: form(rest) };
  }
  return { value: form(answer.value) };
}

/**
 * A heartbeat's `next` (the other worker whose registration runs out first, and its time left), compared apart:
 * Postgres keeps a registration no longer than its worker's last lease (pg-log.ts, `heartbeat`: a dead worker is
 * seen gone once its leases run out), where Redis and the memory store keep it `ttl` from the heartbeat. So `next`
 * differs wherever a heartbeat came before its worker's renewals (the simulated process heartbeats after sending
 * its renewals, but skips a renewal still in flight): a known difference of the Postgres log, counted (`nextDiffers`),
 * not a finding. The simulated process reads only `live` and `adverts` (sim-process.ts, `#balanceShare`), which are
 * compared; where the cap has made a live worker gone on Postgres, the difference is counted apart (`cappedGone`).
 * (The real worker reads `next` for a wake-up's time: its timing on Postgres is not what a seed proves.)
 */
function heartbeatNext(answer) {
  return answer.ok ? JSON.stringify(form(answer.value.next)) : '';
}

/** Journal entries by sid, then their first record's place (a hash's fields, a table's rows, come in no order). */
function byPlace(entries) {
  const name = (e) => `${e.sid} ${e.records[0].at}`;
  return [...entries].sort((a, b) => byName([name(a)], [name(b)]));
}

/** A short form of an operation's arguments, for a report. */
export function describeArgs(args) {
  const text = JSON.stringify(form(args));
  return text.length > 600 ? `${text.slice(0, 600)}...` : text;
}

/** The tables of schema `schema` (velo-stream's, but `migrations`): emptied between replays. */
async function tablesOf(pool, schema) {
  const { rows } = await pool.query(
    `SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename <> 'migrations' ORDER BY tablename`,
    [schema],
  );
  return rows.map((r) => `${schema}.${r.tablename}`);
}

/**
 * Replays `record` (a `SimResult.record`) on a PgLog of function `name` in schema `schema` of `pool` (a pool made
 * with `pinnedPoolOptions`, its clock installed: `installClock`). Resolves `{ ops, difference }`: the operations
 * replayed, the first whose answer differed (null: none), `{ index, op, memory, postgres }` (the answers as
 * compared), or the outputs or ends at the end (`index` -1); `tally`: counts of what was replayed (`tallyOf`); `nextDiffers`, the heartbeats whose `next` differed
 * (see `heartbeatNext`), `capGone`, those that saw a live worker gone on Postgres (`cappedGone`), and
 * `staleOpenings`, openings answered from an earlier read to an ex-owner (`staleOpenings`). Stops at the first difference: what follows it is no
 * longer the run Postgres would have made. `clean` (default true): the schema's tables are emptied after.
 */
export async function replayOnPostgres(pool, record, { name, schema = 'velo_sim', clean = true, tally = {}, effects = false }) {
  const space = await preparePg(pool, schema, name, record.partitions);
  const ledger = effects ? await hostileLedger(pool, schema, space) : null;
  const logs = new Map();
  const logOf = (by) => {
    let log = logs.get(by);
    if (log === undefined)
      logs.set(by, (log = new PgLog(pool, space, record.partitions, { listen: false, effects: ledger?.effects })));
    return log;
  };
  // Each process's lease of each partition (its last grant, or the last lease it called with): the store takes only
  // the partition for `snapshots` and `openings`, a PgLog the lease (its openings cache is the lease's).
  const leases = new Map();
  const leaseOf = (by, partition) => ({ partition, token: leases.get(`${by} ${partition}`) ?? '' });
  const apply = async (op) => {
    const { call, args, by } = op;
    if (args[0] !== null && typeof args[0] === 'object' && typeof args[0].token === 'string')
      leases.set(`${by} ${args[0].partition}`, args[0].token);
    switch (call) {
      case 'append':
        return appendEventsPg(pool, space, args[0], args[1], args[2]);
      case 'extendLeases':
        // (Not a PgLog call: see the file's comment.)
        await pool.query(
          `UPDATE ${space.S}.leases SET until_ms = until_ms + $2 WHERE fn = $1 AND token IS NOT NULL AND until_ms >= ${NOW}`,
          [space.fn, args[0]],
        );
        await pool.query(`UPDATE ${space.S}.workers SET until_ms = until_ms + $2 WHERE fn = $1`, [space.fn, args[0]]);
        return undefined;
      case 'acquire': {
        const answer = await logOf(by).acquire(...args);
        if (answer.token !== undefined) leases.set(`${by} ${args[0]}`, answer.token);
        return answer;
      }
      case 'entries':
      case 'snapshots':
      case 'openings':
      case 'marks':
      case 'journal':
        // (The store takes a partition where a PgLog takes the lease.)
        return logOf(by)[call](leaseOf(by, args[0]), ...args.slice(1));
      default:
        return logOf(by)[call](...args);
    }
  };
  const realNow = Object.getOwnPropertyDescriptor(performance, 'now');
  let at = NaN;
  performance.now = () => at;
  let difference = null;
  let index = 0;
  let nextDiffers = 0;
  // Workers whose registration Postgres capped below memory's (`cappedGone`): worker -> its end on Postgres.
  const capped = new Map();
  let capGone = 0;
  let staleOpeningsCount = 0;
  try {
    let pinned = NaN;
    // The answers of a turn's commits applied together (`commitRun`), by op index.
    const early = new Map();
    for (; index < record.ops.length; index++) {
      const op = record.ops[index];
      if (op.at !== pinned) await setClock(pool, (pinned = op.at));
      at = op.at;
      if (!early.has(index)) {
        const run = commitRun(record.ops, index);
        if (run > 1) {
          const ops = record.ops.slice(index, index + run);
          ledger?.hostileIn(ops);
          // (Each `apply` calls PgLog.commit before its first await: all in this turn, as a worker's are.)
          const settled = await Promise.allSettled(ops.map((o) => apply(o)));
          ledger?.hostileIn([]);
          settled.forEach((r, i) =>
            early.set(index + i, r.status === 'fulfilled' ? { ok: true, value: r.value } : { ok: false, error: r.reason }),
          );
          tally['commits of one turn'] = (tally['commits of one turn'] ?? 0) + run;
          if (settled.some((r) => r.status === 'rejected'))
            tally['commits of one turn, one refused'] = (tally['commits of one turn, one refused'] ?? 0) + 1;
        }
      }
      let answer = early.get(index);
      early.delete(index);
      if (answer === undefined) {
        try {
          answer = { ok: true, value: await apply(op) };
        } catch (error) {
          answer = { ok: false, error };
        }
      }
      tallyOf(tally, op);
      const memory = answerForm(op.call, op.answer);
      const postgres = answerForm(op.call, answer);
      if (op.call === 'heartbeat' && answer.ok) {
        const known =
          JSON.stringify(memory) !== JSON.stringify(postgres) && cappedGone(op, op.answer.value, answer.value, capped);
        if (known) capGone++;
        else if (heartbeatNext(op.answer) !== heartbeatNext(answer)) nextDiffers++;
        const { rows } = await pool.query(`SELECT until_ms FROM ${space.S}.workers WHERE fn = $1 AND worker = $2`, [
          space.fn,
          args0(op),
        ]);
        const until = rows.length === 0 ? null : Number(rows[0].until_ms);
        // (An extending heartbeat, as the simulated process's: its registration is `ttl` from now in memory.)
        if (until !== null && op.args[2] !== false && until < op.at + op.args[1]) capped.set(args0(op), until);
        else capped.delete(args0(op));
        if (known || JSON.stringify(memory) === JSON.stringify(postgres)) continue;
      }
      if (JSON.stringify(memory) !== JSON.stringify(postgres)) {
        if (
          op.call === 'openings' &&
          (await staleOpenings(pool, space, record.partitions, op, leaseOf(op.by, op.args[0]), memory))
        ) {
          staleOpeningsCount++;
          continue;
        }
        difference = { index, op, memory, postgres };
        break;
      }
    }
    if (difference === null) {
      // What readers see at the end: each partition's outputs and kept ends, and the journal left (none once its
      // sessions ended).
      const reader = logOf('end');
      for (let p = 0; p < record.partitions && difference === null; p++) {
        const memory = { outputs: form(record.outputs[p]), ends: form(record.ends[p]), journal: form(record.journal[p]) };
        const outputs = await outputEntriesPg(pool, space, p);
        const postgres = {
          outputs: form(outputs),
          ends: form(await endsPg(pool, space, p)),
          journal: form(byPlace(await reader.journal({ partition: p, token: '' }))),
        };
        // (With effects: each output's ledger row once, and no other.)
        if (ledger !== null) {
          const written = outputs.map(([id]) => id.toString()).sort();
          const rows = await ledger.rows(p);
          if (JSON.stringify(written) !== JSON.stringify(rows)) {
            memory.ledger = written;
            postgres.ledger = rows;
          }
        }
        if (JSON.stringify(memory) !== JSON.stringify(postgres))
          difference = {
            index: -1,
            op: { call: `the outputs, ends and journal of p${p} at the end`, args: [], by: '', at },
            memory,
            postgres,
          };
      }
    }
  } finally {
    for (const [what, n] of Object.entries(ledger?.tally ?? {})) tally[what] = (tally[what] ?? 0) + n;
    if (realNow === undefined) delete performance.now;
    else Object.defineProperty(performance, 'now', realNow);
    await Promise.all([...logs.values()].map((log) => log.close()));
    if (clean) await pool.query(`TRUNCATE ${(await tablesOf(pool, schema)).join(', ')}`);
  }
  return { ops: index, difference, nextDiffers, capGone, staleOpenings: staleOpeningsCount };
}

/** Whether PgLog applies `commit` with the others of its turn (commit-one.ts, `inOne`), not in a transaction alone. */
const inOne = (commit) => commit.check !== true && !(commit.opened ?? []).some((o) => o.replaces !== undefined);

/** The most partitions one of PgLog's transactions commits (commit-turn.ts, `GROUP`). */
const GROUP = 4;

/**
 * How many ops from `index` on are commits of one process at one virtual time, of distinct partitions: those a
 * worker's turn would have asked for together (1: the op alone).
 */
function commitRun(ops, index) {
  const first = ops[index];
  if (first.call !== 'commit') return 1;
  const partitions = new Set();
  let j = index;
  while (
    j < ops.length &&
    ops[j].call === 'commit' &&
    ops[j].by === first.by &&
    ops[j].at === first.at &&
    !partitions.has(ops[j].args[0].partition)
  )
    partitions.add(ops[j++].args[0].partition);
  return j - index;
}

/**
 * A ledger table in `schema` (emptied with the replay's tables) and the effects that write it: a row per output
 * written, in the commit's transaction. Hostile inside a group of commits (`hostileIn`: the ops of the turn being
 * applied): the first call for a commit throws for a quarter of them (every other one by its connection ended by the
 * server), stalls for another, and for another ends the transaction by a statement the effects client does not read
 * as one (and begins another, or writes a row after it); the group is then rolled back and each commit applied alone,
 * where its effects succeed. A commit alone is never failed (memory
 * answered it as committed).
 */
async function hostileLedger(pool, schema, space) {
  await pool.query(`CREATE TABLE IF NOT EXISTS ${schema}.sim_ledger (fn text NOT NULL, p int NOT NULL, id text NOT NULL)`);
  // Partitions whose commit runs in a transaction shared with others this turn, and the commits whose effects ran.
  let grouped = new Set();
  const called = new Set();
  const tally = {};
  const add = (what) => (tally[what] = (tally[what] ?? 0) + 1);
  let calls = 0;
  let throws = 0;
  let ends = 0;
  return {
    tally,
    hostileIn(ops) {
      const partitions = ops
        .filter((o) => inOne(o.args[1]))
        .map((o) => o.args[0].partition)
        .sort((a, b) => a - b);
      grouped = new Set();
      for (let at = 0; at < partitions.length; at += GROUP) {
        const group = partitions.slice(at, at + GROUP);
        if (group.length > 1) for (const p of group) grouped.add(p);
      }
    },
    async effects(client, written) {
      // (One call per transaction: a group's partitions' outputs together. Only a group's first call, and none after
      // a throw in this turn: after a group's rollback each commit is applied alone, and must commit as it did in
      // memory.)
      const partitions = [...new Set(written.map((w) => w.partition))];
      const first = partitions.map((p) => {
        const w = written.find((o) => o.partition === p);
        return `${p} ${w.sid} ${w.seq}`;
      });
      if (partitions.some((p) => grouped.has(p)) && !called.has(first.join('|'))) {
        called.add(first.join('|'));
        const kind = calls++ % 4;
        if (kind === 2) {
          // A statement that ends the transaction (ROLLBACK AND CHAIN, or ROLLBACK and a ledger row after it), past
          // the effects client's reading (with standard_conforming_strings off, a backslash escapes a quote: the
          // client reads a string and a comment): the group fails as after a throw, and the row after the end is
          // not kept (the server's check after the text rolls it back).
          grouped = new Set();
          const end =
            ends++ % 2 === 0
              ? 'ROLLBACK AND CHAIN'
              : `ROLLBACK;INSERT INTO ${schema}.sim_ledger (fn, p, id) VALUES ('${space.fn}', ${partitions[0]}, 'after the end')`;
          add(
            ends % 2 === 1
              ? 'effects ended their transaction in a group'
              : 'effects ended their transaction in a group and wrote after',
          );
          await client.query('SET LOCAL standard_conforming_strings = off');
          await client.query(`SELECT '\\' -- ';${end};SELECT 1 AS x --'`);
          return;
        }
        if (kind === 0) {
          grouped = new Set();
          if (throws++ % 2 === 1) {
            // The server ends the transaction's connection under the effects (FATAL 57P01, as an administrator's
            // pg_terminate_backend): the group fails as after a throw, and each commit alone needs another connection.
            add("the server ended a group's connection in its effects");
            await client.query('SELECT pg_terminate_backend(pg_backend_pid())');
            throw new Error('the connection outlived its own termination');
          }
          add('effects threw in a group');
          throw new Error(`hostile effects of p${partitions.join(',p')}`);
        }
        if (kind === 1) {
          add('effects stalled in a group');
          await new Promise((resolve) => setTimeout(resolve, 3));
        }
      }
      await client.query(`INSERT INTO ${schema}.sim_ledger (fn, p, id) SELECT $1, unnest($2::integer[]), unnest($3::text[])`, [
        space.fn,
        written.map((w) => w.partition),
        written.map((w) => w.id),
      ]);
    },
    async rows(partition) {
      const { rows } = await pool.query(`SELECT id FROM ${schema}.sim_ledger WHERE fn = $1 AND p = $2 ORDER BY id`, [
        space.fn,
        partition,
      ]);
      return rows.map((r) => r.id).sort();
    },
  };
}

/**
 * Whether an `openings` answer differs only because PgLog answered it from the openings its `snapshots` read for
 * the same lease less than a second before (pg-log.ts, `#openingsRead`), to a process whose lease is gone by now:
 * a process paused between the two calls, another owner having written or ended openings meanwhile. Checked: the
 * lease is not live at the call, and the openings read afresh (a PgLog without that cache) are the memory store's.
 * A known difference of the Postgres log, counted (`staleOpenings`): only an ex-owner gets such an answer, and its
 * writes are fenced; the replay goes on.
 */
async function staleOpenings(pool, space, partitions, op, lease, memory) {
  const { rows } = await pool.query(
    `SELECT token = $3 AND until_ms >= ${NOW} AS live FROM ${space.S}.leases WHERE fn = $1 AND p = $2`,
    [space.fn, lease.partition, lease.token],
  );
  if (rows[0]?.live !== false) return false;
  const fresh = new PgLog(pool, space, partitions, { listen: false });
  try {
    const answer = { ok: true, value: await fresh.openings(lease) };
    return JSON.stringify(answerForm('openings', answer)) === JSON.stringify(memory);
  } finally {
    await fresh.close();
  }
}

const args0 = (op) => op.args[0];

/**
 * Counts what an operation exercised into `tally` (its call; a refusal; a commit's parts; a wake-up with an
 * opening; a heartbeat's advert): which parts of the log a set of seeds went through.
 */
function tallyOf(tally, op) {
  const add = (what) => (tally[what] = (tally[what] ?? 0) + 1);
  add(op.call);
  if (!op.answer.ok) add(`${op.call} threw ${op.answer.error?.code ?? op.answer.error?.name}`);
  if (op.call === 'commit') {
    const c = op.args[1];
    for (const part of ['outputs', 'acks', 'checkpoints', 'ended', 'kept', 'opened', 'journal', 'unjournal'])
      if ((c[part]?.length ?? 0) > 0) add(`commit with ${part}`);
    if (c.check === true) add('commit with check');
    if (op.answer.ok && op.answer.value.diverged.length > 0) add('commit diverged');
  }
  if (op.call === 'wake' && op.args.length > 6) add('wake with opening');
  if (op.call === 'wake' && op.answer.ok && typeof op.answer.value === 'number') add('wake not due');
  if (op.call === 'wake' && op.answer.ok && op.answer.value === '') add('wake already written');
  if (op.call === 'heartbeat' && op.args[3] !== undefined && op.args[3].version !== '') add('heartbeat with advert');
  if (op.call === 'acquire' && op.answer.ok && op.answer.value.refused !== undefined) add('acquire refused');
  if (op.call === 'keyState' && op.answer.ok && op.answer.value !== null) add('keyState found');
  if (op.call === 'journal' && op.answer.ok && op.answer.value.length > 0) add('journal found');
  if (op.call === 'read' && op.args[1] !== '>') add('read pending');
}

/**
 * Whether a heartbeat's answers differ only by workers Postgres has seen gone because it capped their registration
 * (`heartbeatNext`), still live in memory: each worker missing on Postgres was capped, its end on Postgres past, the
 * rest of the answers the same. Counted (`capGone`), and the replay goes on: the log's later answers to the same
 * calls must still be the same, though on Postgres the processes might have balanced otherwise from there.
 */
function cappedGone(op, memory, postgres, capped) {
  const missing = [...memory.adverts.keys()].filter((w) => !postgres.adverts.has(w));
  if (missing.length === 0 || [...postgres.adverts.keys()].some((w) => !memory.adverts.has(w))) return false;
  if (postgres.live !== memory.live - missing.length) return false;
  if (!missing.every((w) => capped.has(w) && capped.get(w) <= op.at)) return false;
  const without = new Map([...memory.adverts].filter(([w]) => !missing.includes(w)));
  return JSON.stringify(form(without)) === JSON.stringify(form(postgres.adverts));
}

/** A difference as lines to print: the run, the op's index, the call with its arguments, both answers. */
export function describeDifference(label, { index, op, memory, postgres }) {
  return [
    `${label}: op ${index} (t=${op.at}, ${op.by}) ${op.call}(${describeArgs(op.args).slice(1, -1)})`,
    `  memory:   ${JSON.stringify(memory)}`,
    `  postgres: ${JSON.stringify(postgres)}`,
  ].join('\n');
}

/**
 * Runs seed `seed` (runSeed of redis-sim.mjs, with `flags`) recording both runs, and replays each on Postgres
 * (counting what they exercised into `tally`, see `tallyOf`);
 * `{ seed, ok, simOk and problems (the simulator's own oracle), ops, nextDiffers, capGone, staleOpenings, differences }`
 * (`differences`: lines to print).
 */
export async function seedOnPostgres(pool, seed, { effects = false, ...flags } = {}, tally = {}) {
  const { runSeed } = await import('./redis-sim.mjs');
  const result = await runSeed(seed, { ...flags, record: true });
  const differences = [];
  let ops = 0;
  let nextDiffers = 0;
  let capGone = 0;
  let staleOpeningsCount = 0;
  for (const run of ['calm', 'faulty']) {
    const replay = await replayOnPostgres(pool, result.records[run], { name: `sim-${seed}-${run}`, tally, effects });
    ops += replay.ops;
    nextDiffers += replay.nextDiffers;
    capGone += replay.capGone;
    staleOpeningsCount += replay.staleOpenings;
    if (replay.difference !== null) differences.push(describeDifference(`seed ${seed} ${run} run`, replay.difference));
  }
  return {
    seed,
    ok: differences.length === 0,
    simOk: result.ok,
    problems: result.problems,
    ops,
    nextDiffers,
    capGone,
    staleOpenings: staleOpeningsCount,
    differences,
  };
}
