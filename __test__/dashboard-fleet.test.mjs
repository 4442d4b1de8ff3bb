// velo-stream/dashboard's fleet view: two worker processes, each with a dashboard publishing to the fleet, and
// a third dashboard (this process) that only reads it. Its `fleet` route answers each member's latest sample and
// the sums (sessions, partitions, opened streams); a member that leaves (close()) or dies (kill -9, its sample
// expires in Redis) drops out. Each child's exit code and stderr are checked (helpers/child.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { redisProducer } from 'velo-stream/redis';
import { dashboard } from 'velo-stream/dashboard';
import { start } from './helpers/child.mjs';
import { fleetView, listen } from './helpers/dashboard-feed.mjs';
import { client, fresh, redis, useRedis } from './helpers/redis-suite.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';

useRedis();

const MEMBER = fileURLToPath(new URL('./fixtures/dashboard-fleet-member.mjs', import.meta.url));

test('two worker processes in one fleet: the fleet route shows both members and sums their figures; a member that closes leaves, one killed -9 expires', async () => {
  const name = fresh('fleetfn');
  const fleet = fresh('fleet');
  const partitions = 4;
  const members = ['member-a', 'member-b'].map((id) =>
    start([MEMBER, redis.url, name, String(partitions), fleet, id], { timeout: 60_000 }),
  );
  await Promise.all(members.map((m) => m.waitFor(/^ready$/m)));
  // This process only reads the fleet (it publishes nothing, so it is no member).
  const reader = dashboard({ fleet: { client, name: fleet, publish: false } });
  const { root: base, close } = await listen(reader);
  let killed = false;
  try {
    // The two share the partitions (a fair share each) before the sessions come.
    await eventually(async () => {
      const v = await fleetView(base);
      return v.members.length === 2 && v.members.every((m) => m.sample.redis[0]?.owned.length === partitions / 2);
    }, 'two members, two partitions each');
    // Sessions on both workers: keys spread over the partitions.
    const keys = Array.from({ length: 16 }, (_, i) => `k${i}`);
    await redisProducer({ client, name, partitions }).sendMany(keys.map((k, i) => [k, { n: i }]));
    const view = await eventually(async () => {
      const v = await fleetView(base);
      const r = v.redis[0];
      return v.members.length === 2 && r?.sessions === keys.length && r.owned === partitions && r.workers === 2 ? v : null;
    }, 'both members, every partition owned and every session live in the fleet view');
    assert.equal(view.fleet, fleet);
    assert.deepEqual(
      view.members.map((m) => m.id),
      ['member-a', 'member-b'],
    );
    // Each member's own sample: its worker's figures, which the sums add up.
    const own = view.members.map((m) => m.sample.redis[0]);
    assert.equal(own[0].sessions + own[1].sessions, keys.length);
    assert.ok(own[0].owned.length > 0 && own[1].owned.length > 0, 'the partitions are shared');
    assert.equal(new Set([...own[0].owned, ...own[1].owned]).size, partitions);
    assert.equal(view.redis[0].name, name);
    const totalsFn = view.functions.find((f) => f.name === 'totals');
    assert.equal(totalsFn.members, 2);
    assert.equal(totalsFn.open, keys.length);
    assert.equal(
      totalsFn.open,
      view.members.reduce((n, m) => n + m.sample.functions[0].open, 0),
    );

    // A member that closes leaves at once.
    members[0].child.kill('SIGTERM');
    const { stdout } = await members[0].finished();
    assert.match(stdout, /^closed$/m);
    assert.doesNotMatch(stdout, /^error /m);
    const after = await fleetView(base);
    assert.deepEqual(
      after.members.map((m) => m.id),
      ['member-b'],
    );

    // One killed -9 publishes no more: its sample expires in Redis (ttl: 3 intervals), and it drops out.
    members[1].child.kill('SIGKILL');
    killed = true;
    await members[1].finished().catch((error) => assert.match(String(error), /killed by SIGKILL/));
    await eventually(async () => (await fleetView(base)).members.length === 0, 'the killed member expired');
    const left = await client.sendCommand(['SMEMBERS', `velo:dash:{${fleet}}:members`]);
    assert.deepEqual(left, [], 'the reader removed the expired member from the set');
  } finally {
    if (!killed) {
      for (const m of members) m.child.kill('SIGTERM');
      await Promise.allSettled(members.map((m) => m.finished()));
    }
    await reader.close();
    await close();
  }
});

test('the fleet option is checked at the call; a dashboard without it answers 404 at its fleet route', async () => {
  assert.throws(() => dashboard({ fleet: {} }), { code: 'ERR_INVALID_ARG_TYPE', message: /fleet\.client/ });
  assert.throws(() => dashboard({ fleet: { client, nam: 'x' } }), { code: 'ERR_INVALID_ARG_VALUE', message: /Known options: client, name, schema, id, publish, ttl, onError/ });
  assert.throws(() => dashboard({ fleet: { client, name: 'a b' } }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => dashboard({ fleet: { client, id: 'x{y}' } }), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => dashboard({ fleet: { client, publish: 'yes' } }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => dashboard({ interval: 500, fleet: { client, ttl: 499 } }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => dashboard({ fleet: { client, onError: 1 } }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => dashboard({ fleet: 'redis://x' }), { code: 'ERR_INVALID_ARG_TYPE' });
  const { root: base, close } = await listen(dashboard());
  try {
    const res = await fetch(`${base}fleet`);
    assert.equal(res.status, 404);
    assert.match(await res.text(), /No fleet/);
  } finally {
    await close();
  }
});

test('a member without a page open still publishes, its feed says which fleet; close() stops it and leaves the fleet', async () => {
  const fleet = fresh('fleet');
  const dash = dashboard({ interval: 100, fleet: { client, name: fleet, id: 'solo' } });
  const key = `velo:dash:{${fleet}}:m:solo`;
  try {
    const stored = await eventually(async () => {
      const v = await client.sendCommand(['GET', key]);
      return v === null ? null : JSON.parse(v);
    }, 'a published sample');
    assert.equal(stored.id, 'solo');
    assert.equal(stored.sample.fleet, fleet);
    const ttl = Number(await client.sendCommand(['PTTL', key]));
    assert.ok(ttl > 0 && ttl <= 300, `expires (3 intervals): ${ttl}`);
  } finally {
    await dash.close();
  }
  assert.equal(await client.sendCommand(['EXISTS', key]), 0);
  assert.deepEqual(await client.sendCommand(['SMEMBERS', `velo:dash:{${fleet}}:members`]), []);
  // Closed: a feed is refused (it would start the sampler again).
  const server = http.createServer(dash);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const res = await fetch(`http://127.0.0.1:${server.address().port}/feed`);
    assert.equal(res.status, 503);
    await res.arrayBuffer();
    assert.equal(dash.clients, 0);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  // Closed: nothing is published again.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(await client.sendCommand(['EXISTS', key]), 0);
});

test('a read shows at most 1,000 members, the first by id, and says when the fleet has more (truncated)', async () => {
  const fleet = fresh('fleet');
  const members = `velo:dash:{${fleet}}:members`;
  const sample = (id) => JSON.stringify({ id, at: 1, sample: { at: 1, functions: [{ name: 'f', open: 1 }], redis: [] } });
  const put = async (from, to) => {
    const ids = Array.from({ length: to - from }, (_, i) => `m${String(from + i).padStart(5, '0')}`);
    await client.sendCommand(['MSET', ...ids.flatMap((id) => [`velo:dash:{${fleet}}:m:${id}`, sample(id)])]);
    await client.sendCommand(['SADD', members, ...ids]);
  };
  const { root: base, close } = await listen(dashboard({ fleet: { client, name: fleet, publish: false } }));
  try {
    await put(0, 1000);
    let view = await fleetView(base);
    assert.equal(view.members.length, 1000);
    assert.equal(view.truncated, false);
    assert.equal(view.functions[0].open, 1000);
    await put(1000, 1001);
    view = await fleetView(base);
    assert.equal(view.members.length, 1000);
    assert.equal(view.truncated, true);
    assert.equal(view.members.at(-1).id, 'm00999', 'the first 1,000 by id');
    assert.equal(view.functions[0].open, 1000, 'the sums are of the members shown');
    // Members whose samples expired, first by id, take no place of live ones: still 1,000 shown, and more there.
    await client.sendCommand(['SADD', members, 'a0', 'a1', 'a2']);
    view = await fleetView(base);
    assert.equal(view.members.length, 1000);
    assert.equal(view.members[0].id, 'm00000');
    assert.equal(view.truncated, true);
    assert.equal(await client.sendCommand(['SISMEMBER', members, 'a0']), 0, 'the expired members left the set');
  } finally {
    await close();
  }
});
