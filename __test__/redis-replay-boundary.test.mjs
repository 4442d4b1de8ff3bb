// checkReplay's boundary check on a real Redis: a worker with the check keeps where each session ended (its last
// input and the reason); a later run that ends the same sid elsewhere is reported as ERR_VELO_REPLAY_DIVERGED of
// kind 'boundary', and the end kept is the first one. A session's entries are acked with its end, so a run ends an
// ended sid again only when they are delivered again: here the input's group is moved back to its start, as an
// operator does to run a function over its log again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { streamFn } from 'velo-stream';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { eventually, pendingCount, readAllOutputs } from './helpers/redis-fixtures.mjs';

useRedis();

test('checkReplay: a run that ends an ended session elsewhere (another last input and reason) is flagged as kind boundary; the first end is kept, an equal one is not flagged', async () => {
  const name = fresh('boundary');
  const input = `velo:{${name}:p0}`;
  // Outside state decides where key r's session stops: at its `limit`-th event (a handler that is not deterministic).
  let limit = Infinity;
  const fn = streamFn(
    async function* stops(events) {
      let n = 0;
      for await (const e of events) {
        yield e.n;
        if (e.k === 'r' && ++n === limit) return;
      }
    },
    { idleTimeout: 300 },
  );
  const errors = [];
  // No trim while the test runs: the ends are kept while their sessions' first entries are in the input.
  const options = {
    client,
    name,
    partitions: 1,
    leaseTtl: 1500,
    trimInterval: 600_000,
    checkReplay: true,
    onError: (e) => errors.push(e),
  };
  const producer = redisProducer({ client, name, partitions: 1 });
  const ids = await producer.sendMany([
    ['r', { k: 'r', n: 1 }],
    ['r', { k: 'r', n: 2 }],
    ['r', { k: 'r', n: 3 }],
    ['s', { k: 's', n: 1 }],
    ['s', { k: 's', n: 2 }],
  ]);
  const [r1, r2, r3, s1, s2] = ids;
  const ends = async () => client.hGetAll(`${input}:ends`);

  // A: each key's one session takes all its events and ends by idle.
  const a = redisWorker(fn, options);
  try {
    await eventually(async () => Object.keys(await ends()).length === 2, "A ended both keys' sessions");
    assert.equal(await pendingCount(client, name, 1), 0);
  } finally {
    await a.close();
  }
  const first = { [`r@${r1}`]: `idle ${r3}`, [`s@${s1}`]: `idle ${s2}` };
  assert.deepEqual(await ends(), first);
  assert.deepEqual(errors, []);
  const written = await readAllOutputs(client, name, 1);
  assert.equal(written.length, 5);

  // The log again, from its start, with r's session stopping after 2 events.
  await client.sendCommand(['XGROUP', 'SETID', input, 'velo', '0']);
  limit = 2;
  const b = redisWorker(fn, options);
  try {
    // r's third event opens a session of its own, which ends by idle too.
    await eventually(async () => Object.keys(await ends()).length === 3, "B ended r's two sessions and s's");
    await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'everything acked');
    assert.equal(errors.length, 1, errors.map(String).join('\n'));
    const [error] = errors;
    assert.equal(error.code, 'ERR_VELO_REPLAY_DIVERGED');
    assert.equal(error.kind, 'boundary');
    assert.equal(error.sid, `r@${r1}`);
    assert.equal(error.key, 'r');
    assert.equal(error.partition, 0);
    assert.equal(error.seq, 2, 'its last output');
    assert.deepEqual(error.ends, { committed: { reason: 'idle', last: r3 }, replayed: { reason: 'return', last: r2 } });
    assert.equal(error.committed, undefined);
    assert.equal(error.replayed, undefined);
    assert.match(error.message, new RegExp(`ended by return after entry ${r2}, but it ended by idle after entry ${r3} before`));
    assert.equal(b.stats().diverged, 1);
    // The first end of r@r1 stays; s ended as before (not flagged); r's new session is kept anew.
    assert.deepEqual(await ends(), { ...first, [`r@${r3}`]: `idle ${r3}` });
  } finally {
    await b.close();
  }
});

test('checkReplay: a timer is named `t<id>` as a last input, an entry taken after it replaces it; a run that makes no timer ends the first session elsewhere (kind boundary)', async () => {
  const name = fresh('boundary-timer');
  const input = `velo:{${name}:p0}`;
  // Outside state decides whether the handler makes a timer for its first event (50 ms after the event's own time).
  let timers = true;
  const fn = streamFn(
    async function* wakes(events, ctx) {
      for await (const e of events) {
        if (e.n === 1 && e.woke === undefined && timers) ctx.wakeAt(e.at + 50, { woke: e.n });
        yield e;
      }
    },
    { idleTimeout: 300 },
  );
  const errors = [];
  const options = {
    client,
    name,
    partitions: 1,
    leaseTtl: 1500,
    trimInterval: 600_000,
    checkReplay: true,
    onError: (e) => errors.push(e),
  };
  // Entries at chosen times (Redis' clock, as the producer's XADD gives them): k's one event; m's first, and its
  // second after m's timer (due 50 ms after the first) and within the idle timeout of it.
  const [seconds, micros] = await client.sendCommand(['TIME']);
  const t = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  const add = (id, key, event) => client.sendCommand(['XADD', input, id, 'k', key, 'v', JSON.stringify(event)]);
  const k1 = await add(`${t}-0`, 'k', { n: 1, at: t });
  const m1 = await add(`${t}-1`, 'm', { n: 1, at: t });
  const m2 = await add(`${t + 150}-0`, 'm', { n: 2, at: t + 150 });
  const [k, m] = [`k@${k1}`, `m@${m1}`];
  const ends = async () => client.hGetAll(`${input}:ends`);

  const a = redisWorker(fn, options);
  try {
    await eventually(async () => Object.keys(await ends()).length === 2, 'A ended both sessions');
  } finally {
    await a.close();
  }
  assert.deepEqual(
    await ends(),
    { [k]: 'idle t1', [m]: `idle ${m2}` },
    "k's last input was its timer; m's, its entry after its timer",
  );
  assert.equal((await readAllOutputs(client, name, 1)).length, 5, 'three events and two timers');
  assert.deepEqual(errors, []);

  await client.sendCommand(['XGROUP', 'SETID', input, 'velo', '0']);
  timers = false;
  const b = redisWorker(fn, options);
  try {
    await eventually(() => errors.length > 0, 'the boundary flagged');
    await eventually(async () => (await pendingCount(client, name, 1)) === 0, 'everything acked');
    // m's session ends after the same entry, by idle: the same end (its missing timer output is not this check's).
    assert.deepEqual(
      errors.map((e) => [e.code, e.kind, e.sid, e.seq, e.ends]),
      [
        [
          'ERR_VELO_REPLAY_DIVERGED',
          'boundary',
          k,
          1,
          { committed: { reason: 'idle', last: 't1' }, replayed: { reason: 'idle', last: k1 } },
        ],
      ],
    );
    assert.match(errors[0].message, new RegExp(`ended by idle after entry ${k1}, but it ended by idle after its timer 1 before`));
    assert.equal(b.stats().diverged, 1);
    assert.deepEqual(await ends(), { [k]: 'idle t1', [m]: `idle ${m2}` }, 'the first ends are kept');
  } finally {
    await b.close();
  }
});
