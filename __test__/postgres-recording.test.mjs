// Recordings on Postgres (docs/postgres.md#record-sessions-and-replay-them): sessions run by a real postgresWorker
// on a private postgres are read with postgresRecording, in the format of exportRecording, and the testing kit
// replays handlers over them: the recorded handler finds no difference, a changed output and a changed boundary are
// reported as exactly that, velo-replay runs a file of one; wake-ups and failures are recorded. The same input run
// on Redis gives the same recording but for its ids and the owner's ticks. The export is one snapshot, reads only,
// and refuses what Redis' refuses with the same codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { postgresProducer, postgresRecording, postgresWorker } from 'velo-stream/postgres';
import { exportRecording, redisProducer, redisWorker } from 'velo-stream/redis';
import { checkRecording, formatReplayReport, parseRecording, replayRecording } from 'velo-stream/testing';
import { migrate } from '../dist/postgres/log/schema.js';
import { streamFn } from '../index.mjs';
import handlers, { cart, changedOutput, longerIdle, returnsEarly } from './fixtures/replay-handlers.mjs';
import { start } from './helpers/child.mjs';
import { eventually, pendingCount } from './helpers/redis-fixtures.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';
import { client, useRedis } from './helpers/redis-suite.mjs';

usePostgres();
useRedis();

const CLI = fileURLToPath(new URL('../dist/replay-cli.js', import.meta.url));
const HANDLERS = fileURLToPath(new URL('./fixtures/replay-handlers.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'velo-pg-recording-'));
const SCHEMA = 'velo_rec';
const PARTITIONS = 2;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let names = 0;
const fresh = (what) => `${what}-${process.pid}-${++names}`;

/** The carts every backend is sent (as the Redis replay test sends them): names of the entries, batches. */
const FIRST = [
  [
    ['book', 'ada', { item: 'book', price: 10 }],
    ['gift', 'ada', { item: 'gift', price: 5 }],
    ['pen', 'ada', { item: 'pen', price: 2 }],
  ],
  [
    ['bobBook', 'bob', { item: 'book', price: 10 }],
    ['bobCheckout', 'bob', { checkout: true }],
    ['bobPen', 'bob', { item: 'pen', price: 2 }],
  ],
  [['hat', 'cy', { item: 'hat', price: 4 }]],
];
/** After ada's idleTimeout (300 ms): her next item opens a session of its own. */
const LATER = [[['cup', 'ada', { item: 'cup', price: 3 }]]];

/** Sends the carts with `sendMany` (a batch each), the second part after a pause; the ids by name. */
async function sendCarts(producer) {
  const ids = {};
  const send = async (batches) => {
    for (const batch of batches) {
      const got = await producer.sendMany(batch.map(([, key, value]) => [key, value]));
      batch.forEach(([name], i) => (ids[name] = got[i]));
    }
  };
  await send(FIRST);
  await sleep(800);
  await send(LATER);
  return ids;
}

const count = async (table, name) =>
  Number((await pool().query(`SELECT count(*)::int AS n FROM ${SCHEMA}.${table} WHERE fn = $1`, [name])).rows[0].n);

/** The sessions recorded once on Postgres and once on Redis, for every test of the file (on its first call). */
const recorded = { pg: null, redis: null };
let once;
const recorded$ = () => (once ??= recordPg().then(recordRedis));

async function recordPg() {
  const name = fresh('carts');
  const shared = { pool: pool(), schema: SCHEMA, name, partitions: PARTITIONS };
  const errors = [];
  const worker = postgresWorker(handlers, {
    ...shared,
    leaseTtl: 1500,
    trimInterval: 0,
    checkReplay: true,
    onError: (e) => errors.push(e),
  });
  let ids;
  try {
    ids = await sendCarts(postgresProducer(shared));
    await eventually(async () => (await count('ends', name)) === 5, 'the five sessions ended', 60_000);
    await eventually(async () => (await count('pending', name)) === 0, 'everything acked', 60_000);
  } finally {
    await worker.close();
  }
  assert.deepEqual(errors, []);
  recorded.pg = { name, shared, ids, recording: await postgresRecording(shared) };
}

async function recordRedis() {
  const name = fresh('carts');
  const worker = redisWorker(handlers, {
    client,
    name,
    partitions: PARTITIONS,
    leaseTtl: 1500,
    trimInterval: 0,
    checkReplay: true,
  });
  let ids;
  try {
    ids = await sendCarts(redisProducer({ client, name, partitions: PARTITIONS }));
    const ends = async () => {
      let n = 0;
      for (let p = 0; p < PARTITIONS; p++) n += await client.hLen(`velo:{${name}:p${p}}:ends`);
      return n;
    };
    await eventually(async () => (await ends()) === 5, 'the five sessions ended', 60_000);
    await eventually(async () => (await pendingCount(client, name, PARTITIONS)) === 0, 'everything acked', 60_000);
  } finally {
    await worker.close();
  }
  recorded.redis = { name, ids, recording: await exportRecording({ client, name, partitions: PARTITIONS }) };
}

/** Runs velo-replay; its exit status is asserted (`code`), and its stderr is clean. */
async function cli(args, { code = 0 } = {}) {
  const child = start([CLI, ...args], { code, timeout: 120_000 });
  const { stdout, stderr } = await child.finished();
  assert.equal(stderr, '', 'velo-replay wrote nothing on stderr');
  return stdout;
}

/**
 * The partition holding entry `id` of `key` (ada's book by default). Entry ids are a partition's own: two partitions
 * may give the same id (two sends in one ms), so the key tells them apart.
 */
const adaPart = (recording, ids, key = 'ada') =>
  recording.parts.find((p) => p.input.some((e) => e.id === ids.book && e.key === key)).partition;

test("a real postgresWorker's sessions, recorded: input, outputs, ends; replaying the recorded handler finds no difference", async () => {
  await recorded$();
  const { ids, recording, name } = recorded.pg;
  assert.deepEqual(checkRecording(recording), recording, 'a recording by the checks of the format');
  assert.equal(recording.name, name);
  assert.equal(recording.parts.length, PARTITIONS);
  const events = recording.parts.flatMap((p) => p.input.filter((e) => e.v !== undefined && e.wake === undefined));
  assert.deepEqual(events.map((e) => e.id).sort(), Object.values(ids).sort(), 'every event, with its entry id');
  const ada = recording.parts.find((p) => p.partition === adaPart(recording, ids));
  assert.deepEqual(JSON.parse(Buffer.from(ada.input.find((e) => e.id === ids.gift).v, 'base64')), { item: 'gift', price: 5 });
  const ends = recording.parts.flatMap((p) => p.ends).sort((a, b) => (a.sid < b.sid ? -1 : 1));
  assert.deepEqual(ends, [
    { sid: `ada@${ids.book}`, reason: 'idle', last: ids.pen },
    { sid: `ada@${ids.cup}`, reason: 'idle', last: ids.cup },
    { sid: `bob@${ids.bobBook}`, reason: 'return', last: ids.bobCheckout },
    { sid: `bob@${ids.bobPen}`, reason: 'idle', last: ids.bobPen },
    { sid: `cy@${ids.hat}`, reason: 'idle', last: ids.hat },
  ]);
  assert.ok(recording.parts.every((p) => p.endsKept && p.live.length === 0));
  assert.equal(recording.parts.flatMap((p) => p.outputs).length, 8);

  const report = await replayRecording(handlers, recording);
  assert.deepEqual(report.differences, []);
  assert.equal(report.ok, true);
  assert.deepEqual(report.summary, {
    partitions: 2,
    events: 8,
    sessions: 5,
    same: 5,
    open: 0,
    endsKept: 2,
    empty: 0,
    differences: 0,
  });
  assert.deepEqual(report.notReplayable, []);
  assert.deepEqual(report.unverified, []);
});

test('a handler changed to yield differently is reported: the output that differs, and a boundary moved', async () => {
  await recorded$();
  const { ids, recording } = recorded.pg;
  const p = adaPart(recording, ids);
  const changed = await replayRecording(changedOutput, recording);
  assert.equal(changed.ok, false);
  assert.deepEqual(changed.differences, [
    {
      kind: 'output',
      partition: p,
      key: 'ada',
      sid: `ada@${ids.book}`,
      seq: 2,
      recorded: { value: { item: 'gift', price: 5, count: 2 } },
      replayed: { value: { item: 'gift', price: 10, count: 2 } },
    },
  ]);
  const early = await replayRecording(returnsEarly, recording);
  assert.deepEqual(
    early.differences.map((d) => [d.kind, d.sid]),
    [
      ['missing-output', `ada@${ids.book}`],
      ['end', `ada@${ids.book}`],
      ['split', `ada@${ids.pen}`],
    ],
  );
});

/**
 * A recording with its ids replaced by their places, and without the owner's ticks: input ids by their index among
 * the partition's other entries, output ids by theirs in its outputs (in sids, markers, ends, `from` and `delivered`
 * too: `delivered` as the last entry at or before it). A tick (key and close empty) is written at the earliest
 * deadline of the sessions waiting, when the owner's timer fires: how many, and where, depends on the timing.
 */
function withoutIds(recording) {
  return recording.parts.map((part) => {
    const tick = (e) => e.key === '' && e.close === '';
    const entries = part.input.filter((e) => !tick(e));
    const places = new Map(entries.map((e, i) => [e.id, `in${i}`]));
    const id = (x) => places.get(x) ?? (x === '0-0' ? x : `not an entry id: ${x}`);
    const sid = (s) => `${s.slice(0, s.lastIndexOf('@'))}@${id(s.slice(s.lastIndexOf('@') + 1))}`;
    const upTo = part.input.slice(0, part.input.findIndex((e) => e.id === part.delivered) + 1).filter((e) => !tick(e));
    return {
      partition: part.partition,
      from: id(part.from),
      delivered: upTo.length === 0 ? part.delivered : id(upTo.at(-1).id),
      endsKept: part.endsKept,
      input: entries.map((e) => {
        const entry = { ...e, id: id(e.id) };
        if (e.close !== undefined && e.close !== '') entry.close = sid(e.close);
        if (e.wake !== undefined) entry.wake = `${sid(e.wake.split(' ')[0])} ${e.wake.split(' ')[1]}`;
        if (e.due !== undefined) entry.due = 'due';
        return entry;
      }),
      // (By session and seq: outputs of different sessions are in commit order, which each run times its own way.)
      outputs: part.outputs
        .map((o) => ({ ...o, id: 'out', sid: sid(o.sid) }))
        .sort((a, b) => (a.sid < b.sid ? -1 : a.sid > b.sid ? 1 : a.seq - b.seq)),
      ends: part.ends.map((e) => ({ ...e, sid: sid(e.sid), last: id(e.last) })).sort((a, b) => (a.sid < b.sid ? -1 : 1)),
      live: part.live.map(sid).sort(),
    };
  });
}

test("the same input on Redis and on Postgres: the same recording but for the ids (each server gives its own) and the owner's ticks", async () => {
  await recorded$();
  const { pg, redis } = recorded;
  // The ids: each server's clock at the append, so not the same; the events, markers, outputs, ends and live
  // sessions are. (Ticks are not compared: the owner writes them by its timers.)
  assert.notDeepEqual(Object.values(pg.ids), Object.values(redis.ids));
  assert.deepEqual(withoutIds(pg.recording), withoutIds(redis.recording));
  assert.deepEqual({ ...pg.recording, name: '', parts: [] }, { ...redis.recording, name: '', parts: [] });
  // So the replay says the same of both.
  const [a, b] = await Promise.all([
    replayRecording(changedOutput, pg.recording),
    replayRecording(changedOutput, redis.recording),
  ]);
  assert.deepEqual(a.summary, b.summary);
  assert.deepEqual(
    a.differences.map((d) => ({ ...d, sid: undefined })),
    b.differences.map((d) => ({ ...d, sid: undefined })),
  );
});

test('keys, since and only: what is recorded, as on Redis', async () => {
  await recorded$();
  const { shared, ids } = recorded.pg;
  const bob = await postgresRecording({ ...shared, keys: ['bob'] });
  assert.deepEqual(bob.keys, ['bob']);
  assert.equal(bob.parts.length, 1);
  assert.deepEqual(new Set(bob.parts[0].input.map((e) => e.key)), new Set(['bob']));
  assert.ok(bob.parts[0].outputs.length > 0 && bob.parts[0].outputs.every((o) => o.key === 'bob'));
  assert.equal((await replayRecording(returnsEarly, bob)).ok, true, "bob's carts end before a third item");

  const since = Number(ids.cup.split('-')[0]);
  const late = await postgresRecording({ ...shared, since });
  assert.equal(late.since, since);
  assert.deepEqual(
    late.parts.flatMap((part) => part.ends),
    [{ sid: `ada@${ids.cup}`, reason: 'idle', last: ids.cup }],
    'the ends of the sessions before it are left out',
  );
  const report = await replayRecording(handlers, late);
  assert.equal(report.ok, true);
  assert.equal(report.summary.sessions, 1, "only ada's second session began in it");
  assert.deepEqual(report.notReplayable, [], 'nothing of the sessions before it is in it');
  const p = adaPart(recorded.pg.recording, ids);
  const one = await postgresRecording({ ...shared, only: [p, p] });
  assert.deepEqual(
    one.parts,
    recorded.pg.recording.parts.filter((part) => part.partition === p),
  );
});

test('velo-replay runs a file of a Postgres recording: exit 0 with the recorded handler, 1 with a changed one', async () => {
  await recorded$();
  const file = join(dir, 'carts.json');
  writeFileSync(file, JSON.stringify(recorded.pg.recording));
  assert.deepEqual(
    parseRecording(JSON.stringify(recorded.pg.recording)),
    recorded.pg.recording,
    'a JSON round trip changes nothing',
  );
  const same = await cli(['run', '--handler', HANDLERS, '--recording', file]);
  assert.match(same, /^OK: 5 recorded sessions in 2 partitions replayed \(8 events\): 5 the same, 0 differences\n$/);
  const changed = JSON.parse(
    await cli(['run', '--handler', `${HANDLERS}#changedOutput`, '--recording', file, '--json'], { code: 1 }),
  );
  assert.deepEqual(
    changed.differences.map((d) => [d.kind, d.sid, d.seq]),
    [['output', `ada@${recorded.pg.ids.book}`, 2]],
  );
});

/**
 * A pool whose connections run `during` (once) right after the first statement of a transaction begun on them:
 * another connection's writes while a recording is being read.
 */
function poolWriting(during) {
  const base = pool();
  let done = false;
  return {
    query: (...args) => base.query(...args),
    async connect() {
      const c = await base.connect();
      const { query, release } = c;
      let begun = false;
      c.query = async (...args) => {
        const result = await query.apply(c, args);
        const text = typeof args[0] === 'string' ? args[0] : args[0].text;
        if (begun && !done) {
          done = true;
          await during();
        }
        if (/^BEGIN/.test(text)) begun = true;
        return result;
      };
      c.release = (...args) => {
        c.query = query;
        c.release = release;
        return release.apply(c, args);
      };
      return c;
    },
  };
}

test('one snapshot: what commits while the recording is read is not in it, not even in part', async () => {
  const name = fresh('snap');
  const shared = { pool: pool(), schema: SCHEMA, name, partitions: 1 };
  const producer = postgresProducer(shared);
  const [a, b] = await producer.sendMany([
    ['ada', { item: 'book', price: 1 }],
    ['ada', { item: 'pen', price: 2 }],
  ]);
  // As if a worker had read both.
  const moveCursor = (id) =>
    pool().query(`UPDATE ${SCHEMA}.cursors SET delivered_ms = $2, delivered_seq = $3 WHERE fn = $1 AND p = 0`, [
      name,
      ...id.split('-'),
    ]);
  await moveCursor(b);
  let c;
  const recording = await postgresRecording({
    ...shared,
    pool: poolWriting(async () => {
      // Committed by another connection after the recording's first read: an entry, and the worker reading it.
      c = await producer.send('ada', { item: 'cup', price: 3 });
      await moveCursor(c);
    }),
  });
  assert.ok(c !== undefined, 'the write ran while the recording was read');
  assert.equal(recording.parts[0].delivered, b, 'the read position as it was at the snapshot');
  assert.deepEqual(
    recording.parts[0].input.map((e) => e.id),
    [a, b],
  );
  const after = await postgresRecording(shared);
  assert.deepEqual(
    after.parts[0].input.map((e) => e.id),
    [a, b, c],
    'a recording made after it has it',
  );
});

test('a function or schema never made: every partition empty, as a function Redis never saw; nothing is made', async () => {
  const missing = await postgresRecording({ pool: pool(), schema: SCHEMA, name: fresh('nobody'), partitions: 3 });
  const empty = (partition) => ({
    partition,
    from: '0-0',
    delivered: '0-0',
    endsKept: false,
    input: [],
    outputs: [],
    ends: [],
    live: [],
  });
  assert.deepEqual(missing.parts, [empty(0), empty(1), empty(2)]);
  const onRedis = await exportRecording({ client, name: fresh('nobody'), partitions: 3 });
  assert.deepEqual(missing.parts, onRedis.parts, 'what Redis says of a function it never saw');
  assert.deepEqual(
    (await pool().query(`SELECT count(*)::int AS n FROM ${SCHEMA}.leases WHERE fn = $1`, [missing.name])).rows[0].n,
    0,
    'no partition row made',
  );

  const none = await postgresRecording({ pool: pool(), schema: 'velo_never_made', name: 'carts', partitions: 2, since: 5 });
  assert.deepEqual(
    none.parts,
    [0, 1].map((p) => ({ ...empty(p), from: '5-0' })),
  );
  assert.equal((await pool().query(`SELECT to_regnamespace('velo_never_made') AS s`)).rows[0].s, null, 'the schema is not made');
});

test('a schema of an older release is refused (ERR_VELO_SCHEMA_VERSION), not migrated', async () => {
  await migrate(pool(), 'velo_rec_old', 2);
  await assert.rejects(postgresRecording({ pool: pool(), schema: 'velo_rec_old', name: 'carts', partitions: 2 }), {
    code: 'ERR_VELO_SCHEMA_VERSION',
    message: /schema "velo_rec_old" is at version 2, older than this release reads/,
  });
  const { rows } = await pool().query('SELECT max(version) AS v FROM velo_rec_old.migrations');
  assert.equal(rows[0].v, 2);
});

test('bounds and options: too many entries or outputs are refused (ERR_VELO_RECORDING_TOO_LARGE), never cut; bad options with their codes', async () => {
  await recorded$();
  const { shared } = recorded.pg;
  await assert.rejects(postgresRecording({ ...shared, maxEntries: 2, maxOutputs: 1e9 }), {
    code: 'ERR_VELO_RECORDING_TOO_LARGE',
    message:
      /^postgresRecording\(\): partition \d has more than 2 (input entries|session ends|live sessions) to record \(maxEntries bounds a partition's input entries, session ends and live sessions, each\): record fewer \(keys, since, only\) or raise maxEntries$/,
  });
  await assert.rejects(postgresRecording({ ...shared, maxOutputs: 1 }), {
    code: 'ERR_VELO_RECORDING_TOO_LARGE',
    message:
      /partition \d has more than 1 outputs to record \(maxOutputs bounds a partition's outputs\): .* or raise maxOutputs$/,
  });
  // The same bounds on Redis, with the same code.
  await assert.rejects(exportRecording({ client, name: recorded.redis.name, partitions: PARTITIONS, maxOutputs: 1 }), {
    code: 'ERR_VELO_RECORDING_TOO_LARGE',
  });
  // With keys, the bounds count what is recorded (their rows only), on both backends.
  const cyPart = adaPart(recorded.pg.recording, { book: recorded.pg.ids.hat }, 'cy');
  const whole = recorded.pg.recording.parts.find((part) => part.partition === cyPart);
  assert.ok(whole.input.length > 1 && whole.ends.length > 1, "cy's partition holds other keys' entries and ends");
  const cy = await postgresRecording({ ...shared, keys: ['cy'], maxEntries: 1 });
  assert.deepEqual(
    cy.parts[0].input.map((e) => e.id),
    [recorded.pg.ids.hat],
  );
  if (
    !isDeepStrictEqual(
      cy.parts[0].ends,
      whole.ends.filter((e) => e.sid.startsWith('cy@')),
    )
  ) {
    // What the tables hold now, beside both reads: a row written after the fixture's recording shows here.
    const { rows } = await pool().query(`SELECT p, sid, value, ms FROM ${SCHEMA}.ends WHERE fn = $1 ORDER BY p, sid`, [
      shared.name,
    ]);
    const now = await postgresRecording(shared);
    assert.fail(`cy's ends differ: ${JSON.stringify({ keyed: cy.parts[0], whole, rows, now: now.parts })}`);
  }
  const cyRedis = await exportRecording({
    client,
    name: recorded.redis.name,
    partitions: PARTITIONS,
    keys: ['cy'],
    maxEntries: 1,
  });
  assert.deepEqual(
    cyRedis.parts[0].input.map((e) => e.id),
    [recorded.redis.ids.hat],
  );
  // A range past every entry, and the largest partition count.
  const far = await postgresRecording({ ...shared, since: Number.MAX_SAFE_INTEGER });
  assert.ok(far.parts.every((p) => p.input.length === 0 && p.outputs.length === 0 && p.from === `${Number.MAX_SAFE_INTEGER}-0`));
  const wide = await postgresRecording({ ...shared, partitions: 16384, only: [16383] });
  assert.deepEqual(
    wide.parts.map((p) => [p.partition, p.input.length]),
    [[16383, 0]],
  );
  const refused = [
    [{ since: -1 }, 'ERR_OUT_OF_RANGE'],
    [{ since: Number.MAX_SAFE_INTEGER + 2 }, 'ERR_OUT_OF_RANGE'],
    [{ maxEntries: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ only: [PARTITIONS] }, 'ERR_OUT_OF_RANGE'],
    [{ only: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ keys: 'ada' }, 'ERR_INVALID_ARG_TYPE'],
    [{ keys: [''] }, 'ERR_INVALID_ARG_VALUE'],
    [{ partitions: 16385 }, 'ERR_OUT_OF_RANGE'],
    [{ name: 'has space' }, 'ERR_INVALID_ARG_VALUE'],
    [{ schema: 'Bad' }, 'ERR_INVALID_ARG_VALUE'],
    [{ pool: {} }, 'ERR_INVALID_ARG_TYPE'],
    [{ client }, 'ERR_INVALID_ARG_VALUE'],
  ];
  for (const [change, code] of refused) {
    await assert.rejects(postgresRecording({ ...shared, ...change }), { code }, JSON.stringify(Object.keys(change)));
  }
});

test('trimmed entries: a session whose first entry a worker trimmed is not replayable, never guessed at', async () => {
  const name = fresh('trimmed');
  const shared = { pool: pool(), schema: SCHEMA, name, partitions: 1 };
  // A worker that trims its input as soon as it can (every 50 ms): to the oldest entry of a live session.
  const worker = postgresWorker(longerIdle, { ...shared, leaseTtl: 1500, trimInterval: 50, checkReplay: true });
  const producer = postgresProducer(shared);
  const entry = async (id) =>
    (await pool().query(`SELECT 1 FROM ${SCHEMA}.entries WHERE fn = $1 AND ms = $2 AND seq = $3`, [name, ...id.split('-')])).rows
      .length > 0;
  let book;
  let recording;
  try {
    // ada's cart begins, bob's begins (and stays open: idleTimeout 5 s), ada checks out (her session ends).
    book = await producer.send('ada', { item: 'book', price: 10 });
    await sleep(50);
    await producer.send('bob', { item: 'hat', price: 4 });
    await sleep(50);
    await producer.send('ada', { checkout: true });
    // The trim goes up to bob's first entry: ada's first goes, her checkout stays.
    await eventually(async () => !(await entry(book)), "ada's first entry trimmed", 60_000);
    recording = await postgresRecording(shared);
  } finally {
    await worker.close();
  }
  const part = recording.parts[0];
  assert.ok(!part.input.some((e) => e.id === book));
  assert.ok(
    part.outputs.some((o) => o.sid === `ada@${book}`),
    "ada's outputs written after the first entry kept are recorded",
  );
  const report = await replayRecording(longerIdle, recording);
  assert.equal(report.ok, true, formatReplayReport(report));
  assert.deepEqual(
    report.notReplayable.map((n) => [n.sid, n.why]),
    [[`ada@${book}`, 'trimmed']],
  );
});

/** Timers and failures: a cart that times out 200 ms after it opens, and one whose handler throws. */
const timed = (delay, late = true) =>
  streamFn(
    async function* timed(events, ctx) {
      for await (const e of events) {
        if (e.boom) throw Object.assign(new Error('boom'), { code: 'E_BOOM' });
        if (e.open) ctx.wakeAt(ctx.entry.time + delay, { timeout: true });
        else if (e.timeout) {
          yield { timedOut: late };
          return;
        }
      }
    },
    { idleTimeout: 5000 },
  );

test("wake-ups and a handler's failure: recorded as on Redis, and replayed the same", async () => {
  const pgName = fresh('timed');
  const shared = { pool: pool(), schema: SCHEMA, name: pgName, partitions: 1 };
  const pgWorker = postgresWorker(timed(200), { ...shared, leaseTtl: 1500, trimInterval: 0, checkReplay: true });
  try {
    await postgresProducer(shared).sendMany([
      ['t1', { open: true }],
      ['bad', { boom: true }],
    ]);
    await eventually(async () => (await count('ends', pgName)) === 2, 'both sessions ended', 60_000);
  } finally {
    await pgWorker.close();
  }
  const redisName = fresh('timed');
  const redisWorker_ = redisWorker(timed(200), {
    client,
    name: redisName,
    partitions: 1,
    leaseTtl: 1500,
    trimInterval: 0,
    checkReplay: true,
  });
  try {
    await redisProducer({ client, name: redisName, partitions: 1 }).sendMany([
      ['t1', { open: true }],
      ['bad', { boom: true }],
    ]);
    await eventually(
      async () => (await client.hLen(`velo:{${redisName}:p0}:ends`)) === 2,
      'both sessions ended on Redis',
      60_000,
    );
  } finally {
    await redisWorker_.close();
  }
  const recording = await postgresRecording(shared);
  const part = recording.parts[0];
  const wake = part.input.find((e) => e.wake !== undefined);
  assert.ok(wake !== undefined, 'the wake-up is recorded');
  const open = part.input.find((e) => e.key === 't1' && e.v !== undefined && e.wake === undefined);
  assert.equal(wake.wake, `t1@${open.id} 1`);
  assert.equal(wake.due, Number(open.id.split('-')[0]) + 200);
  assert.deepEqual(JSON.parse(Buffer.from(wake.v, 'base64')), { timeout: true });
  assert.deepEqual(
    part.outputs
      .map((o) => o.error ?? JSON.parse(Buffer.from(o.v, 'base64')))
      .sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)),
    [{ code: 'E_BOOM', message: 'boom', name: 'Error' }, { timedOut: true }],
  );
  const onRedis = await exportRecording({ client, name: redisName, partitions: 1 });
  assert.deepEqual(withoutIds(recording), withoutIds(onRedis));

  const same = await replayRecording(timed(200), recording);
  assert.equal(same.ok, true, formatReplayReport(same));
  assert.equal(same.summary.same, 2);
  // What the wake-up's session yields, changed: reported as that output.
  const changed = await replayRecording(timed(200, 'late'), recording);
  assert.deepEqual(
    changed.differences.map((d) => [d.kind, d.key, d.seq, d.replayed]),
    [['output', 't1', 1, { value: { timedOut: 'late' } }]],
  );
});

test('maxEntries on its boundary, the same on Postgres and Redis: each of input entries, session ends and live sessions up to it recorded, one more refused', async () => {
  await recorded$();
  const exports = {
    pg: (options) => postgresRecording({ ...recorded.pg.shared, ...options }),
    redis: (options) => exportRecording({ client, name: recorded.redis.name, partitions: PARTITIONS, ...options }),
  };
  for (const [backend, record] of Object.entries(exports)) {
    const full = backend === 'pg' ? recorded.pg.recording : recorded.redis.recording;
    for (const part of full.parts) {
      const only = [part.partition];
      // The checks' order: ends, live sessions, then the input (outputs have maxOutputs of their own).
      const counts = [
        ['session ends', part.ends.length],
        ['live sessions', part.live.length],
        ['input entries', part.input.length],
      ];
      const n = Math.max(...counts.map(([, c]) => c));
      assert.ok(n >= 1, `${backend}: partition ${part.partition} records something`);
      const at = await record({ only, maxEntries: n, maxOutputs: 1e9 });
      assert.deepEqual(at.parts, [part], `${backend}: exactly maxEntries (${n}) is recorded whole`);
      const over = counts.find(([, c]) => c > n - 1)[0];
      if (n > 1) {
        await assert.rejects(record({ only, maxEntries: n - 1, maxOutputs: 1e9 }), {
          code: 'ERR_VELO_RECORDING_TOO_LARGE',
          message: new RegExp(`partition ${part.partition} has more than ${n - 1} ${over} to record \\(maxEntries`),
        });
      }
    }
    // The ends of sessions before `since` are neither recorded nor counted: from a time past every entry, a
    // partition with two ends or more records nothing within maxEntries 1.
    const ends = full.parts.find((p) => p.ends.length > 1);
    assert.ok(ends !== undefined, `${backend}: a partition with two ends or more`);
    const none = await record({ only: [ends.partition], since: Number.MAX_SAFE_INTEGER, maxEntries: 1 });
    assert.deepEqual([none.parts[0].ends, none.parts[0].input], [[], []], `${backend}: nothing before since`);
    // Outputs: maxOutputs, on its boundary too.
    const outputs = Math.max(...full.parts.map((p) => p.outputs.length));
    await record({ maxOutputs: outputs });
    await assert.rejects(record({ maxOutputs: outputs - 1 }), {
      code: 'ERR_VELO_RECORDING_TOO_LARGE',
      message: new RegExp(`has more than ${outputs - 1} outputs to record \\(maxOutputs`),
    });
  }
});

test('the session ends bound, the same on Postgres and Redis: a partition with only ends (its input emptied by hand) records them up to maxEntries', async () => {
  await recorded$();
  // Ends of two sessions and no input: written as a worker with checkReplay writes them.
  const name = fresh('ends');
  const sids = ['ada@1000-0', 'bob@1001-0'];
  for (const sid of sids) {
    await pool().query(`INSERT INTO ${SCHEMA}.ends (fn, p, sid, value, ms) VALUES ($1, 0, $2, 'idle', $3)`, [
      name,
      sid,
      sid.split('@')[1].split('-')[0],
    ]);
  }
  await client.hSet(`velo:{${name}:p0}:ends`, Object.fromEntries(sids.map((sid) => [sid, 'idle'])));
  const exports = {
    pg: (options) => postgresRecording({ pool: pool(), schema: SCHEMA, name, partitions: 1, ...options }),
    redis: (options) => exportRecording({ client, name, partitions: 1, ...options }),
  };
  for (const [backend, record] of Object.entries(exports)) {
    const kept = await record({ maxEntries: 2 });
    assert.deepEqual(kept.parts[0].ends.map((e) => e.sid).sort(), sids, `${backend}: both ends recorded`);
    await assert.rejects(record({ maxEntries: 1 }), {
      code: 'ERR_VELO_RECORDING_TOO_LARGE',
      message: /partition 0 has more than 1 session ends to record/,
    });
    // From bob's session's first entry on: ada's end is left out, and not counted.
    const late = await record({ since: 1001, maxEntries: 1 });
    assert.deepEqual(
      late.parts[0].ends.map((e) => e.sid),
      ['bob@1001-0'],
      `${backend}: the end of the session that began before since is left out`,
    );
  }
});

test('since inside a session, the same on Postgres and Redis: its end is left out, what the recording holds of it is listed as not replayable; a session wholly before since leaves no trace', async () => {
  const handler = cart({ idleTimeout: 1000 });
  const run = async (backend) => {
    const name = fresh('since');
    const shared =
      backend === 'pg'
        ? { pool: pool(), schema: SCHEMA, name, partitions: PARTITIONS }
        : { client, name, partitions: PARTITIONS };
    const options = { ...shared, leaseTtl: 1500, trimInterval: 0, checkReplay: true };
    const worker = backend === 'pg' ? postgresWorker(handler, options) : redisWorker(handler, options);
    const producer = backend === 'pg' ? postgresProducer(shared) : redisProducer(shared);
    const ends = async () => {
      if (backend === 'pg') return count('ends', name);
      let n = 0;
      for (let p = 0; p < PARTITIONS; p++) n += await client.hLen(`velo:{${name}:p${p}}:ends`);
      return n;
    };
    let ids;
    try {
      // cy's session is wholly before `since`; ada's began before it (book) and went on past it (gift, within her
      // idle time); dan's began after it.
      const [hat, book] = await producer.sendMany([
        ['cy', { item: 'hat', price: 4 }],
        ['ada', { item: 'book', price: 10 }],
      ]);
      await sleep(100);
      const [gift] = await producer.sendMany([['ada', { item: 'gift', price: 5 }]]);
      const [pen] = await producer.sendMany([['dan', { item: 'pen', price: 2 }]]);
      ids = { hat, book, gift, pen };
      await eventually(async () => (await ends()) === 3, `${backend}: the three sessions ended`, 60_000);
    } finally {
      await worker.close();
    }
    const since = Number(ids.gift.split('-')[0]);
    const recording =
      backend === 'pg' ? await postgresRecording({ ...shared, since }) : await exportRecording({ ...shared, since });
    return { ids, recording, report: await replayRecording(handler, recording) };
  };
  for (const backend of ['pg', 'redis']) {
    const { ids, recording, report } = await run(backend);
    assert.deepEqual(
      recording.parts.flatMap((p) => p.ends.map((e) => e.sid)),
      [`dan@${ids.pen}`],
      `${backend}: only the end of the session that began after since`,
    );
    assert.equal(report.ok, true, formatReplayReport(report));
    assert.equal(report.summary.sessions, 1, `${backend}: dan's session compared`);
    const ada = recording.parts.find((p) => p.input.some((e) => e.id === ids.gift && e.key === 'ada')).partition;
    assert.deepEqual(
      report.notReplayable,
      [{ partition: ada, key: 'ada', sid: `ada@${ids.book}`, why: 'trimmed', events: 1, outputs: 1 }],
      `${backend}: ada's session, by its output after since; cy's not at all`,
    );
  }
});
