// exportRecording's options (docs/redis/options.md): every one checked at the call, as every other entry point
// checks them. A misspelt option is refused (ERR_INVALID_ARG_VALUE) instead of ignored (a `sinse` exported the whole
// log), a wrong type or range with its code, and each known option still does what it says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bufferCodec, exportRecording, redisProducer, redisWorker } from 'velo-stream/redis';
import { streamFn } from '../index.mjs';
import { eventually, pendingCount } from './helpers/redis-fixtures.mjs';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';

useRedis();

const PARTITIONS = 2;
const echo = streamFn(
  async function* (events) {
    for await (const e of events) yield e;
  },
  { idleTimeout: 200 },
);

/** The function recorded: three keys' events, each echoed, every session ended; the entry ids by key. */
let recorded;
async function record() {
  const name = fresh('export-options');
  const shared = { client, name, partitions: PARTITIONS };
  const worker = redisWorker(echo, { ...shared, leaseTtl: 1500, trimInterval: 0, checkReplay: true });
  try {
    const ids = await redisProducer(shared).sendMany([
      ['ada', 1],
      ['bob', 2],
      ['cy', 3],
    ]);
    await eventually(async () => (await pendingCount(client, name, PARTITIONS)) === 0, 'everything acked');
    const ends = async () => {
      let n = 0;
      for (let p = 0; p < PARTITIONS; p++) n += await client.hLen(`velo:{${name}:p${p}}:ends`);
      return n;
    };
    await eventually(async () => (await ends()) === 3, 'the three sessions ended');
    return { shared, ids: { ada: ids[0], bob: ids[1], cy: ids[2] } };
  } finally {
    await worker.close();
  }
}

const events = (recording) => recording.parts.flatMap((p) => p.input.filter((e) => e.v !== undefined).map((e) => e.key)).sort();
const outputs = (recording) => recording.parts.reduce((n, p) => n + p.outputs.length, 0);

test('exportRecording refuses an unknown option, as postgresRecording does: a misspelt one is not ignored', async () => {
  recorded ??= await record();
  const { shared, ids } = recorded;
  const since = Number(ids.cy.split('-')[0]) + 1;
  for (const typo of [{ sinse: since }, { kyes: ['ada'] }, { sinse: since, kyes: ['ada'] }, { leaseTtl: 1000 }]) {
    await assert.rejects(
      exportRecording({ ...shared, ...typo }),
      (error) => {
        assert.equal(error.code, 'ERR_INVALID_ARG_VALUE');
        assert.ok(error instanceof TypeError);
        const [first] = Object.keys(typo);
        assert.equal(
          error.message,
          `exportRecording(): unknown option "${first}". Known options: client, name, partitions, codec, maxEventBytes, only, keys, since, maxEntries, maxOutputs`,
        );
        return true;
      },
      JSON.stringify(typo),
    );
  }
  // The option names are checked first, before the values.
  await assert.rejects(exportRecording({ ...shared, client: null, bogus: 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
});

test('exportRecording: each known option still works', async () => {
  recorded ??= await record();
  const { shared, ids } = recorded;
  const full = await exportRecording(shared);
  assert.deepEqual(events(full), ['ada', 'bob', 'cy']);
  assert.equal(outputs(full), 3);
  // The shared options a producer or worker takes are taken (not used: bytes are recorded as written).
  assert.deepEqual(await exportRecording({ ...shared, codec: bufferCodec, maxEventBytes: 10 }), full);
  assert.deepEqual(events(await exportRecording({ ...shared, keys: ['bob'] })), ['bob']);
  const only = await exportRecording({ ...shared, only: [1] });
  assert.deepEqual(only.parts, [full.parts[1]]);
  // (After the latest of the three: a partition's entry may take a later ms than one sent after it to another.)
  const last = Math.max(...Object.values(ids).map((id) => Number(id.split('-')[0])));
  const late = await exportRecording({ ...shared, since: last + 1 });
  assert.deepEqual(events(late), []);
  await assert.rejects(exportRecording({ ...shared, maxEntries: 1 }), { code: 'ERR_VELO_RECORDING_TOO_LARGE' });
  await assert.rejects(exportRecording({ ...shared, maxOutputs: 1 }), { code: 'ERR_VELO_RECORDING_TOO_LARGE' });
  assert.equal(outputs(await exportRecording({ ...shared, maxEntries: 3, maxOutputs: 3 })), 3);
});

test('exportRecording refuses bad values and types with the codes the other entry points use', async () => {
  recorded ??= await record();
  const { shared } = recorded;
  const refused = [
    [{ partitions: '2' }, 'ERR_OUT_OF_RANGE'],
    [{ partitions: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ since: -1 }, 'ERR_OUT_OF_RANGE'],
    [{ since: '2024-01-01' }, 'ERR_OUT_OF_RANGE'],
    [{ maxEntries: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ maxOutputs: 1.5 }, 'ERR_OUT_OF_RANGE'],
    [{ only: [PARTITIONS] }, 'ERR_OUT_OF_RANGE'],
    [{ only: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ keys: 'ada' }, 'ERR_INVALID_ARG_TYPE'],
    [{ keys: [''] }, 'ERR_INVALID_ARG_VALUE'],
    [{ name: 'a{b' }, 'ERR_INVALID_ARG_VALUE'],
    [{ name: 5 }, 'ERR_INVALID_ARG_TYPE'],
    [{ client: {} }, 'ERR_INVALID_ARG_TYPE'],
    [{ codec: {} }, 'ERR_INVALID_ARG_TYPE'],
    [{ maxEventBytes: 0 }, 'ERR_OUT_OF_RANGE'],
  ];
  for (const [change, code] of refused) {
    await assert.rejects(exportRecording({ ...shared, ...change }), { code }, JSON.stringify(change));
  }
  await assert.rejects(exportRecording(null), { code: 'ERR_INVALID_ARG_TYPE' });
  // Options that cannot be read (a revoked Proxy) are a wrong type, not a crash.
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  await assert.rejects(exportRecording(proxy), { code: 'ERR_INVALID_ARG_TYPE' });
});
