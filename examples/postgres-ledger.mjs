// A ledger on Postgres whose rows are written exactly once, with a crash in the middle.
//
// Deposits and withdrawals go into Postgres with `sessionProducer`; workers (child processes of this file) keep
// one session per account, holding its balance (checkpointed, and kept between sessions with `keyState`). Each
// session's outputs are committed with its acks and checkpoint in one transaction, and `effects` writes each
// output's ledger row into your own table `ledger` in that same transaction: a row exists if and only if its
// output was committed, and an output is committed once per (session, seq) across replays, crashes and
// takeovers. Halfway through, one worker is killed with SIGKILL and another starts: the ledger still ends with
// exactly one row per event, and every balance is the running sum of its account's events.
//
//   node examples/postgres-ledger.mjs                  # starts a private postgres (Debian package postgresql-15)
//   DATABASE_URL=postgres://... node examples/postgres-ledger.mjs   # uses yours (schema velo_ledger_demo, table ledger)
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { streamFn } from 'velo-stream';
import { sessionProducer, sessionWorker } from 'velo-stream/durable';

/** One account's session: its balance after each event (time and state from the log only: replays agree). */
export const ledger = streamFn(
  async function* ledger(events, ctx) {
    // The balance the account's last session ended with (`keyState`), or this session's last checkpoint.
    let { balance } = ctx.restored ?? { balance: 0 };
    for await (const e of events) {
      balance += e.amount;
      yield { n: e.n, amount: e.amount, balance };
      ctx.checkpoint({ balance });
    }
  },
  { idleTimeout: 400 },
);

/** The user's table. No unique constraint on purpose: a row written twice would show (add one in production). */
export const LEDGER_TABLE = `CREATE TABLE IF NOT EXISTS ledger (
  account text NOT NULL, n integer NOT NULL, amount integer NOT NULL, balance bigint NOT NULL, sid text NOT NULL,
  seq integer NOT NULL)`;

/** The effects: the outputs a commit writes become ledger rows, in the commit's transaction (one statement). */
export async function writeLedger(tx, outputs) {
  const rows = outputs.filter((o) => 'value' in o);
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO ledger (account, n, amount, balance, sid, seq)
     SELECT * FROM unnest($1::text[], $2::integer[], $3::integer[], $4::bigint[], $5::text[], $6::integer[])`,
    [
      rows.map((o) => o.key),
      rows.map((o) => o.value.n),
      rows.map((o) => o.value.amount),
      rows.map((o) => o.value.balance),
      rows.map((o) => o.sid),
      rows.map((o) => o.seq),
    ],
  );
}

/** The options every process of the ledger shares. */
export const shape = (pool, name = 'ledger') => ({ client: pool, schema: 'velo_ledger_demo', name, partitions: 8 });

/**
 * A worker process: `node postgres-ledger.mjs worker <pg config JSON> [name] [leaseTtl] [more options JSON]`. Prints `ready`, then
 * `owned <p,p,...>` when its partitions change and `error <code> <message>` for each error it recovers from; on SIGTERM hands its partitions over, prints
 * `closed <stats JSON>` and exits 0.
 */
async function workerProcess(config, name, leaseTtl, more) {
  const pool = new pg.Pool({ ...config, max: 12 });
  pool.on('error', () => {});
  const worker = sessionWorker(ledger, {
    ...shape(pool, name),
    leaseTtl,
    keyState: { retention: 3_600_000 },
    effects: writeLedger,
    onError: (error) => console.log(`error ${error?.code ?? ''} ${String(error?.message ?? error).split('\n')[0]}`),
    ...more,
  });
  // `owned <partitions>` whenever they change (a test picks a worker that owns some to pause).
  let owned = '';
  const watch = setInterval(() => {
    const now = worker.stats().owned.join(',');
    if (now !== owned) console.log(`owned ${(owned = now)}`);
  }, 100);
  process.once('SIGTERM', async () => {
    clearInterval(watch);
    await worker.close();
    const { owned, fenced, lost, acquired } = worker.stats();
    console.log(`closed ${JSON.stringify({ owned, fenced, lost, acquired })}`);
    await pool.end();
    process.exit(0);
  });
  console.log('ready');
}

/** Checks the ledger against what was sent: one row per event, balances the running sums. Throws if not. */
export async function checkLedger(pool, sent) {
  const { rows } = await pool.query('SELECT account, n, amount, balance FROM ledger ORDER BY account, n');
  const twice = await pool.query('SELECT account, n, count(*)::int AS c FROM ledger GROUP BY account, n HAVING count(*) > 1');
  if (twice.rows.length > 0) throw new Error(`rows written twice: ${JSON.stringify(twice.rows.slice(0, 5))}`);
  let total = 0;
  for (const [account, amounts] of sent) {
    const mine = rows.filter((r) => r.account === account);
    if (mine.length !== amounts.length) throw new Error(`${account}: ${mine.length} rows for ${amounts.length} events`);
    let balance = 0;
    mine.forEach((r, i) => {
      balance += amounts[i];
      if (r.amount !== amounts[i] || Number(r.balance) !== balance)
        throw new Error(`${account}, event ${r.n}: balance ${r.balance}, expected ${balance}`);
    });
    total += mine.length;
  }
  return { rows: rows.length, events: total };
}

/** A private postgres on a free 127.0.0.1 port (fsync off: a demo); stop() ends it by PID. */
async function privatePostgres() {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  const bin = (tool) => (versions.length > 0 ? join(root, versions[0], 'bin', tool) : tool);
  // postgres refuses to run as root: then it runs as the `postgres` user.
  const who =
    process.getuid?.() === 0
      ? {
          uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
          gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
        }
      : {};
  const dir = mkdtempSync(join(tmpdir(), 'velo-ledger-'));
  if (who.uid !== undefined) chownSync(dir, who.uid, who.gid);
  execFileSync(bin('initdb'), ['-D', join(dir, 'data'), '-U', 'velo', '-A', 'trust', '--no-sync'], { stdio: 'pipe', ...who });
  const port = await new Promise((resolve, reject) => {
    const probe = createServer().once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address();
      probe.close(() => resolve(free));
    });
  });
  const args = ['-D', join(dir, 'data'), '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'];
  const server = spawn(bin('postgres'), args, { stdio: 'ignore', ...who });
  const exited = new Promise((resolve) => server.once('exit', resolve));
  const config = { host: '127.0.0.1', port, user: 'velo', database: 'postgres' };
  for (let i = 0; ; i++) {
    const client = new pg.Client(config);
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      break;
    } catch (error) {
      if (i === 300) throw new Error(`postgres did not start: ${error.message}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    config,
    async stop() {
      process.kill(server.pid, 'SIGINT');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function main() {
  const own = process.env.DATABASE_URL ? null : await privatePostgres();
  const config = own?.config ?? { connectionString: process.env.DATABASE_URL };
  const pool = new pg.Pool(config);
  // An idle connection's error (the server restarting, or stopping at the end of this demo): the next query reports its own.
  pool.on('error', () => {});
  const children = [];
  const startWorker = () => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'worker', JSON.stringify(config)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.stdout
      .setEncoding('utf8')
      .on('data', (text) => process.stdout.write(text.replace(/^(?=.)/gm, `  [worker ${child.pid}] `)));
    children.push(child);
    return child;
  };
  try {
    await pool.query(LEDGER_TABLE);
    await pool.query('TRUNCATE ledger');
    await pool.query('DROP SCHEMA IF EXISTS velo_ledger_demo CASCADE');
    startWorker();
    startWorker();
    const producer = sessionProducer(shape(pool));
    const sent = new Map();
    let n = 0;
    for (let round = 0; round < 20; round++) {
      const batch = [];
      for (let a = 0; a < 50; a++) {
        const account = `acct-${a}`;
        const amount = ((n * 7919) % 201) - 100;
        sent.set(account, [...(sent.get(account) ?? []), amount]);
        batch.push([account, { n: n++, amount }]);
      }
      await producer.sendMany(batch);
      if (round === 8) {
        const victim = children[0];
        process.kill(victim.pid, 'SIGKILL');
        console.log(`killed worker ${victim.pid} with SIGKILL; starting another`);
        startWorker();
      }
      await sleep(50);
    }
    console.log(`sent ${n} events for ${sent.size} accounts`);
    for (let i = 0; ; i++) {
      const { rows } = await pool.query('SELECT count(*)::int AS c FROM ledger');
      if (rows[0].c >= n) break;
      if (i === 600) throw new Error(`only ${rows[0].c} of ${n} ledger rows after 60 s`);
      await sleep(100);
    }
    const { rows, events } = await checkLedger(pool, sent);
    console.log(`ledger rows ${rows} for ${events} events: each written once, every balance the running sum`);
  } finally {
    await Promise.all(
      children.map((child) =>
        child.exitCode !== null || child.signalCode !== null
          ? null
          : new Promise((resolve) => {
              child.once('exit', resolve);
              process.kill(child.pid, 'SIGTERM');
            }),
      ),
    );
    await pool.end();
    await own?.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === 'worker')
    await workerProcess(
      JSON.parse(process.argv[3]),
      process.argv[4] ?? 'ledger',
      Number(process.argv[5] ?? 3000),
      JSON.parse(process.argv[6] ?? '{}'),
    );
  else await main();
}
