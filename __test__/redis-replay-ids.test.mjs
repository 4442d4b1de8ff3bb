// A replay gives the handler the recorded entry ids (docs/redis/replay-api.md): each recorded event goes into the
// simulated log at its recorded id, so `ctx.entry` and the sids (in a cap's failure message too) are the recorded
// run's, also in a recording of some keys, where the keys left out leave gaps in the ids. Two keys of one
// partition sent together share a ms: the second key's ids are `<ms>-1`; its recording alone replays the same
// handler with no difference, and a changed handler is still caught. The replay's own wake-ups and markers come
// after the recorded events of their ms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exportRecording, redisProducer, redisWorker } from 'velo-stream/redis';
import { formatReplayReport, replayRecording } from 'velo-stream/testing';
import { checkBob, entryIds, replayOptions, sendPairs } from './fixtures/replay-entry-ids.mjs';
import { eventually, pendingCount } from './helpers/redis-fixtures.mjs';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';

useRedis();

test('a recording of the second key of a partition (ids <ms>-1): the same handler replays the same, a changed one differs', async () => {
  // A pair's two XADDs reach Redis together and get one ms, unless its clock ticks between them (a loaded machine):
  // then the run is made again under a new name (the premise, not the behaviour under test).
  for (let attempt = 1; ; attempt++) {
    const name = fresh('ids');
    const shared = { client, name, partitions: 1 };
    const worker = redisWorker(entryIds(), { ...shared, leaseTtl: 1500, trimInterval: 0, checkReplay: true, ...replayOptions });
    let ids;
    try {
      ids = await sendPairs(redisProducer(shared));
      // Each key: a session capped after 3 inputs (2 events, the timer), then one of events 3 and 4.
      await eventually(
        async () => (await client.hLen(`velo:{${name}:p0}:ends`)) === 4 && (await pendingCount(client, name, 1)) === 0,
        'the four sessions ended, everything acked',
      );
    } finally {
      await worker.close();
    }
    if (attempt < 5 && ids.some(([ada, bob]) => ada.split('-')[0] !== bob.split('-')[0])) continue;
    const all = await exportRecording(shared);
    const bob = await exportRecording({ ...shared, keys: ['bob'] });
    await checkBob({ all, bob, ids, replayRecording, formatReplayReport });
    return;
  }
});

test('ids with gaps (a hand-made recording): each event is replayed at its recorded id; an event at 0-0 (no log gives it) is refused', async () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64');
  const recording = (ids) => ({
    format: 'velo-stream-recording',
    version: 1,
    name: 'gaps',
    partitions: 1,
    parts: [
      {
        partition: 0,
        from: '0-0',
        delivered: ids.at(-1),
        endsKept: true,
        input: ids.map((id, i) => ({ id, key: 'bob', v: b64({ n: i + 1 }) })),
        outputs: ids.map((id, i) => ({
          id: `9000-${i}`,
          sid: `bob@${ids[0]}`,
          key: 'bob',
          seq: i + 1,
          v: b64({ n: i + 1, timer: false, id, time: Number(id.split('-')[0]) }),
        })),
        ends: [{ sid: `bob@${ids[0]}`, reason: 'idle', last: ids.at(-1) }],
        live: [],
      },
    ],
  });
  // (Event 1's timer, due at 1030, is the session's last input.)
  const gaps = recording(['1000-3', '1000-7', '1010-2']);
  gaps.parts[0].outputs.push({
    id: '9000-9',
    sid: 'bob@1000-3',
    key: 'bob',
    seq: 4,
    v: b64({ n: 1, timer: true, id: 't1', time: 1030 }),
  });
  gaps.parts[0].ends[0].last = 't1';
  const report = await replayRecording(entryIds(), gaps, { maxSessionEvents: 10 });
  assert.equal(report.ok, true, formatReplayReport(report));
  await assert.rejects(replayRecording(entryIds(), recording(['0-0', '5-0'])), {
    code: 'ERR_VELO_RECORDING_INVALID',
    message: /0-0/,
  });
});
