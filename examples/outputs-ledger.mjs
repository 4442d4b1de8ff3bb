// A function's outputs into a Postgres ledger table, exactly once and in order per account, with the batches of
// `sessionOutputs` and a guarded position.
//
// The function runs on Redis (REDIS_URL set) or on Postgres (DATABASE_URL alone), as worker processes (child
// processes of this file). Two reader processes race to write the outputs into the table `demo_ledger` of
// DATABASE_URL: each writes a batch's rows and moves the stored position (`demo_ledger_position`) in one
// transaction, only if the position is still the one the batch was read after; the reader that loses re-reads from
// the stored position. Midway, one reader and one worker are killed with SIGKILL and replaced: the ledger still
// ends with one row per event, each account's rows in the order of its events.
//
//   DATABASE_URL=postgres://... node examples/outputs-ledger.mjs                          # the function on Postgres
//   DATABASE_URL=postgres://... REDIS_URL=redis://... node examples/outputs-ledger.mjs    # the function on Redis
//
// It drops and makes again its tables (demo_ledger, demo_ledger_position) and the function's data (the schema
// velo_ledger_outputs on Postgres; the keys velo:{ledger-demo...} on Redis, removed at the end).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createClient } from 'redis';
import { streamFn } from 'velo-stream';
import { sessionOutputs, sessionProducer, sessionWorker } from 'velo-stream/durable';

/** One account's session: its running balance after each event (no idle end: one session per account). */
export const account = streamFn(async function* account(events) {
  let balance = 0;
  for await (const e of events) yield { n: e.n, amount: e.amount, balance: (balance += e.amount) };
});

export const LEDGER = `CREATE TABLE IF NOT EXISTS demo_ledger (
  id bigserial PRIMARY KEY, account text NOT NULL, n integer NOT NULL, amount integer NOT NULL, balance bigint NOT NULL,
  sid text NOT NULL, seq integer NOT NULL)`;
export const POSITION = `CREATE TABLE IF NOT EXISTS demo_ledger_position (name text PRIMARY KEY, after jsonb NOT NULL)`;

/**
 * Writes one batch: the guard first (the stored position must still be the one the batch was read after, and
 * becomes the one after it), then its rows, in one transaction. False if another reader moved the position.
 */
export async function writeBatch(pool, name, batch) {
  const tx = await pool.connect();
  try {
    await tx.query('BEGIN');
    const moved = await tx.query('UPDATE demo_ledger_position SET after = $2 WHERE name = $1 AND after = $3::jsonb', [
      name,
      batch.to,
      batch.from,
    ]);
    if (moved.rowCount !== 1) {
      await tx.query('ROLLBACK');
      return false;
    }
    const rows = batch.outputs.filter((o) => 'value' in o);
    await tx.query(
      `INSERT INTO demo_ledger (account, n, amount, balance, sid, seq)
       SELECT a, n, amount, balance, sid, seq
       FROM unnest($1::text[], $2::integer[], $3::integer[], $4::bigint[], $5::text[], $6::integer[])
         WITH ORDINALITY AS r(a, n, amount, balance, sid, seq, i) ORDER BY i`,
      [
        rows.map((o) => o.key),
        rows.map((o) => o.value.n),
        rows.map((o) => o.value.amount),
        rows.map((o) => o.value.balance),
        rows.map((o) => o.sid),
        rows.map((o) => o.seq),
      ],
    );
    await tx.query('COMMIT');
    return true;
  } catch (error) {
    await tx.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    tx.release();
  }
}

/**
 * Reads the outputs into the ledger until `signal` aborts: from the stored position, in batches; when another reader
 * moved the position first, again from the stored one. `onBatch(written)` is told each batch's fate.
 */
export async function readIntoLedger(pool, shared, { signal, max = 1000, onBatch = () => {} } = {}) {
  while (!signal?.aborted) {
    const { rows } = await pool.query('SELECT after FROM demo_ledger_position WHERE name = $1', [shared.name]);
    for await (const batch of sessionOutputs({ ...shared, after: rows[0].after, signal }).batches({ max })) {
      const written = await writeBatch(pool, shared.name, batch);
      onBatch(written, batch);
      if (!written) break;
    }
  }
}

/** Checks the ledger: one row per event sent, each account's rows (by id) in the order of its events. Throws if not. */
export async function checkLedger(pool, sent) {
  const { rows } = await pool.query('SELECT account, n, amount, balance FROM demo_ledger ORDER BY id');
  const byAccount = new Map();
  for (const r of rows) byAccount.set(r.account, [...(byAccount.get(r.account) ?? []), r]);
  for (const [acct, events] of sent) {
    const mine = byAccount.get(acct) ?? [];
    if (mine.length !== events.length) throw new Error(`${acct}: ${mine.length} rows for ${events.length} events`);
    let balance = 0;
    events.forEach(({ n, amount }, i) => {
      balance += amount;
      const r = mine[i];
      if (r.n !== n || r.amount !== amount || Number(r.balance) !== balance)
        throw new Error(`${acct}: row ${i} is ${JSON.stringify(r)}, expected n ${n}, balance ${balance}`);
    });
  }
  if (rows.length !== [...sent.values()].reduce((a, e) => a + e.length, 0)) throw new Error(`${rows.length} rows: extra rows`);
  return rows.length;
}

/** The backend's client (REDIS_URL: a node-redis client; else a pg.Pool on DATABASE_URL) and the function's options. */
export async function backend(name = 'ledger-demo') {
  if (process.env.REDIS_URL) {
    const client = createClient({ url: process.env.REDIS_URL });
    client.on('error', () => {}); // reconnects are the client's business; commands report their own errors
    await client.connect();
    return { shared: { client, name, partitions: 8 }, close: () => client.close() };
  }
  const client = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  client.on('error', () => {});
  return { shared: { client, schema: 'velo_ledger_outputs', name, partitions: 8 }, close: () => client.end() };
}

/** A worker process: prints `ready`; on SIGTERM hands its partitions over, prints `closed` and exits 0. */
async function workerProcess(name) {
  const { shared, close } = await backend(name);
  const worker = sessionWorker(account, {
    ...shared,
    version: 'v1',
    leaseTtl: 1500,
    onError: (error) => console.log(`error ${error?.code ?? ''} ${String(error?.message ?? error).split('\n')[0]}`),
  });
  process.once('SIGTERM', async () => {
    await worker.close();
    await close();
    console.log('closed');
    process.exit(0);
  });
  console.log('ready');
}

/** A reader process: prints `ready`, then `written <n>` / `lost` per batch; on SIGTERM stops, prints `closed`, exits 0. */
async function readerProcess(name) {
  const { shared, close } = await backend(name);
  // A reader frozen mid-batch holds the position's row: the server ends its session after 10 s, and the other goes on.
  const pool = new pg.Pool({
    connectionString: process.env.DATABASE_URL,
    max: 2,
    options: '-c idle_in_transaction_session_timeout=10000',
  });
  pool.on('error', () => {});
  const ac = new AbortController();
  process.once('SIGTERM', () => ac.abort());
  console.log('ready');
  await readIntoLedger(pool, shared, {
    signal: ac.signal,
    onBatch: (written, batch) => console.log(written ? `written ${batch.outputs.length}` : 'lost'),
  });
  await pool.end();
  await close();
  console.log('closed');
}

/** Fresh tables, the position `{}` (every partition from its start), and no data of the function. */
export async function reset(pool, shared) {
  await pool.query(LEDGER);
  await pool.query(POSITION);
  await pool.query('TRUNCATE demo_ledger');
  await pool.query('DELETE FROM demo_ledger_position WHERE name = $1', [shared.name]);
  await pool.query(`INSERT INTO demo_ledger_position VALUES ($1, '{}')`, [shared.name]);
  if (shared.schema) await pool.query(`DROP SCHEMA IF EXISTS ${shared.schema} CASCADE`);
  else await removeKeys(shared);
}

/** Removes the function's keys from Redis. */
export async function removeKeys(shared) {
  for await (const keys of shared.client.scanIterator({ MATCH: `velo:{${shared.name}*`, COUNT: 500 }))
    if (keys.length) await shared.client.del(keys);
}

/** Events for `accounts` accounts, round by round: `[account, { n, amount }]`. */
export function round(r, accounts, sent) {
  return Array.from({ length: accounts }, (_, a) => {
    const n = r * accounts + a;
    const event = { n, amount: ((n * 7919) % 201) - 100 };
    sent.set(`acct-${a}`, [...(sent.get(`acct-${a}`) ?? []), event]);
    return [`acct-${a}`, event];
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  if (!process.env.DATABASE_URL) {
    console.error('Set DATABASE_URL (the ledger), and REDIS_URL to run the function on Redis.');
    process.exit(2);
  }
  const { shared, close } = await backend();
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  pool.on('error', () => {});
  const children = new Map();
  const exits = [];
  const child = (role) => {
    const label = `${role}-${[...children.keys()].filter((l) => l.startsWith(role)).length + 1}`;
    const c = spawn(process.execPath, [fileURLToPath(import.meta.url), role], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (text) => (out += text));
    c.ready = new Promise((resolve) => c.stdout.on('data', () => /^ready$/m.test(out) && resolve()));
    c.lines = () => out.split('\n');
    c.exited = new Promise((resolve) =>
      c.once('exit', (code, signal) => resolve(exits.push(`${label} ${signal ?? `exit ${code}`}`))),
    );
    children.set(label, c);
    return c;
  };
  try {
    await reset(pool, shared);
    const started = [child('worker'), child('worker'), child('reader'), child('reader')];
    await Promise.all(started.map((c) => c.ready));
    const producer = sessionProducer(shared);
    const sent = new Map();
    const rounds = 20;
    const accounts = 50;
    for (let r = 0; r < rounds; r++) {
      await producer.sendMany(round(r, accounts, sent));
      if (r === 6 || r === 12) {
        const role = r === 6 ? 'reader' : 'worker';
        const victim = children.get(`${role}-1`);
        process.kill(victim.pid, 'SIGKILL');
        await victim.exited;
        await child(role).ready;
        console.log(`killed ${role}-1 (pid ${victim.pid}) with SIGKILL after round ${r + 1}; ${role}-3 started`);
      }
      await sleep(50);
    }
    const events = rounds * accounts;
    for (let i = 0; ; i++) {
      const { rows } = await pool.query('SELECT count(*)::int AS c FROM demo_ledger');
      if (rows[0].c >= events) break;
      if (i === 600) throw new Error(`only ${rows[0].c} of ${events} ledger rows after 60 s`);
      await sleep(100);
    }
    // A reader that wrote a row twice would have done it by now.
    await sleep(300);
    const rows = await checkLedger(pool, sent);
    console.log(`function on ${shared.schema ? 'Postgres' : 'Redis'}, ${events} events for ${accounts} accounts`);
    console.log(`ledger rows ${rows} for ${events} events: each once, every account's in order: yes`);
    const lines = [...children.values()].flatMap((c) => c.lines());
    const lost = lines.filter((l) => l === 'lost').length;
    const written = lines.filter((l) => l.startsWith('written ')).length;
    console.log(`batches written ${written}, lost to the other reader (rolled back, read again) ${lost}`);
  } finally {
    for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await Promise.all([...children.values()].map((c) => c.exited));
    console.log(`shutdown ${exits.sort().join(', ')}`);
    if (!shared.schema) await removeKeys(shared);
    await pool.end();
    await close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === 'worker') await workerProcess(process.argv[3]);
  else if (process.argv[2] === 'reader') await readerProcess(process.argv[3]);
  else await main();
}
