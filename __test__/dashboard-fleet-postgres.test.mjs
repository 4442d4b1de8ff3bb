// velo-stream/dashboard's fleet view on Postgres (`fleet: { client: pool }`), on a private postgres: the promises of
// the Redis fleet (dashboard-fleet.test.mjs) kept by the `dash_members` table. Two worker processes publish to one
// fleet, and this process reads it: each member's sample and the sums; a member that closes leaves at once, one
// killed -9 drops out `ttl` after its last publish by the SERVER's clock (a pinned clock moved past it, whatever the
// member's own clock says), and a read deletes expired rows. Rows written by something else are ignored (and
// forgotten), a pool that fails goes to onError and answers 502, a slow server skips publishes rather than queueing
// them, and schema version 6 (the table) keeps the workers version 5 kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { dashboard } from 'velo-stream/dashboard';
import { postgresProducer } from 'velo-stream/postgres';
import { streamFn } from '../index.mjs';
import { migrate } from '../dist/postgres/log/schema.js';
import { start } from './helpers/child.mjs';
import { fleetView, listen } from './helpers/dashboard-feed.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';
import { warningsOf } from './helpers/util.mjs';
import { postgres, pool, usePostgres } from './helpers/postgres-suite.mjs';
import { installClock, pinnedPoolOptions, setClock } from './helpers/sim-on-postgres.mjs';

usePostgres();

const MEMBER = fileURLToPath(new URL('./fixtures/dashboard-fleet-pg-member.mjs', import.meta.url));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let names = 0;
const fresh = (what) => `${what}-${process.pid}-${++names}`;

/** A member child: its JSON argument (see the fixture), exit code and clean stderr asserted by `finished()`. */
const member = (args) =>
  start([MEMBER, JSON.stringify({ config: postgres.config, interval: 100, ...args })], { timeout: 90_000 });

/** The fleet's rows in the default schema. */
const rowsOf = async (fleet, schema = 'velo_stream') =>
  (await pool().query(`SELECT id, until_ms, value FROM ${schema}.dash_members WHERE fleet = $1 ORDER BY id`, [fleet])).rows;

test('two worker processes in one fleet on Postgres: both members and their sums; a member that closes leaves, one killed -9 expires and its row is deleted', async () => {
  const name = fresh('fleetfn');
  const fleet = fresh('fleet');
  const partitions = 4;
  const schema = 'velo_fleet_workers';
  const members = ['member-a', 'member-b'].map((id) => member({ fleet, id, worker: { schema, name, partitions } }));
  await Promise.all(members.map((m) => m.waitFor(/^ready$/m)));
  const reader = dashboard({ fleet: { client: pool(), name: fleet, publish: false } });
  const { root: base, close } = await listen(reader);
  let killed = false;
  try {
    await eventually(
      async () => {
        const v = await fleetView(base);
        return (
          v.members.length === 2 &&
          v.redis[0]?.owned === partitions &&
          v.members.every((m) => m.sample.redis[0]?.owned.length > 0)
        );
      },
      'two members sharing every partition',
      60_000,
    );
    const keys = Array.from({ length: 16 }, (_, i) => `k${i}`);
    await postgresProducer({ pool: pool(), schema, name, partitions }).sendMany(keys.map((k, i) => [k, { n: i }]));
    const view = await eventually(
      async () => {
        const v = await fleetView(base);
        const r = v.redis[0];
        return v.members.length === 2 && r?.sessions === keys.length && r.owned === partitions && r.workers === 2 ? v : null;
      },
      'both members, every partition owned and every session live in the fleet view',
      60_000,
    );
    assert.equal(view.fleet, fleet);
    assert.deepEqual(
      view.members.map((m) => m.id),
      ['member-a', 'member-b'],
    );
    const own = view.members.map((m) => m.sample.redis[0]);
    assert.equal(own[0].sessions + own[1].sessions, keys.length);
    assert.equal(new Set([...own[0].owned, ...own[1].owned]).size, partitions);
    assert.equal(view.redis[0].name, name);
    // A Postgres worker's rows say so (and `redis`, their old name, holds the same).
    assert.equal(view.workers[0].backend, 'postgres');
    assert.deepEqual(view.redis, view.workers);
    for (const m of view.members) assert.equal(m.sample.workers[0].backend, 'postgres');
    const totalsFn = view.functions.find((f) => f.name === 'totals');
    assert.equal(totalsFn.members, 2);
    assert.equal(totalsFn.open, keys.length);

    // A member that closes leaves at once: its row is deleted.
    members[0].child.kill('SIGTERM');
    const { stdout } = await members[0].finished();
    assert.match(stdout, /^closed$/m);
    assert.doesNotMatch(stdout, /^error /m);
    assert.deepEqual(
      (await fleetView(base)).members.map((m) => m.id),
      ['member-b'],
    );
    assert.deepEqual(
      (await rowsOf(fleet)).map((r) => r.id),
      ['member-b'],
    );

    // One killed -9 publishes no more: its row expires (ttl: 3 intervals), it drops out, and a read deletes it.
    members[1].child.kill('SIGKILL');
    killed = true;
    await members[1].finished().catch((error) => assert.match(String(error), /killed by SIGKILL/));
    assert.doesNotMatch(members[1].stdout, /^error /m);
    await eventually(async () => (await fleetView(base)).members.length === 0, 'the killed member expired');
    await eventually(async () => (await fleetView(base), (await rowsOf(fleet)).length === 0), 'a read deleted the expired row');
  } finally {
    if (!killed) {
      for (const m of members) m.child.kill('SIGTERM');
      await Promise.allSettled(members.map((m) => m.finished()));
    }
    await reader.close();
    await close();
  }
});

test("expiry is the server's clock: a member whose own clock is a day behind is shown until ttl after its last publish by postgres' now(), not a moment longer", async () => {
  await installClock(pool());
  const pinned = postgres.pool({ max: 2, ...pinnedPoolOptions });
  const T = 1_900_000_000_000;
  await setClock(pinned, T);
  const fleet = fresh('fleet');
  const ttl = 60_000;
  const m = member({ fleet, id: 'skewed', ttl, pinned: true, skew: -86_400_000 });
  await m.waitFor(/^ready$/m);
  const reader = dashboard({ fleet: { client: pinned, name: fleet, publish: false } });
  const { root: base, close } = await listen(reader);
  let killed = false;
  try {
    const seen = await eventually(async () => (await fleetView(base)).members[0], 'the member, published');
    assert.equal(seen.id, 'skewed');
    assert.ok(seen.at < Date.now() - 86_000_000, `its sample's time is its own clock's: ${seen.at}`);
    // Stored with the server's time: the pinned now plus ttl, exactly.
    assert.deepEqual(
      (await rowsOf(fleet)).map((r) => [r.id, Number(r.until_ms)]),
      [['skewed', T + ttl]],
    );
    m.child.kill('SIGKILL');
    killed = true;
    await m.finished().catch((error) => assert.match(String(error), /killed by SIGKILL/));
    assert.doesNotMatch(m.stdout, /^error /m);
    await setClock(pinned, T + ttl - 1);
    assert.deepEqual(
      (await fleetView(base)).members.map((x) => x.id),
      ['skewed'],
      'still shown 1 ms before its ttl is out (server clock)',
    );
    await setClock(pinned, T + ttl);
    assert.deepEqual((await fleetView(base)).members, [], 'gone once the server clock reaches ttl after its last publish');
    await eventually(
      async () => (await fleetView(base), (await rowsOf(fleet)).length === 0),
      'the expired row deleted by a read',
    );
  } finally {
    if (!killed) {
      m.child.kill('SIGTERM');
      await m.finished();
    }
    await reader.close();
    await close();
  }
});

test('rows written by something else are ignored and forgotten, figures that are not numbers count 0, other fleets are not read; close() deletes the member', async () => {
  const fleet = fresh('fleet');
  const fn = streamFn(async function* echo(events) {
    for await (const e of events) yield e;
  });
  const dash = dashboard({ interval: 100, functions: [fn], fleet: { client: pool(), name: fleet, id: 'good' } });
  const { root: base, close } = await listen(dashboard({ fleet: { client: pool(), name: fleet, publish: false } }));
  try {
    await eventually(async () => (await rowsOf(fleet)).length === 1, 'the good member published');
    const odd = JSON.stringify({
      at: 1,
      sample: {
        functions: [{ name: 'echo', open: '9', completed: null, queueWaitP99Us: 'x' }, null, 7],
        redis: [{ name: 'r', lag: 'NaN', owned: ['a', 3, 3], version: 5, superseded: 'yes' }, 'w'],
      },
    });
    const live = `floor(extract(epoch from clock_timestamp()) * 1000)::bigint + 600000`;
    for (const [f, id, value, until] of [
      [fleet, 'bad-json', 'not json', live],
      [fleet, 'bad-null', 'null', live],
      [fleet, 'bad-at', '{"at":"x","sample":{"functions":[],"redis":[]}}', live],
      [fleet, 'bad-shape', '{"at":1,"sample":{"functions":{},"redis":[]}}', live],
      [fleet, 'odd', odd, live],
      [fleet, 'expired', '{"at":1,"sample":{"functions":[],"redis":[]}}', `${live} - 1200000`],
      [`${fleet}-other`, 'elsewhere', '{"at":1,"sample":{"functions":[],"redis":[]}}', live],
    ]) {
      await pool().query(`INSERT INTO velo_stream.dash_members (fleet, id, until_ms, value) VALUES ($1, $2, ${until}, $3)`, [
        f,
        id,
        value,
      ]);
    }
    const view = await fleetView(base);
    assert.deepEqual(
      view.members.map((m) => m.id),
      ['good', 'odd'],
    );
    const echo = view.functions.find((f) => f.name === 'echo');
    assert.equal(echo.members, 2);
    assert.equal(echo.open, 0, 'a string figure counts 0');
    assert.equal(echo.queueWaitP99Us, null);
    // A member of the release before sends its workers as `redis`, without their backend: read, backend null.
    assert.deepEqual(view.workers, [
      {
        name: 'r',
        backend: null,
        workers: 1,
        owned: 1,
        roundTripP99Ms: 0,
        versions: { '': 1 },
        superseded: 0,
        lag: 0,
        sessions: 0,
        held: 0,
        buffered: 0,
        waitingKeys: 0,
        replayed: 0,
        fenced: 0,
        lost: 0,
        errors: 0,
      },
    ]);
    // The unreadable rows and the expired one are deleted (by that read); the other fleet's row is not touched.
    await eventually(
      async () => (await rowsOf(fleet)).map((r) => r.id).join() === 'good,odd',
      'unreadable and expired rows deleted',
    );
    assert.equal((await rowsOf(`${fleet}-other`)).length, 1);
  } finally {
    await dash.close();
    await close();
  }
  assert.deepEqual(
    (await rowsOf(fleet)).map((r) => r.id),
    ['odd'],
    'close() deleted the member',
  );
});

test('a pool that fails: every publish and read goes to onError, the fleet route answers 502 naming Postgres, close() does not throw; a throw of onError is a warning', async () => {
  const errors = [];
  const refused = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }));
  const broken = { query: refused, connect: refused };
  const warnings = await warningsOf('ERR_VELO_ON_ERROR', async () => {
    const dash = dashboard({
      interval: 100,
      fleet: {
        client: broken,
        name: fresh('fleet'),
        onError: (error) => {
          errors.push(error);
          throw new Error('a throwing onError');
        },
      },
    });
    const { root: base, close } = await listen(dash);
    try {
      await eventually(() => errors.length >= 2, 'publishes failed, each reported');
      assert.ok(errors.every((e) => e.code === 'ECONNREFUSED'));
      const res = await fetch(`${base}fleet`);
      assert.equal(res.status, 502);
      assert.equal(await res.text(), 'The fleet could not be read from Postgres\n');
    } finally {
      await close();
    }
    const before = errors.length;
    await dash.close();
    assert.ok(errors.length > before, 'the failed leave is reported');
  });
  assert.equal(warnings.length, errors.length);
  assert.ok(warnings.every((w, i) => w.reported === errors[i] && w.cause.message === 'a throwing onError'));
});

/** A pool whose publishes (the fleet's upserts) wait for `release()`; `upserts()` counts them. */
function heldUpserts() {
  const held = postgres.pool({ max: 4 });
  let upserts = 0;
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const query = held.query.bind(held);
  held.query = async (config) => {
    if (typeof config === 'object' && /INSERT INTO "velo_stream"\.dash_members/.test(config.text)) {
      upserts++;
      await gate;
    }
    return query(config);
  };
  return { held, upserts: () => upserts, release: () => release() };
}

test('one publish at a time: while the server holds one, later samples are skipped, not queued; publishing resumes after', async () => {
  const { held, upserts, release } = heldUpserts();
  const fleet = fresh('fleet');
  const dash = dashboard({ interval: 100, fleet: { client: held, name: fleet, id: 'slow', onError: (e) => assert.fail(e) } });
  try {
    await eventually(() => upserts() === 1, 'the first publish under way');
    // Many intervals: each sample finds the publish under way and is skipped.
    await sleep(1000);
    assert.equal(upserts(), 1, 'no second publish while the first is under way');
    release();
    await eventually(() => upserts() >= 3, 'publishing resumed');
    await eventually(async () => (await rowsOf(fleet)).length === 1, 'the sample stored');
  } finally {
    release();
    await dash.close();
  }
});

test('close() waits for a publish under way, then deletes the member: no row is left behind it, no report after it', async () => {
  const { held, upserts, release } = heldUpserts();
  const fleet = fresh('fleet');
  let closed = false;
  const late = [];
  const dash = dashboard({
    interval: 100,
    fleet: { client: held, name: fleet, id: 'leaving', ttl: 10_000, onError: (e) => (closed ? late : []).push(e) },
  });
  try {
    await eventually(() => upserts() === 1, 'the first publish under way');
    let resolved = false;
    const closing = dash.close().then(() => (resolved = true));
    await sleep(300);
    assert.equal(resolved, false, 'close() waits for the publish under way');
    release();
    await closing;
    closed = true;
    assert.deepEqual(await rowsOf(fleet), [], 'the member deleted after its last publish');
    await held.end();
    await sleep(300);
    assert.deepEqual(late, []);
  } finally {
    release();
  }
});

test('close() with a publish that never settles (a connection the pool cannot open) resolves within the fleet ttl; the publish is abandoned: no call and no report after it', async () => {
  const { held, upserts, release } = heldUpserts();
  const dash = dashboard({ interval: 100, fleet: { client: held, name: fresh('fleet'), id: 'stuck', ttl: 500 } });
  const warnings = await warningsOf('*', async () => {
    try {
      await eventually(() => upserts() === 1, 'the first publish under way');
      // (Never released before close() resolves: without the bound, this test times out.)
      await dash.close();
    } finally {
      // The publish goes on to a pool that has ended: its failure is not reported, and no leave is sent.
      release();
      await held.end();
    }
    await sleep(300);
  });
  assert.deepEqual(
    warnings.map((w) => w.message),
    [],
  );
});

test('the fleet options on Postgres: schema checked and used; schema refused with Redis; a client of neither kind refused', async () => {
  const client = pool();
  assert.throws(() => dashboard({ fleet: { client, schema: 'Bad-Name' } }), { code: 'ERR_INVALID_ARG_VALUE', message: /schema/ });
  assert.throws(() => dashboard({ fleet: { client, schema: 'public' } }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => dashboard({ fleet: { client, schema: 1 } }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => dashboard({ fleet: { client: { sendCommand: async () => null }, schema: 'x' } }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /fleet\.schema/,
  });
  assert.throws(() => dashboard({ fleet: { client: { query() {} } } }), { code: 'ERR_INVALID_ARG_TYPE', message: /pg\.Pool/ });
  // A single connection (a pg.Client) is refused as everywhere on Postgres; names Postgres text cannot hold too.
  const single = new pg.Client(postgres.config);
  assert.throws(() => dashboard({ fleet: { client: single } }), { code: 'ERR_VELO_NOT_A_POOL' });
  for (const bad of ['a\u0000b', 'a\u0007b']) {
    assert.throws(() => dashboard({ fleet: { client, name: bad } }), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: /control characters/,
    });
    assert.throws(() => dashboard({ fleet: { client, id: bad } }), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: /control characters/,
    });
  }
  assert.throws(() => dashboard({ fleet: { client, nam: 'x' } }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /Known options: client, name, schema, id, publish, ttl, onError/,
  });
  const fleet = fresh('fleet');
  const dash = dashboard({ interval: 100, fleet: { client, schema: 'velo_fleet_own', name: fleet, id: 'here' } });
  const { root: base, close } = await listen(
    dashboard({ fleet: { client, schema: 'velo_fleet_own', name: fleet, publish: false } }),
  );
  try {
    await eventually(async () => (await fleetView(base)).members.length === 1, 'the member, in its schema');
    assert.equal((await rowsOf(fleet, 'velo_fleet_own')).length, 1);
    const other = await pool().query(`SELECT to_regclass('velo_stream.dash_members') IS NULL AS none`);
    if (!other.rows[0].none) assert.equal((await rowsOf(fleet)).length, 0, 'nothing in the default schema');
  } finally {
    await dash.close();
    await close();
  }
});

test('schema version 6 (dash_members) keeps the workers version 5 kept: applied while a version 5 worker is registered; its only index is its key, and a publish is a HOT update', async () => {
  const schema = 'velo_v5';
  await migrate(pool(), schema, 5);
  await pool().query(`INSERT INTO ${schema}.leases (fn, p) VALUES ('f', 0), ('f', 1)`);
  await pool().query(`INSERT INTO ${schema}.workers (fn, worker, until_ms, advert) VALUES ('f', 'v5-1', $1, '')`, [
    Date.now() + 60_000,
  ]);
  assert.equal(await migrate(pool(), schema, 6), 6);
  const { rows } = await pool().query(`SELECT version, keeps FROM ${schema}.migrations WHERE version = 6`);
  assert.deepEqual(rows, [{ version: 6, keeps: 3 }]);
  for (const [p, version] of [
    [0, 5],
    [1, 3],
  ]) {
    const grant = await pool().query(`SELECT o_kind FROM ${schema}.acquire_4('f', $1, 'old', 1000, ARRAY['*'], false, $2)`, [
      p,
      version,
    ]);
    assert.equal(grant.rows[0].o_kind, 'granted', `a version ${version} worker`);
  }
  const indexes = await pool().query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'dash_members'`, [
    schema,
  ]);
  assert.deepEqual(
    indexes.rows.map((r) => r.indexname),
    ['dash_members_pkey'],
  );
  const fleet = fresh('fleet');
  const dash = dashboard({ interval: 100, fleet: { client: pool(), schema, name: fleet, id: 'hot' } });
  try {
    await eventually(async () => {
      const s = await pool().query(
        `SELECT n_tup_upd::int AS upd, n_tup_hot_upd::int AS hot FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'dash_members'`,
        [schema],
      );
      return s.rows[0]?.hot >= 3;
    }, 'publishes counted as HOT updates');
  } finally {
    await dash.close();
  }
});
