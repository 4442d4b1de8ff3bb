// Materializing outputs on Postgres (docs/postgres.md#materialize-outputs-into-a-table): a view table of each key's
// latest output written by `effects` in the commit's transaction, with no reader of its own. The documented program
// runs whole. Its upsert, in worker children, under a kill -9 mid-run and a restart: every output applied once, the
// view holding each key's newest output. Applied again (a backfill), forwards and then backwards, it changes nothing: an
// older output never rolls a newer one back. Every child is checked: its exit (code or SIGKILL), a clean stderr.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { postgresProducer } from 'velo-stream/postgres';
import { start } from './helpers/child.mjs';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const root = fileURLToPath(new URL('..', import.meta.url));
// Inside the repository, so that `velo-stream` resolves to this package (as docs-blocks.test.mjs does).
const dir = join(root, '__test__', '.doc-blocks');
const files = [];
after(() => files.forEach((file) => rmSync(file, { force: true })));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const PARTITIONS = 4;

/** The documented program: the code block under the section's heading. */
function documented() {
  const page = readFileSync(join(root, 'docs', 'postgres.md'), 'utf8');
  const section = page.slice(page.indexOf('## Materialize outputs into a table'));
  const open = section.indexOf('```js\n');
  return section.slice(open + 6, section.indexOf('\n```', open + 6));
}

function writeModule(name, code) {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `postgres-materialize-${process.pid}-${name}.mjs`);
  writeFileSync(file, code);
  files.push(file);
  return file;
}

const url = () => `postgres://${postgres.config.user}@${postgres.config.host}:${postgres.config.port}/${postgres.config.database}`;
const env = (extra = {}) => ({ ...process.env, DATABASE_URL: url(), ...extra });

/**
 * The documented table and upsert (`view`), and then `mode`: `worker` runs a worker whose effects are `view` and a
 * log of what it applied (until SIGTERM); `again` applies every stored output through `view` once more, forwards
 * and then backwards (a backfill over what the effects already wrote).
 */
function child() {
  const code = documented();
  const prefix = code.slice(0, code.indexOf('const spend'));
  assert.match(prefix, /async function view\(tx, outputs\)/, 'the documented view function');
  assert.match(prefix, /import \{[^}]*sessionWorker[^}]*\} from 'velo-stream\/durable'/, 'the documented imports');
  return writeModule(
    'child',
    `${prefix}
import { sessionOutputs } from 'velo-stream/durable';
const shared = { client: pool, name: process.env.FN, partitions: ${PARTITIONS} };
if (process.env.MODE === 'worker') {
  const carts = streamFn(async function* (events) {
    let count = 0;
    let total = 0;
    for await (const e of events) yield { count: ++count, total: (total += e.amount) };
  }, { idleTimeout: 300 });
  const worker = sessionWorker(carts, {
    ...shared,
    leaseTtl: 1500,
    onError: (error) => console.log('error', error.code ?? '', error.message),
    effects: async (tx, outputs) => {
      await view(tx, outputs);
      for (const o of outputs) await tx.query('INSERT INTO applied VALUES ($1, $2)', [o.sid, o.seq]);
    },
  });
  process.once('SIGTERM', async () => {
    await worker.close();
    await pool.end();
    console.log('closed');
  });
  console.log('ready');
} else {
  const all = [];
  const signal = AbortSignal.timeout(60_000);
  for await (const o of sessionOutputs({ ...shared, signal })) if (all.push(o) === Number(process.env.N)) break;
  await view(pool, all);
  await view(pool, [...all].reverse());
  await pool.end();
  console.log('again', all.length);
}
`,
  );
}

test('the documented program runs whole: the view holds each key\'s latest output', async () => {
  const file = writeModule('doc', documented());
  const { stdout } = await start([file], { env: env(), timeout: 120_000 }).finished();
  assert.match(stdout, /key: 'ada', count: 2, total: '12'/);
  assert.match(stdout, /key: 'bob', count: 1, total: '2'/);
});

test('kill -9 of a worker mid-run, then a restart: each output applied once, the view at each key\'s newest output; applied again it changes nothing', async () => {
  const file = child();
  const name = `carts-${process.pid}`;
  await pool().query('CREATE TABLE IF NOT EXISTS applied (sid text NOT NULL, seq int NOT NULL)');
  const worker = (mode = 'worker') => start([file], { env: env({ FN: name, MODE: mode }), timeout: 180_000 });
  const producer = postgresProducer({ pool: pool(), name, partitions: PARTITIONS });
  const applied = async () => Number((await pool().query('SELECT count(*)::int AS n FROM applied')).rows[0].n);
  const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
  const ROUNDS = 12;
  const round = (r) => producer.sendMany(keys.map((k) => [k, { amount: r }]));

  let first = worker();
  await first.waitFor(/^ready$/m);
  for (let r = 1; r <= 4; r++) await round(r);
  // Killed while it writes: some outputs applied, others not yet.
  for (let i = 0; (await applied()) === 0; i++) {
    assert.ok(i < 2400, 'the first worker applied outputs');
    await sleep(25);
  }
  process.kill(first.child.pid, 'SIGKILL');
  await assert.rejects(first.finished(), /SIGKILL/);
  first = null;
  for (let r = 5; r <= 8; r++) await round(r);
  const second = worker();
  await second.waitFor(/^ready$/m);
  // Past the idle time: every key's session ends, and the next rounds open new ones.
  await sleep(1000);
  for (let r = 9; r <= ROUNDS; r++) await round(r);
  const total = keys.length * ROUNDS;
  for (let i = 0; (await applied()) < total; i++) {
    assert.ok(i < 4800, `every output applied (${await applied()} of ${total})`);
    await sleep(25);
  }
  process.kill(second.child.pid, 'SIGTERM');
  const { stdout } = await second.finished();
  assert.match(stdout, /^closed$/m);
  assert.deepEqual(stdout.split('\n').filter((l) => l.startsWith('error ')), [], 'no error reported');

  const once = await pool().query('SELECT count(*)::int AS n, count(DISTINCT (sid, seq))::int AS d FROM applied');
  assert.deepEqual(once.rows[0], { n: total, d: total }, 'each output applied once, across the kill');
  // Each key's newest output, from the output table: its last session (by first entry), its last seq.
  const { rows: outputs } = await pool().query(`SELECT sid, oseq, key, data FROM velo_stream.outputs WHERE fn = $1`, [name]);
  assert.equal(outputs.length, total);
  const order = (o) => {
    const [ms, seq] = o.sid.slice(o.sid.lastIndexOf('@') + 1).split('-').map(BigInt);
    return [ms, seq, BigInt(o.oseq)];
  };
  const newer = (a, b) => {
    const [x, y] = [order(a), order(b)];
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] > y[i];
    return false;
  };
  const newest = new Map();
  for (const o of outputs) if (!newest.has(o.key) || newer(o, newest.get(o.key))) newest.set(o.key, o);
  const expected = keys.map((key) => {
    const o = newest.get(key);
    const value = JSON.parse(o.data.toString());
    const [ms, seq] = o.sid.slice(o.sid.lastIndexOf('@') + 1).split('-');
    return { key, count: value.count, total: String(value.total), session_ms: ms, session_seq: seq, seq: Number(o.oseq) };
  });
  const view = async () =>
    (await pool().query('SELECT key, count, total, session_ms, session_seq, seq FROM features WHERE key LIKE $1 ORDER BY key', ['k%']))
      .rows;
  const sorted = expected.sort((a, b) => (a.key < b.key ? -1 : 1));
  assert.deepEqual(await view(), sorted);
  const sessions = new Set(outputs.filter((o) => o.key === 'k0').map((o) => o.sid));
  assert.ok(sessions.size >= 2, 'a key\'s outputs of more than one session (the pause ended the first)');

  // Every output again, forwards then backwards: nothing older replaces anything newer.
  const again = await worker('again').finished();
  assert.match(again.stdout, new RegExp(`^again ${total}$`, 'm'));
  assert.deepEqual(await view(), sorted);
});
