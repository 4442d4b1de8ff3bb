// The real worker on Postgres under faults, in child processes (examples/postgres-ledger.mjs in worker mode):
// kill -9 of owners mid-run, SIGSTOP of one past its lease (then SIGCONT), a graceful SIGTERM hand-off, workers
// joining. Sessions end by idle time between bursts and start again from their key's kept state. Then:
// - the ledger its `effects` wrote in the commit transactions has exactly one row per event, each balance the
//   running sum (effects exactly once per (sid, seq));
// - no (sid, seq) is in the output table twice;
// - a calm replay (one in-process worker, no fault) of the same input entries (same ids, so the same sids) makes the
//   same sessions and the same outputs.
// Every child is stopped by PID; its exit (code or SIGKILL) and a clean stderr are checked (helpers/child.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { sessionProducer, sessionWorker } from 'velo-stream/durable';
import { LEDGER_TABLE, checkLedger, ledger, shape } from '../examples/postgres-ledger.mjs';
import { start } from './helpers/child.mjs';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const EXAMPLE = fileURLToPath(new URL('../examples/postgres-ledger.mjs', import.meta.url));
const LEASE = 1500;
const S = 'velo_ledger_demo';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A worker child on the ledger (no trimming: the calm replay copies the input afterwards). */
function workerChild() {
  const args = [EXAMPLE, 'worker', JSON.stringify(postgres.config), 'ledger', String(LEASE), JSON.stringify({ trimInterval: 0 })];
  const child = start(args, { timeout: 120_000 });
  return child;
}

async function kill9(child) {
  process.kill(child.child.pid, 'SIGKILL');
  await assert.rejects(child.finished(), /SIGKILL/);
}

/**
 * SIGTERM: a graceful hand-off; exit 0, `closed` printed, and no error it recovered from but `allowed` ones (the
 * paused worker's: the server ended its sessions that were idle in a transaction past half a lease).
 */
async function handOff(child, allowed = null) {
  assert.ok(child.child.exitCode === null && child.child.signalCode === null, `exited early:\n${child.stdout}\n${child.stderr}`);
  process.kill(child.child.pid, 'SIGTERM');
  const { stdout } = await child.finished();
  const closed = stdout.split('\n').find((l) => l.startsWith('closed '));
  assert.ok(closed !== undefined, 'closed printed');
  assert.deepEqual(
    stdout.split('\n').filter((l) => l.startsWith('error ') && !allowed?.test(l)),
    [],
    'no error reported',
  );
  return JSON.parse(closed.slice(7));
}

/** The partitions a worker child said it owns last (`owned <p,...>`). */
function ownedBy(child) {
  const line = child.stdout.split('\n').findLast((l) => l.startsWith('owned '));
  return line === undefined || line === 'owned ' ? [] : line.slice(6).split(',').map(Number);
}

/** Polls `check` until it is true, or fails after `ms`. */
async function until(check, what, ms = 60_000) {
  const end = Date.now() + ms;

  while (!(await check())) {
    assert.ok(Date.now() < end, `${what}: not within ${ms} ms`);
    await sleep(100);
  }
}

/** The output table of function `fn`: `sid#seq` -> decoded value, failing on any (sid, seq) twice. */
async function outputsOf(fn) {
  const { rows } = await pool().query(`SELECT sid, oseq, field, data FROM ${S}.outputs WHERE fn = $1 ORDER BY p, ms, seq`, [fn]);
  const byId = new Map();
  for (const r of rows) {
    const id = `${r.sid}#${r.oseq}`;
    assert.ok(!byId.has(id), `${fn}: output ${id} written twice`);
    assert.equal(r.field, 'v', `${fn}: ${id} is a handler failure`);
    byId.set(id, JSON.parse(r.data.toString()));
  }
  return byId;
}

test('kill -9, SIGSTOP past the lease and hand-offs: every ledger row once, outputs once each and equal to a calm replay', async () => {
  await pool().query(LEDGER_TABLE);
  const children = [workerChild(), workerChild(), workerChild()];
  await Promise.all(children.map((c) => c.waitFor(/^ready$/m)));
  const producer = sessionProducer(shape(pool()));
  const sent = new Map();
  let n = 0;
  let resumed = null;
  for (let round = 0; round < 30; round++) {
    const batch = [];
    for (let a = 0; a < 40; a++) {
      const account = `acct-${a}`;
      const amount = ((n * 7919) % 201) - 100;
      sent.set(account, [...(sent.get(account) ?? []), amount]);
      batch.push([account, { n: n++, amount }]);
    }
    await producer.sendMany(batch);
    if (round === 5) {
      await kill9(children[0]);
      children.push(workerChild());
    }
    if (round === 12) {
      // Past its lease: the others take its partitions over; its writes on waking are fenced. (Worker 1 is paused:
      // the test waits until it owns partitions.)
      await until(() => ownedBy(children[1]).length > 0, 'worker 1 owns partitions', 10_000);
      const stopped = children[1];
      process.kill(stopped.child.pid, 'SIGSTOP');
      resumed = sleep(LEASE + 1000).then(() => process.kill(stopped.child.pid, 'SIGCONT'));
    }
    if (round === 18) {
      await handOff(children[2]);
      children.push(workerChild());
    }
    if (round === 24) {
      await kill9(children[3]);
      children.push(workerChild());
    }
    // Gaps past the idle time (400 ms): sessions end, and the next ones start from their key's kept state.
    await sleep(round % 10 === 9 ? 700 : 40);
  }
  await resumed;
  await until(async () => (await pool().query('SELECT count(*)::int AS c FROM ledger')).rows[0].c >= n, 'every ledger row');
  await until(
    async () => (await pool().query(`SELECT count(*)::int AS c FROM ${S}.pending WHERE fn = 'ledger'`)).rows[0].c === 0,
    'every session ended',
  );
  const { rows, events } = await checkLedger(pool(), sent);
  assert.equal(rows, n);
  assert.equal(events, n);
  const crashed = await outputsOf('ledger');
  assert.equal(crashed.size, n);
  const { rows: dup } = await pool().query('SELECT sid, seq FROM ledger GROUP BY sid, seq HAVING count(*) > 1');
  assert.deepEqual(dup, [], 'no (sid, seq) twice in the ledger');
  const paused = await handOff(
    children[1],
    /ERR_VELO_TRANSACTION_IDLE|connection error|idle-in-transaction|Connection terminated/,
  );
  assert.ok(paused.lost + paused.fenced > 0, `the paused worker lost its partitions (${JSON.stringify(paused)})`);
  for (const c of children.slice(4)) await handOff(c);

  // The calm replay: the same events (same entry ids) under another name, one worker, no fault.
  await pool().query(
    `INSERT INTO ${S}.entries (fn, p, ms, seq, key, payload, tp, ts)
     SELECT 'calm', p, ms, seq, key, payload, tp, ts FROM ${S}.entries WHERE fn = 'ledger' AND close IS NULL AND wake IS NULL`,
  );
  const errors = [];
  const calm = sessionWorker(ledger, {
    ...shape(pool(), 'calm'),
    keyState: { retention: 3_600_000 },
    onError: (e) => errors.push(e),
  });
  try {
    await until(async () => (await outputsOf('calm')).size >= n, 'the calm replay');
  } finally {
    await calm.close();
  }
  assert.deepEqual(errors, []);
  const replayed = await outputsOf('calm');
  const sessions = (outputs) => [...new Set([...outputs.keys()].map((id) => id.slice(0, id.indexOf('#'))))].sort();
  assert.deepEqual(sessions(replayed), sessions(crashed), 'the same sessions');
  assert.ok(sessions(crashed).length > 40 * 2, `sessions ended and started again (${sessions(crashed).length})`);
  assert.deepEqual(replayed, crashed, 'the same outputs');
});
