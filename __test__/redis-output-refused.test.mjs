// An output the codec refuses (over maxEventBytes, undefined, a BigInt) fails its session at that output's yield.
// The handler runs ahead of the forwarding of its outputs, so by the time the refusal is known it may have taken
// more of its key's entries: those are not the session's, and open the key's next session, as entries it never
// took do (README, sessions: none dropped). Whether it ran ahead (the input buffer, a backlog, a crash) must not
// change which session gets them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { checkDeterminism, testWorker } from 'velo-stream/testing';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';

useRedis();

const START = Date.UTC(2024, 0, 1);
const refused = { big: 'x'.repeat(2000), undefined, bigint: 10n };

for (const [what, bad] of Object.entries(refused)) {
  async function* handler(events) {
    for await (const e of events) {
      if (e === 2) yield bad;
      yield { e };
    }
  }
  const fn = streamFn(handler, { idleTimeout: 1000 });

  for (const buffer of [undefined, 1]) {
    test(`simulator, ${what} output, buffer ${buffer ?? 'default'}: the entries taken after it open the key's next session`, async () => {
      const w = testWorker(buffer === undefined ? fn : streamFn(handler, { idleTimeout: 1000, buffer }), { maxEventBytes: 1000 });
      try {
        for (let i = 1; i <= 4; i++) w.send('a', i);
        await w.settle();
        const sessions = w.sessions().map((s) => s.outputs.map((o) => (o.error ? o.error.code : o.value)));
        assert.equal(sessions.length, 2, JSON.stringify(sessions));
        assert.deepEqual(sessions[0][0], { e: 1 });
        assert.match(sessions[0][1], /^ERR_/);
        assert.deepEqual(sessions[1], [{ e: 3 }, { e: 4 }]);
      } finally {
        await w.close();
      }
    });
  }

  test(`simulator, ${what} output: a crash at any take changes nothing (checkDeterminism)`, async () => {
    const events = [1, 2, 3, 4].map((i) => ({ key: 'a', event: i, at: START + i * 10 }));
    const report = await checkDeterminism(fn, events, { maxEventBytes: 1000, leaseTtl: 300 });
    assert.equal(report.ok, true, JSON.stringify(report));
  });
}

test('real Redis: a backlog whose session fails on a refused output: the later entries open the next session, none dropped', async () => {
  const name = fresh('refused');
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) {
        if (e === 2) yield 'x'.repeat(2000);
        yield { e };
      }
    },
    { idleTimeout: 300 },
  );
  await redisProducer({ client, name, partitions: 1 }).sendMany([1, 2, 3, 4].map((i) => ['a', i]));
  const errors = [];
  const worker = redisWorker(fn, {
    client,
    name,
    partitions: 1,
    leaseTtl: 600,
    maxEventBytes: 1000,
    onError: (e) => errors.push(e),
  });
  try {
    const out = `velo:{${name}:p0}:out`;
    let entries = [];
    for (let i = 0; i < 200 && entries.length < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      entries = await client.sendCommand(['XRANGE', out, '-', '+']);
    }
    const fields = entries.map(([, f]) =>
      Object.fromEntries(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i], f[2 * i + 1]])),
    );
    const bySid = new Map();
    for (const f of fields) bySid.set(f.sid, [...(bySid.get(f.sid) ?? []), f.v ?? JSON.parse(f.e).code]);
    assert.deepEqual(
      [...bySid.values()],
      [
        ['{"e":1}', 'ERR_VELO_EVENT_TOO_LARGE'],
        ['{"e":3}', '{"e":4}'],
      ],
    );
  } finally {
    await worker.close();
  }
  assert.deepEqual(errors, []);
});
