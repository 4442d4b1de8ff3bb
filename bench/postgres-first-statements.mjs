// node bench/postgres-first-statements.mjs [connections] [rounds] [--effects]
//
// What a connection's first statements cost against its later ones: the time a worker's read and commit take on a
// connection whose server process has run neither before (its catalog caches empty, its statements not yet parsed
// or planned, `commit_9` not yet compiled), as a worker meets it when a burst spreads its statements over the pool's
// connections. On a private postgres (__test__/helpers, fsync off): one partition leased once; then, for each of
// `connections` (4) fresh connections in turn (a pool of one), `rounds` (100) rounds of two events appended (on
// another connection), the read of them and the commit of their two sessions' outputs (each opened: its opening
// written), timed from the call to its answer. Prints, per connection, the mean ms of the 1st, the 2nd, the 3rd to
// 5th, the 6th to 10th and the last 50 reads and commits. --effects: the commits run effects (one `SELECT 1`), as a
// transaction.
import { PgLog, appendEventsPg, preparePg } from '#testing';
import { startPostgres } from '../__test__/helpers/postgres-server.mjs';

const args = process.argv.slice(2);
const plain = args.filter((a) => !a.startsWith('--'));
const CONNECTIONS = Number(plain[0] ?? 4);
const ROUNDS = Math.max(60, Number(plain[1] ?? 100));
const effects = args.includes('--effects')
  ? async (tx) => {
      await tx.query('SELECT 1');
    }
  : undefined;
const limits = { idleTimeout: 500, maxSessionAge: 0, maxSessionEvents: 0, maxSessionTimers: 10 };

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const spans = (xs) =>
  [xs[0], xs[1], mean(xs.slice(2, 5)), mean(xs.slice(5, 10)), mean(xs.slice(-50))].map((x) => x.toFixed(2)).join(' / ');
const since = (t) => Number(process.hrtime.bigint() - t) / 1e6;

const server = await startPostgres();
try {
  const setup = server.pool({ max: 2 });
  const space = await preparePg(setup, 'velo', 'fn', 1);
  const owner = new PgLog(setup, space, 1, { listen: false });
  const lease = await owner.acquire(0, 'w1', 3_600_000);
  console.log(`${server.version}; ${CONNECTIONS} connections, ${ROUNDS} rounds each${effects ? ', commits with effects' : ''}`);
  console.log('ms: 1st / 2nd / 3rd-5th / 6th-10th / last 50');
  let n = 0;
  for (let c = 0; c < CONNECTIONS; c++) {
    const pool = server.pool({ max: 1 });
    const log = new PgLog(pool, space, 1, { listen: false, effects });
    const reads = [];
    const commits = [];
    for (let r = 0; r < ROUNDS; r++) {
      const keys = [`k${n++}`, `k${n++}`];
      const ids = await appendEventsPg(setup, space, 0, [
        [keys[0], '{"n":1}'],
        [keys[1], '{"n":2}'],
      ]);
      let t = process.hrtime.bigint();
      await log.read(lease, '>', 10);
      reads.push(since(t));
      const sids = ids.map((id, i) => `${keys[i]}@${id}`);
      t = process.hrtime.bigint();
      await log.commit(lease, {
        outputs: sids.map((sid, i) => ({ sid, seq: 1, key: keys[i], payload: '{"total":1}' })),
        opened: sids.map((sid) => ({ sid, version: '', limits })),
        acks: ids,
        ended: [],
        serial: n,
      });
      commits.push(since(t));
    }
    console.log(`connection ${c + 1}: read ${spans(reads)}   commit ${spans(commits)}`);
    await log.close();
    await pool.end();
  }
  await owner.close();
} finally {
  await server.stop();
}
