// A checkpoint call that cannot be encoded fails its session there, also when the handler catches the error: the
// key's events the session had not taken by then open the key's next session, in log order (none acked unread).
// On the simulator (testWorker), crash-free and with the owner crashed, for each error a call can throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { testWorker } from 'velo-stream/testing';

const bad = { undef: undefined, bigint: { n: 10n }, huge: 'x'.repeat(2048) };
const codes = { undef: 'ERR_INVALID_ARG_VALUE', bigint: 'ERR_VELO_ENCODE', huge: 'ERR_VELO_CHECKPOINT_TOO_LARGE' };

export const catcher = streamFn(
  async function* (events, ctx) {
    for await (const e of events) {
      if (e in bad) {
        try {
          ctx.checkpoint(bad[e]);
        } catch (err) {
          yield 'caught ' + err.code;
        }
      }
      yield ['took', e];
    }
  },
  { idleTimeout: 1000 },
);

const view = (worker) =>
  worker.sessions().map((s) => s.outputs.map((o) => (o.error === undefined ? o.value : { code: o.error.code })));

for (const kind of Object.keys(bad)) {
  for (const crash of [false, true]) {
    test(`a caught ${codes[kind]} at a checkpoint: the events after it open the key's next session${crash ? ' (owner crashed)' : ''}`, async () => {
      const worker = testWorker(catcher, { partitions: 1, leaseTtl: 1000, maxCheckpointBytes: 1024 });
      for (const e of ['a', kind, 'b', 'c']) worker.send('k', e);
      if (crash) {
        await worker.advance(1);
        worker.crash();
      }
      await worker.settle();
      assert.deepEqual(view(worker), [
        [['took', 'a'], { code: codes[kind] }],
        [
          ['took', 'b'],
          ['took', 'c'],
        ],
      ]);
      assert.deepEqual(
        worker.errors().filter((e) => e?.code !== 'ERR_VELO_FENCED'),
        [],
      );
      await worker.close();
    });
  }
}
