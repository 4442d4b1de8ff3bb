// The replay of a Postgres recording gives the handler the recorded entry ids too (the replay runs on the
// simulated log whatever the recording's source): the second key of a partition, sent with the first (one ms, ids
// `<ms>-1`), recorded alone (`keys`), replays the same handler with no difference; a changed one is caught.
import { test } from 'node:test';
import { postgresProducer, postgresRecording, postgresWorker } from 'velo-stream/postgres';
import { formatReplayReport, replayRecording } from 'velo-stream/testing';
import { checkBob, entryIds, replayOptions, sendPairs } from './fixtures/replay-entry-ids.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

test('Postgres: a recording of the second key of a partition (ids <ms>-1): the same handler replays the same, a changed one differs', async () => {
  const SCHEMA = 'velo_ids';
  const shared = { pool: pool(), schema: SCHEMA, name: `ids-${process.pid}`, partitions: 1 };
  const errors = [];
  const worker = postgresWorker(entryIds(), {
    ...shared,
    leaseTtl: 1500,
    trimInterval: 0,
    checkReplay: true,
    onError: (e) => errors.push(e),
    ...replayOptions,
  });
  let ids;
  try {
    ids = await sendPairs(postgresProducer(shared));
    const count = async (table) =>
      Number((await pool().query(`SELECT count(*)::int AS n FROM ${SCHEMA}.${table} WHERE fn = $1`, [shared.name])).rows[0].n);
    await eventually(async () => (await count('ends')) === 4 && (await count('pending')) === 0, 'the four sessions ended, all acked', 60_000);
  } finally {
    await worker.close();
  }
  const all = await postgresRecording(shared);
  const bob = await postgresRecording({ ...shared, keys: ['bob'] });
  await checkBob({ all, bob, ids, replayRecording, formatReplayReport });
});
