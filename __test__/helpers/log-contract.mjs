// The log contract: the in-memory log (js/durable/memory/memory-log.ts) and the Postgres one (js/postgres/) against the
// Redis one (redis-log.ts and its Lua scripts): each scenario runs on each side (`contractTests(sides)`), through
// the PartitionLog interface, and records what it sees; the records must be the same, so neither the simulator's
// log nor the Postgres backend can drift from the one production runs on. Entry ids differ in their
// times, so they are compared by structure: each id becomes `#n`, n its rank of first sight in the record
// (inside sids and wake-ups too), output ids (`out:` in the record) apart from input ids (the two streams give
// ids of their own, which may coincide). Times left (lease, registration, wake-up) are recorded as "some" (> 0).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  KeySpace,
  MemoryLog,
  MemoryStore,
  PgLog,
  RedisLog,
  VirtualClock,
  appendEvents,
  appendEventsPg,
  endsPg,
  outputEntriesPg,
  preparePg,
  runUntil,
  sleepOn,
} from '#testing';
import { client, fresh } from './redis-suite.mjs';

const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };
const PARTITIONS = 2;

/** The Redis side: a fresh function's keys on the file's server (useRedis); sleeps are real. */
export function redisSide() {
  const keys = new KeySpace(fresh('contract'));
  const errors = [];
  const log = new RedisLog(client, keys, PARTITIONS, (error) => errors.push(error));
  return {
    name: 'the Redis log',
    log,
    run: (promise) => promise,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    append: async (p, events) => (await appendEvents(client, keys, p, events)).ids,
    outputs: async (p) => outputIds(await client.sendCommand(['XRANGE', keys.output(p), '-', '+'], BUFFERS)),
    ends: async (p) => {
      const ends = Object.entries(await client.hGetAll(keys.ends(p)));
      // Each sid in the hash has its score in the sorted set (the trim finds the old ones by it), and only those.
      assert.deepEqual(
        (await client.zRange(keys.ended(p), 0, -1)).sort(),
        ends.map(([sid]) => sid).sort(),
        'ends and their index',
      );
      return ends.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    },
    done: async () => {
      await log.close();
      assert.deepEqual(errors, [], 'no connection error');
    },
  };
}

/** The in-memory side: a fresh store on a virtual clock, stepped until each call settles. */
export function memorySide() {
  const clock = new VirtualClock(1_700_000_000_000);
  const store = new MemoryStore(PARTITIONS, clock);
  const log = new MemoryLog(store);
  return {
    name: 'the in-memory log',
    log,
    run: (promise) => runUntil(clock, promise),
    sleep: (ms) => runUntil(clock, sleepOn(clock, ms)),
    append: async (p, events) => store.append(p, events),
    outputs: async (p) => outputIds(store.outputs(p)),
    ends: async (p) => [...store.ends(p)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    done: () => log.close(),
  };
}

/**
 * The Postgres side: a fresh function in schema `velo_contract` of `pool()` (a pg.Pool on the file's private
 * postgres, see postgres-suite.mjs); sleeps are real.
 */
export function postgresSide(pool) {
  return async () => {
    const name = fresh('contract');
    const space = await preparePg(pool(), 'velo_contract', name, PARTITIONS);
    const errors = [];
    const log = new PgLog(pool(), space, PARTITIONS, { onError: (error) => errors.push(error), pollInterval: 20 });
    return {
      name: 'the Postgres log',
      log,
      run: (promise) => promise,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      append: (p, events) => appendEventsPg(pool(), space, p, events),
      outputs: async (p) => outputIds(await outputEntriesPg(pool(), space, p)),
      ends: (p) => endsPg(pool(), space, p),
      done: async () => {
        await log.close();
        assert.deepEqual(errors, [], 'no connection error');
      },
    };
  };
}

/** Output stream entries with their ids marked as output ids. */
const outputIds = (entries) => entries.map(([id, list]) => [`out:${id}`, list]);

/** A commit's result with its ids marked as output ids. */
const committed = (promise) =>
  promise.then(({ ids, diverged }) => ({
    ids: ids.map((id) => (id === null ? null : `out:${id}`)),
    diverged: diverged.map((d) =>
      d.kind !== 'output' || d.committed === undefined ? d : { ...d, committed: { ...d.committed, id: `out:${d.committed.id}` } },
    ),
  }));

/** Every entry id in `value` (also inside strings: sids, wake-ups) as `#n`, by first sight; Buffers as text. */
function structural(value) {
  const seen = new Map();
  const name = (id) => {
    if (!seen.has(id)) seen.set(id, `${id.startsWith('out:') ? 'out' : ''}#${seen.size + 1}`);
    return seen.get(id);
  };
  const walk = (v) => {
    if (typeof v === 'string') return v.replace(/(?:out:)?\b\d+-\d+\b/g, name);
    if (Buffer.isBuffer(v)) return walk(`buf:${v.toString()}`);
    if (Array.isArray(v)) return v.map(walk);
    if (v instanceof Error) return { error: v.name, code: v.code, message: v.message };
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    }
    return v;
  };
  return walk(value);
}

/** The sides each scenario runs on (`contractTests`): the first is the reference. */
let sides = [];

/** Runs `scenario(side, record)` on every side and compares what each recorded with the first's. */
function contract(scenario) {
  return runContract(sides, scenario);
}

/** Runs `scenario(side, record)` on each of `list` (side makers) and compares what each recorded with the first's. */
export async function runContract(list, scenario) {
  const records = [];
  const names = [];
  for (const makeSide of list) {
    const side = await makeSide();
    names.push(side.name);
    // Commits' results with their ids marked as output ids.
    const log = side.log;
    side.log = new Proxy(log, {
      get: (target, name) =>
        name === 'commit'
          ? (...args) => committed(target.commit(...args))
          : typeof target[name] === 'function'
            ? target[name].bind(target)
            : target[name],
    });
    const record = [];
    const call = async (label, promise) => {
      try {
        const value = await side.run(promise);
        record.push([label, value]);
        return value;
      } catch (error) {
        record.push([label, error]);
        return error;
      }
    };
    await scenario(side, call);
    await side.done();
    records.push(structural(record));
  }
  for (let i = 1; i < records.length; i++)
    assert.deepStrictEqual(records[i], records[0], `${names[i]} answers as ${names[0]} does`);
  return records[0];
}

const some = (n) => (typeof n === 'number' && n > 0 ? 'some' : n);
const ev = (key, n) => [key, Buffer.from(JSON.stringify({ n }))];
const bySid = (snapshots) => [...snapshots].sort((a, b) => (a.sid < b.sid ? -1 : a.sid > b.sid ? 1 : 0));

/** Registers the contract's scenarios, each run on `list` (side makers; the first is the reference). */
export function contractTests(list) {
  sides = list;

  test('reads: new entries become pending, replay from an id, the tail when nothing is new, acks, lag', async () => {
    const record = await contract(async (side, call) => {
      const { log } = side;
      await side.append(0, [ev('a', 1), ev('b', 2), ev('a', 3)]);
      await call('lag before the first lease', log.lag(0));
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('lag', log.lag(0));
      await call('read 2', log.read(lease, '>', 2));
      await call('lag after', log.lag(0));
      await call('read rest', log.read(lease, '>', 10));
      await call('read nothing new', log.read(lease, '>', 10));
      await call('replay from 0', log.read(lease, '0', 10));
      const [first] = (await side.run(log.read(lease, '0', 1))).entries;
      await call('replay after the first', log.read(lease, first.id, 10));
      await call('commit acks the first', log.commit(lease, { outputs: [], acks: [first.id], ended: [] }));
      await call('replay after ack', log.read(lease, '0', 10));
      await call('entries by id', log.entries(lease, [first.id, '1-0']));
      await call('other partition empty', log.lag(1));
      await call('pinned, other partition', log.pinned(1));
    });
    // The record itself says what the contract is (a sanity check of the harness, not of the logs).
    const read2 = record.find(([label]) => label === 'read 2')[1];
    assert.equal(read2.entries.length, 2);
    assert.equal(read2.entries[0].key, 'a');
  });

  test('leases: held, renewed, released; fenced after expiry and after a takeover; a new epoch each grant', async () => {
    await contract(async (side, call) => {
      const { log } = side;
      await side.append(0, [ev('a', 1)]);
      // (A lease of 600 ms: long enough for the calls before it runs out on a loaded machine.)
      const lease = await call('acquire', log.acquire(0, 'w1', 600));
      const held = await side.run(log.acquire(0, 'w2', 600));
      await call('held by w1', Promise.resolve({ holder: held.holder, left: some(held.left) }));
      await call('renew', log.renew(lease, 600));
      await call('read', log.read(lease, '>', 10));
      await side.sleep(800);
      await call('renew after expiry', log.renew(lease, 600));
      await call('read after expiry', log.read(lease, '>', 10));
      await call('replay after expiry', log.read(lease, '0', 10));
      await call('mark after expiry', log.markClose(lease, 'a', 'a@1-0'));
      await call('commit after expiry', log.commit(lease, { outputs: [], acks: [], ended: [] }));
      await call('wake after expiry', log.wake(lease, 'a', 'x', 1, 1, 'p'));
      await call('trim after expiry', log.trim(lease));
      await call('trimOutputs after expiry', log.trimOutputs(lease, true, 0));
      const next = await call('takeover', log.acquire(0, 'w2', 10_000));
      await call('the old lease is fenced', log.read(lease, '0', 10));
      await call('the new owner gets the pending entry back', log.read(next, '0', 10));
      await call('release by the old lease: no-op', log.release(lease));
      await call('still held', log.renew(next, 10_000));
      await call('release', log.release(next));
      await call('fenced after release', log.read(next, '0', 10));
      const third = await call('acquire again', log.acquire(0, 'w1', 10_000));
      await call('its pending entry', log.read(third, '0', 10));
    });
  });

  test('commit: outputs once per (sid, seq) by high-water mark, checkpoints, ended sessions forgotten, snapshots', async () => {
    const record = await contract(async (side, call) => {
      const { log } = side;
      const [e1, e2, e3] = await side.append(0, [ev('a', 1), ev('a', 2), ev('b', 3)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('read', log.read(lease, '>', 10));
      const a = `a@${e1}`;
      const b = `b@${e3}`;
      const out = (sid, seq, key, v) => ({ sid, seq, key, payload: Buffer.from(v) });
      const checkpoint = {
        sid: a,
        key: 'a',
        seq: 2,
        lastTime: 1234,
        events: 2,
        state: Buffer.from('{"total":3}'),
        timers: 2,
        pending: [[2, 99, Buffer.from('later')]],
        lastInput: e2,
      };
      await call(
        'commit outputs and a checkpoint',
        log.commit(lease, {
          outputs: [out(a, 1, 'a', 'x'), out(a, 2, 'a', 'y'), out(b, 1, 'b', 'z')],
          checkpoints: [checkpoint, { sid: b, key: 'b', seq: 1, lastTime: 5, events: 1, state: 'text state' }],
          acks: [e1, e2],
          ended: [],
        }),
      );
      await call('snapshots', log.snapshots(lease).then(bySid));
      await call(
        'a replay: seqs at or below the mark are skipped, above written',
        log.commit(lease, {
          outputs: [
            out(a, 1, 'a', 'other'),
            out(a, 3, 'a', 'w'),
            { sid: b, seq: 2, key: 'b', error: '{"name":"Error","message":"boom"}' },
          ],
          acks: [],
          ended: [],
        }),
      );
      await call('snapshots with the marks', log.snapshots(lease).then(bySid));
      await call('replay of pending', log.read(lease, '0', 10));
      await call('end b', log.commit(lease, { outputs: [], acks: [e3], ended: [b], endedSeqs: [2] }));
      await call('snapshots after b ended', log.snapshots(lease).then(bySid));
      await call(
        'b starts over: its outputs are new again',
        log.commit(lease, { outputs: [out(b, 1, 'b', 'again')], acks: [], ended: [] }),
      );
      await call('outputs', side.outputs(0));
    });
    // A checkpoint keeps its session's last input (for checkReplay's record of where it ends after a restore).
    assert.equal(record.find(([label]) => label === 'snapshots')[1][0].lastInput, '#2');
  });

  test('commit: a retry by serial returns the first call ids and writes nothing; a new serial writes', async () => {
    await contract(async (side, call) => {
      const { log } = side;
      const [e1] = await side.append(0, [ev('a', 1)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('read', log.read(lease, '>', 10));
      const sid = `a@${e1}`;
      const out = (seq, v) => ({ sid, seq, key: 'a', payload: v });
      const first = { outputs: [out(1, 'x'), out(2, 'y')], acks: [], ended: [], serial: 1 };
      await call('serial 1', log.commit(lease, first));
      await call('serial 1 again', log.commit(lease, first));
      await call(
        'serial 2: one new, one written before',
        log.commit(lease, { outputs: [out(2, 'y'), out(3, 'z')], acks: [e1], ended: [], serial: 2 }),
      );
      await call('serial 2 again', log.commit(lease, { outputs: [out(2, 'y'), out(3, 'z')], acks: [e1], ended: [], serial: 2 }));
      await call('no serial: no ids', log.commit(lease, { outputs: [out(4, 'w')], acks: [], ended: [] }));
      // A new lease of the same worker: its serials start over, and serial 2 is not a retry of the old lease's.
      await call('release', log.release(lease));
      const next = await call('acquire again', log.acquire(0, 'w1', 10_000));
      await call('serial 2 under the new lease', log.commit(next, { outputs: [out(5, 'v')], acks: [], ended: [], serial: 2 }));
      await call('outputs', side.outputs(0));
    });
  });

  test('commit: a retry of a commit that ended a session writes nothing with its serial, everything again without', async () => {
    const record = await contract(async (side, call) => {
      const { log } = side;
      const [e1] = await side.append(0, [ev('a', 1)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('read', log.read(lease, '>', 10));
      const sid = `a@${e1}`;
      const out = (seq, v) => ({ sid, seq, key: 'a', payload: v });
      // The session's outputs and its end in one commit: its high-water mark goes with it.
      const ending = { outputs: [out(1, 'x'), out(2, 'y')], acks: [e1], ended: [sid], endedSeqs: [2] };
      await call('serial 1 ends the session', log.commit(lease, { ...ending, serial: 1 }));
      await call('serial 1 again (its reply was lost)', log.commit(lease, { ...ending, serial: 1 }));
      await call('outputs after the retry', side.outputs(0));
      await call('no serial: applied', log.commit(lease, ending));
      await call('no serial again: written twice', log.commit(lease, ending));
      await call('outputs', side.outputs(0));
    });
    // What the worker relies on (it sends a serial with every commit): the retry under serial 1 wrote nothing.
    const outputs = (label) => record.find(([l]) => l === label)[1];
    assert.equal(outputs('outputs after the retry').length, 2);
    assert.equal(outputs('outputs').length, 6);
  });

  test('commit with ids: false (a worker without onOutput): no ids come back, and a retry by serial still writes nothing', async () => {
    const record = await contract(async (side, call) => {
      const { log } = side;
      const [e1] = await side.append(0, [ev('a', 1)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('read', log.read(lease, '>', 10));
      const sid = `a@${e1}`;
      const out = (seq, v) => ({ sid, seq, key: 'a', payload: v });
      // The session's outputs and its end in one commit (its high-water mark goes with it): only the serial
      // keeps a retry from writing them again.
      const ending = { outputs: [out(1, 'x'), out(2, 'y')], acks: [e1], ended: [sid], endedSeqs: [2], serial: 1, ids: false };
      await call('serial 1 ends the session', log.commit(lease, ending));
      await call('serial 1 again (its reply was lost)', log.commit(lease, ending));
      await call('serial 2 with ids', log.commit(lease, { outputs: [out(1, 'z')], acks: [], ended: [], serial: 2 }));
      await call('serial 2 again', log.commit(lease, { outputs: [out(1, 'z')], acks: [], ended: [], serial: 2 }));
      await call('outputs', side.outputs(0));
    });
    const at = (label) => record.find(([l]) => l === label)[1];
    assert.deepEqual(at('serial 1 ends the session').ids, []);
    assert.deepEqual(at('serial 1 again (its reply was lost)').ids, []);
    assert.equal(at('serial 2 with ids').ids.length, 1);
    assert.deepEqual(at('serial 2 again').ids, at('serial 2 with ids').ids);
    assert.equal(at('outputs').length, 3);
  });

  test("commit: a session's outputs in runs (interleaved sessions, gaps in seqs, a failure after values, traced ones) are written as each alone", async () => {
    const record = await contract(async (side, call) => {
      const { log } = side;
      const [e1, e2, e3] = await side.append(0, [ev('a', 1), ev('b', 2), ev('c', 3)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('read', log.read(lease, '>', 10));
      const [a, b, c] = [`a@${e1}`, `b@${e2}`, `c@${e3}`];
      const out = (sid, seq, payload, extra = {}) => ({ sid, seq, key: sid[0], payload, ...extra });
      const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      const commit = {
        outputs: [
          out(a, 1, 'a1'),
          out(a, 2, 'a2'),
          out(a, 3, 'a3', { traceparent: tp }),
          out(b, 1, 'b1'),
          out(a, 4, 'a4'),
          out(b, 2, 'b2'),
          out(b, 3, 'b3'),
          { sid: a, seq: 5, key: 'a', error: '{"name":"Error","message":"a fails"}' },
          out(c, 5, 'c5'),
          out(c, 6, 'c6'),
          out(c, 9, 'c9'),
          out(c, 10, Buffer.from([0, 255, 1])),
        ],
        acks: [],
        ended: [],
        serial: 1,
        ids: true,
      };
      await call('runs of outputs', log.commit(lease, commit));
      await call('the same again (its reply was lost)', log.commit(lease, commit));
      await call(
        'a replay: some at or below the marks, some above, a session going back',
        log.commit(lease, {
          outputs: [
            out(a, 3, 'x'),
            out(a, 4, 'x'),
            out(b, 3, 'x'),
            out(b, 4, 'b4'),
            out(b, 5, 'b5'),
            out(c, 8, 'x'),
            out(c, 11, 'c11'),
          ],
          acks: [],
          ended: [],
          serial: 2,
          ids: true,
          check: true,
        }),
      );
      await call('outputs', side.outputs(0));
    });
    const outputs = record.find(([label]) => label === 'outputs')[1];
    assert.equal(outputs.length, 15);
  });

  test('commit with check: output and count divergences, digests forgotten with the session', async () => {
    await contract(async (side, call) => {
      const { log } = side;
      const [e1] = await side.append(0, [ev('a', 1)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('read', log.read(lease, '>', 10));
      const sid = `a@${e1}`;
      const out = (seq, payload) => ({ sid, seq, key: 'a', payload });
      await call('first run', log.commit(lease, { outputs: [out(1, 'x'), out(2, 'y')], acks: [], ended: [], check: true }));
      await call(
        'a replay that differs at seq 2, and an error where a value was',
        log.commit(lease, {
          outputs: [out(1, 'x'), out(2, 'Y'), { sid, seq: 1, key: 'a', error: '{"name":"E","message":"m"}' }],
          acks: [],
          ended: [],
          check: true,
          serial: 7,
        }),
      );
      await call(
        'ended with fewer outputs',
        log.commit(lease, { outputs: [], acks: [e1], ended: [sid], endedSeqs: [1], check: true }),
      );
      await call('the sid again, fresh', log.commit(lease, { outputs: [out(1, 'z')], acks: [], ended: [], check: true }));
      await call(
        'ended with as many: no divergence',
        log.commit(lease, { outputs: [], acks: [], ended: [sid], endedSeqs: [1], check: true }),
      );
    });
  });

  test('commit with check: each end kept, a later end of the sid compared with it (kind boundary), the first kept; trimmed with the input', async () => {
    const record = await contract(async (side, call) => {
      const { log } = side;
      // Three ms apart, so the trim can tell their sessions' first entries apart.
      const [e1, e2] = await side.append(0, [ev('a', 1), ev('a', 2)]);
      await side.sleep(3);
      const [e3] = await side.append(0, [ev('b', 3)]);
      await side.sleep(3);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('read', log.read(lease, '>', 10));
      const a = `a@${e1}`;
      const b = `b@${e3}`;
      const end = (sid, reason, last, check = true) => ({
        outputs: [],
        acks: [],
        ended: [sid],
        endedSeqs: [0],
        endedAt: [{ reason, last }],
        check,
      });
      await call('a ends by idle after e2', log.commit(lease, end(a, 'idle', e2)));
      await call('the same end again (a retry): nothing', log.commit(lease, end(a, 'idle', e2)));
      await call('ended by return instead', log.commit(lease, end(a, 'return', e2)));
      await call(
        'ended after e1, and b ends: only a flagged',
        log.commit(lease, {
          outputs: [],
          acks: [],
          ended: [b, a],
          endedSeqs: [0, 0],
          endedAt: [
            { reason: 'events', last: 't2' },
            { reason: 'idle', last: e1 },
          ],
          check: true,
        }),
      );
      await call('without check: neither compared nor kept', log.commit(lease, end(`a@${e2}`, 'idle', e2, false)));
      await call(
        'with check, no end given: nothing kept',
        log.commit(lease, { ...end(`b@${e2}`, 'idle', e2), endedAt: undefined }),
      );
      await call('the ends kept: the first of each', side.ends(0));
      await call('ack a', log.commit(lease, { outputs: [], acks: [e1, e2], ended: [] }));
      await call('trim to e3', log.trim(lease));
      await call("a's end went with its entries; b's stays", side.ends(0));
      await call('a ends elsewhere again: nothing to compare with, kept anew', log.commit(lease, end(a, 'return', e1)));
      await call('ack b', log.commit(lease, { outputs: [], acks: [e3], ended: [] }));
      await side.sleep(3);
      const [e4] = await side.append(0, [ev('c', 4)]);
      await call('read e4', log.read(lease, '>', 10));
      await call('ack e4', log.commit(lease, { outputs: [], acks: [e4], ended: [] }));
      await call('trim to the last delivered', log.trim(lease));
      await call('every end older than e4 went', side.ends(0));
    });
    const at = (label) => record.find(([l]) => l === label)[1];
    assert.deepEqual(at('ended by return instead').diverged, [
      { kind: 'boundary', index: 0, committed: { reason: 'idle', last: '#2' } },
    ]);
    assert.deepEqual(at('ended after e1, and b ends: only a flagged').diverged, [
      { kind: 'boundary', index: 1, committed: { reason: 'idle', last: '#2' } },
    ]);
    assert.deepEqual(at('the ends kept: the first of each'), [
      ['a@#1', 'idle #2'],
      ['b@#3', 'events t2'],
    ]);
    assert.deepEqual(at("a's end went with its entries; b's stays"), [['b@#3', 'events t2']]);
    assert.deepEqual(at('every end older than e4 went'), []);
  });

  test('wake: due or not yet, once per (sid, timer id), forgotten when the session ends; close markers and ticks', async () => {
    await contract(async (side, call) => {
      const { log } = side;
      const [e1] = await side.append(0, [ev('a', 1)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('read', log.read(lease, '>', 10));
      const sid = `a@${e1}`;
      const notYet = await side.run(log.wake(lease, 'a', sid, 1, 4_000_000_000_000, 'p'));
      await call('not due yet', Promise.resolve(some(notYet)));
      await call('due', log.wake(lease, 'a', sid, 1, 1000, Buffer.from('payload')));
      await call('again', log.wake(lease, 'a', sid, 1, 1000, 'payload'));
      await call('another timer', log.wake(lease, 'a', sid, 2, 1001, 'p2'));
      await call('close marker', log.markClose(lease, 'a', sid));
      await call('age marker', log.markClose(lease, 'a', sid, 'age'));
      await call('tick', log.markClose(lease, '', ''));
      await call('read them', log.read(lease, '>', 10));
      await call('end the session', log.commit(lease, { outputs: [], acks: [], ended: [sid], endedSeqs: [0] }));
      await call('its timer 1 again: a new wake-up', log.wake(lease, 'a', sid, 1, 1000, 'payload'));
    });
  });

  test('trim: to the oldest pending entry, or the last delivered; a trimmed pending entry comes back empty', async () => {
    await contract(async (side, call) => {
      const { log } = side;
      const ids = await side.append(0, [ev('a', 1), ev('b', 2), ev('c', 3), ev('d', 4)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('trim with nothing delivered', log.trim(lease));
      await call('read 3', log.read(lease, '>', 3));
      await call('ack the 2nd', log.commit(lease, { outputs: [], acks: [ids[1]], ended: [] }));
      await call('trim: nothing before the 1st pending', log.trim(lease));
      await call('ack the 1st', log.commit(lease, { outputs: [], acks: [ids[0]], ended: [] }));
      await call('trim: to the 3rd', log.trim(lease));
      await call('entries of a trimmed id', log.entries(lease, [ids[0], ids[2]]));
      await call('ack the 3rd', log.commit(lease, { outputs: [], acks: [ids[2]], ended: [] }));
      await call('trim: to the last delivered', log.trim(lease));
      await call('the undelivered one is still there', log.read(lease, '>', 10));
      await call('lag', log.lag(0));
      await call('trimOutputs without a group or a cap', log.trimOutputs(lease, true, 0));
    });
  });

  test('pinned, heartbeats and leave', async () => {
    await contract(async (side, call) => {
      const { log } = side;
      await call('pinned with no input', log.pinned(0));
      await side.append(0, [ev('a', 1)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      await call('pinned with nothing pending', log.pinned(0));
      await call('read', log.read(lease, '>', 10));
      await side.sleep(30);
      const pinned = await side.run(log.pinned(0));
      await call('pinned by the pending entry', Promise.resolve(pinned >= 30));
      // (The time another registration has left depends on when each side ran: recorded as "some".)
      const heartbeat = (worker, ttl, extend, advert) =>
        log.heartbeat(worker, ttl, extend, advert).then(({ live, next, adverts }) => ({
          live,
          ...(next === undefined ? {} : { next: { worker: next.worker, left: some(next.left) } }),
          adverts: [...adverts].sort(([a], [b]) => (a < b ? -1 : 1)),
        }));
      await call('w1 alone', heartbeat('w1', 10_000));
      await call('w2 sees w1', heartbeat('w2', 5_000));
      await call('w1 leaves', log.leave('w1'));
      await call('w2 alone', heartbeat('w2', 5_000));
      await call('w3 sees w2', heartbeat('w3', 50));
      // Without extending (a balance's): w3's registration keeps its expiry, and w4's is made.
      await call('w3 not extended', heartbeat('w3', 5_000, false));
      await call('w4 registered', heartbeat('w4', 5_000, false, { version: 'v2', runs: ['v2', 'v1'] }));
      await side.sleep(120);
      await call('w3 ran out (its advert with it)', heartbeat('w2', 5_000, true, { version: 'v1', runs: ['v1'] }));
      await call('w4 leaves', log.leave('w4'));
      await call('w4 and its advert gone', heartbeat('w2', 5_000, true, { version: 'v1', runs: ['v1'] }));
    });
  });

  test('versions: an opening kept once per session with its first write (commit or wake-up), counted per version, gone with its end; a lease refused while a version the worker does not run has a live session', async () => {
    await contract(async (side, call) => {
      const { log } = side;
      const [e1, e2] = await side.append(0, [ev('a', 1), ev('b', 2)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000, ['v1']));
      await call('read', log.read(lease, '>', 10));
      const limits = { idleTimeout: 500, maxSessionAge: 0, maxSessionEvents: 0, maxSessionTimers: 10 };
      const a = { sid: `a@${e1}`, version: 'v1', limits };
      const b = { sid: `b@${e2}`, version: 'v2', limits: { ...limits, idleTimeout: 900 } };
      const out = (o, seq) => ({ sid: o.sid, seq, key: o.sid[0], payload: Buffer.from(`${seq}`) });
      await call('a commit with an opening', log.commit(lease, { outputs: [out(a, 1)], acks: [], ended: [], opened: [a] }));
      await call(
        'again: kept once',
        log.commit(lease, { outputs: [out(a, 2)], acks: [], ended: [], opened: [{ ...a, version: 'v9' }] }),
      );
      await call('a wake-up with an opening', log.wake(lease, 'b', b.sid, 1, 0, Buffer.from('w'), b));
      await call(
        'openings',
        log.openings(lease).then((m) => [...m].sort()),
      );
      await call(
        'refused to a worker of v1 only',
        log.acquire(0, 'w2', 10_000, ['v1']).then((r) => ('refused' in r ? r : 'held')),
      );
      await call('release', log.release(lease));
      await call('refused once free', log.acquire(0, 'w2', 10_000, ['v1']));
      await call('refused with no version', log.acquire(0, 'w2', 10_000));
      const again = await call('taken by a worker of both', log.acquire(0, 'w3', 10_000, ['v2', 'v1']));
      await call('an end removes its opening', log.commit(again, { outputs: [], acks: [e2], ended: [b.sid] }));
      await call(
        'openings after',
        log.openings(again).then((m) => [...m].sort()),
      );
      await call('release again', log.release(again));
      await call('only v1 refused now', log.acquire(0, 'w4', 10_000, ['v2']));
    });
  });

  test("marks: the place of a session's last output written (and its digest) is kept beside its mark, read with snapshots and by sid; a migrated opening keeps the version it replaced", async () => {
    await contract(async (side, call) => {
      const { log } = side;
      const [e1, e2] = await side.append(0, [ev('a', 1), ev('b', 2)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000, ['*']));
      await call('read', log.read(lease, '>', 10));
      const a = `a@${e1}`;
      const b = `b@${e2}`;
      // (With a digest of its payload where given: a handler that journals.)
      const out = (sid, seq, at, digest) => ({
        sid,
        seq,
        key: sid[0],
        payload: Buffer.from(`${seq}`),
        ...(at ? { at } : {}),
        ...(digest ? { digest } : {}),
      });
      const marks = () => log.marks(lease, [a, b, 'c@1-0']).then((m) => [...m].sort());
      const checkpoint = { sid: a, key: 'a', seq: 1, lastTime: 5, events: 1, state: Buffer.from('{}') };
      await call(
        'outputs with places, a checkpoint between',
        log.commit(lease, {
          outputs: [out(a, 1, [0, 1]), out(a, 2, [1, 1]), out(a, 3, [1, 2], 0x12345678), out(b, 1)],
          checkpoints: [checkpoint],
          acks: [],
          ended: [],
        }),
      );
      await call('marks', marks());
      await call(
        'snapshots with the place',
        log.snapshots(lease).then((found) => found.map((f) => [f.sid, f.written, f.writtenAt, f.writtenDigest])),
      );
      await call(
        'outputs written before keep the place; a new one moves it',
        log.commit(lease, {
          outputs: [out(a, 3, [7, 7]), out(a, 4, [2, 1], 0x0badf00d), out(b, 2, [0, 2, true], 0xffffffff)],
          acks: [],
          ended: [],
        }),
      );
      await call('marks after', marks());
      await call('an output with no place leaves none', log.commit(lease, { outputs: [out(a, 5)], acks: [], ended: [] }));
      await call('marks then', marks());
      const limits = { idleTimeout: 500, maxSessionAge: 0, maxSessionEvents: 0, maxSessionTimers: 10 };
      await call(
        'a migrated opening',
        log.commit(lease, { outputs: [], acks: [], ended: [], opened: [{ sid: b, version: 'v2', limits, replaces: 'v1' }] }),
      );
      await call(
        'openings',
        log.openings(lease).then((m) => [...m].sort()),
      );
      await call('both end', log.commit(lease, { outputs: [], acks: [e1, e2], ended: [a, b] }));
      await call('no marks left', marks());
    });
  });

  test('wait: at once for entries after a position, at an append, at its time, or interrupted', async () => {
    await contract(async (side, call) => {
      const { log } = side;
      const [e1] = await side.append(0, [ev('a', 1)]);
      await call(
        'entries after 0-0',
        log.wait(
          new Map([
            [0, '0-0'],
            [1, '0-0'],
          ]),
          1000,
        ),
      );
      await call('nothing after the last, time passes', log.wait(new Map([[0, e1]]), 50));
      const waiting = log.wait(
        new Map([
          [0, e1],
          [1, '0-0'],
        ]),
        10_000,
      );
      await side.sleep(20);
      await side.append(1, [ev('z', 2)]);
      await call('woken by an append', waiting);
      const [last] = await side.append(0, [ev('a', 3)]);
      const interrupted = log.wait(new Map([[0, last]]), 10_000);
      await side.sleep(20);
      await log.interrupt();
      await call('interrupted', interrupted);
    });
  });

  test('keyState: a commit keeps states with its ends (the later of a key), read back per key; a retry and a fenced commit write nothing; they expire', async () => {
    await contract(async (side, call) => {
      const { log } = side;
      await side.append(0, [ev('a', 1), ev('b{x}', 2)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      const { entries } = await side.run(log.read(lease, '>', 10));
      const [a, b] = entries.map((e) => e.id);
      await call('none yet', log.keyState(0, 'a'));
      const commit = {
        outputs: [],
        acks: [a, b],
        ended: [`a@${a}`, `b{x}@${b}`],
        kept: [
          { key: 'a', sid: `a@${a}`, state: '{"n":1}' },
          { key: 'b{x}', sid: `b{x}@${b}`, state: Buffer.from([0, 255, 10]) },
        ],
        retention: 60_000,
        serial: 1,
      };
      await call('commit keeps two', log.commit(lease, commit));
      await call('a kept', log.keyState(0, 'a'));
      await call('b{x} kept (bytes, a newline in them)', log.keyState(0, 'b{x}'));
      await call('another partition', log.keyState(1, 'a'));
      await call('the retry', log.commit(lease, { ...commit, kept: [{ key: 'a', sid: 'a@9-9', state: 'retry' }] }));
      await call('a unchanged by the retry', log.keyState(0, 'a'));
      await call(
        'a replaced, short',
        log.commit(lease, {
          outputs: [],
          acks: [],
          ended: [],
          kept: [{ key: 'a', sid: 'a@1-1', state: '2' }],
          retention: 300,
          serial: 2,
        }),
      );
      await call('a replaced', log.keyState(0, 'a'));
      await side.sleep(500);
      await call('a expired', log.keyState(0, 'a'));
      await call('b{x} still kept', log.keyState(0, 'b{x}'));
      await call('release', log.release(lease));
      await call(
        'fenced commit',
        log.commit(lease, {
          outputs: [],
          acks: [],
          ended: [],
          kept: [{ key: 'z', sid: 'z@1-0', state: '1' }],
          retention: 60_000,
          serial: 3,
        }),
      );
      await call('nothing of it', log.keyState(0, 'z'));
    });
  });

  test("journal: entries a commit writes (a session's records of the commit as one) are read back exactly, per partition; unjournal forgets them (also one written in the same commit); a retry and a fenced commit write and forget nothing", async () => {
    const record = await contract(async (side, call) => {
      const { log } = side;
      const [e1, e2] = await side.append(0, [ev('a', 1), ev('k y', 2)]);
      // (Later: each partition's input gives ids of its own, and b's must not be one of a's in the record.)
      await side.sleep(3);
      const [f1] = await side.append(1, [ev('b', 3)]);
      const lease = await call('acquire', log.acquire(0, 'w1', 10_000));
      const other = await call('acquire the other partition', log.acquire(1, 'w1', 10_000));
      const a = `a@${e1}`;
      // (A key may hold a space: its sid does, and the field's last space splits it from the place.)
      const ky = `k y@${e2}`;
      const b = `b@${f1}`;
      const rec = (at, kind, name, payload) => ({ at, kind, name, payload });
      // Each entry as read, sorted by sid and first place: its records in order, each with its payload as hex (exact
      // bytes) and whether it is a Buffer.
      const journal = (l) =>
        log
          .journal(l)
          .then((found) =>
            found
              .map((e) => [
                e.sid,
                ...e.records.map((r) => [
                  r.at,
                  r.kind,
                  r.name,
                  Buffer.isBuffer(r.payload),
                  Buffer.from(r.payload).toString('hex'),
                ]),
              ])
              .sort(([s1, [a1]], [s2, [a2]]) => (s1 !== s2 ? (s1 < s2 ? -1 : 1) : a1 < a2 ? -1 : a1 > a2 ? 1 : 0)),
          );
      const none = { outputs: [], acks: [], ended: [] };
      await call('none yet', journal(lease));
      await call(
        'a commit journals a result, a stream (bytes, an empty chunk, its end) and an error, as one entry per session',
        log.commit(lease, {
          ...none,
          journal: [
            {
              sid: a,
              records: [
                rec('1', 'v', 'llm', '{"text":"hi"}'),
                // (Bytes with a newline and spaces in them, and a name with a space: the value's own lines do not split them.)
                rec('2.0', 'v', 'chunks', Buffer.from([0, 255, 10, 32, 0])),
                rec('2.1', 'v', 'chunks', ''),
                rec('2.end', 'x', 'chunks', Buffer.alloc(0)),
                rec('3', 'e', 'a tool', '{"name":"Error","message":"boom\\n 3 x"}'),
              ],
            },
            { sid: ky, records: [rec('1', 'v', 'n\u00e9', 'caf\u00e9')] },
          ],
          serial: 1,
        }),
      );
      await call('read back', journal(lease));
      await call(
        'the other partition journals its own',
        log.commit(other, { ...none, journal: [{ sid: b, records: [rec('1', 'v', 'llm', 'b1')] }], serial: 1 }),
      );
      await call('partition 0 reads its own only', journal(lease));
      await call('partition 1 reads its own only', journal(other));
      const second = {
        ...none,
        checkpoints: [{ sid: a, key: 'a', seq: 1, lastTime: 5, events: 1, state: '{}', calls: 3 }],
        journal: [
          { sid: a, records: [rec('4', 'v', 'llm', 'four'), rec('5', 'v', 'llm', 'five')] },
          { sid: ky, records: [rec('2', 'v', 'llm', 'two')] },
        ],
        unjournal: [`${a} 1`, `${ky} 2`, `${a} 9`],
        serial: 2,
      };
      await call('a checkpoint forgets an entry; one written and forgotten in one commit is not kept', log.commit(lease, second));
      await call('after the forget', journal(lease));
      await call(
        'a retry (same serial, other entries): nothing written, nothing forgotten',
        log.commit(lease, {
          ...second,
          journal: [{ sid: a, records: [rec('6', 'v', 'llm', 'retry')] }],
          unjournal: [`${a} 4`, `${ky} 1`],
        }),
      );
      await call('unchanged by the retry', journal(lease));
      await call(
        'an ended session forgets its entries',
        log.commit(lease, { ...none, ended: [ky], endedSeqs: [0], unjournal: [`${ky} 1`], serial: 3 }),
      );
      await call('after the end', journal(lease));
      await call('release', log.release(lease));
      await call(
        'fenced commit',
        log.commit(lease, {
          ...none,
          journal: [{ sid: a, records: [rec('7', 'v', 'llm', 'late')] }],
          unjournal: [`${a} 4`],
          serial: 4,
        }),
      );
      const next = await call('acquire again', log.acquire(0, 'w2', 10_000));
      await call('nothing of the fenced commit', journal(next));
      await call(
        'snapshots keep the count of calls',
        log.snapshots(next).then((found) => found.map((f) => [f.sid, f.calls])),
      );
    });
    const at = (label) => record.find(([l]) => l === label)[1];
    const hex = (v) => Buffer.from(v).toString('hex');
    // The reference's own answers (the other sides must give the same): what a commit wrote, read back exactly.
    assert.deepEqual(at('read back'), [
      [
        'a@#1',
        ['1', 'v', 'llm', true, hex('{"text":"hi"}')],
        ['2.0', 'v', 'chunks', true, '00ff0a2000'],
        ['2.1', 'v', 'chunks', true, ''],
        ['2.end', 'x', 'chunks', true, ''],
        ['3', 'e', 'a tool', true, hex('{"name":"Error","message":"boom\\n 3 x"}')],
      ],
      ['k y@#2', ['1', 'v', 'n\u00e9', true, hex('caf\u00e9')]],
    ]);
    assert.deepEqual(at('partition 1 reads its own only'), [['b@#3', ['1', 'v', 'llm', true, hex('b1')]]]);
    assert.deepEqual(at('partition 0 reads its own only'), at('read back'));
    const after = [
      ['a@#1', ['4', 'v', 'llm', true, hex('four')], ['5', 'v', 'llm', true, hex('five')]],
      ['k y@#2', ['1', 'v', 'n\u00e9', true, hex('caf\u00e9')]],
    ];
    assert.deepEqual(at('after the forget'), after);
    assert.deepEqual(at('unchanged by the retry'), after);
    assert.deepEqual(at('after the end'), after.slice(0, 1));
    assert.equal(at('fenced commit').code, 'ERR_VELO_FENCED');
    assert.deepEqual(at('nothing of the fenced commit'), after.slice(0, 1));
    assert.deepEqual(at('snapshots keep the count of calls'), [['a@#1', 3]]);
  });

  test("journal: records of every kind as the journal writes them (a result, undefined, an error; a stream's chunks, undefined among them, its end or its error) come back exactly at a takeover, the first record's place naming the entry", async () => {
    // Each kind in each place: first, between and last in an entry (an undefined's empty payload at the value's very
    // end), alone in one, in a text entry (the JSON codec: every payload a string, as the journal makes `u` and `x`)
    // and in a bytes one, beside payload bytes that read as a record's header; each with the outputs its handler had
    // yielded for its input before it (0, or the count given).
    const rec = (at, kind, name, payload, yielded = 0) => ({ at, kind, name, payload, yielded });
    const text = [
      rec('1', 'u', 'notify', ''),
      rec('2', 'v', 'price', '42'),
      rec('3.0', 'v', 'model', '"he"'),
      rec('3.1', 'u', 'model', ''),
      rec('3.2', 'v', 'model', '"llo"', 2),
      rec('3.end', 'x', 'model', '', 3),
      rec('4', 'e', 'a tool', '{"name":"TypeError","message":"bad\\nu5 0 x","code":"E_X"}'),
      rec('5.0', 'u', 'quiet', ''),
      rec('5.end', 'e', 'quiet', '{"name":"Error","message":"cut"}'),
      rec('6', 'u', 'last', ''),
    ];
    const alone = [rec('1', 'u', 'only', '')];
    const bytes = [
      rec('1', 'u', 'bin', ''),
      // (A payload that reads as a record's header, then a newline alone, then nothing.)
      rec('2', 'v', 'bin', Buffer.from('u3 0 bin\n')),
      rec('3', 'u', 'bin', ''),
      rec('4.0', 'v', 'bin', Buffer.from([10])),
      rec('4.1', 'u', 'bin', Buffer.alloc(0), 12),
      rec('4.end', 'x', 'bin', '', 123456789),
    ];
    const later = [rec('7', 'u', 'after', ''), rec('8.0', 'u', 'stream', ''), rec('8.end', 'x', 'stream', '')];
    const record = await contract(async (side, call) => {
      const { log } = side;
      const [e1, e2, e3] = await side.append(0, [ev('a', 1), ev('b', 2), ev('c', 3)]);
      const [a, b, c] = [`a@${e1}`, `b@${e2}`, `c@${e3}`];
      const journal = (l) =>
        log
          .journal(l)
          .then((found) =>
            found
              .map((e) => [
                e.sid,
                ...e.records.map((r) => [
                  r.at,
                  r.kind,
                  r.name,
                  r.yielded,
                  Buffer.isBuffer(r.payload),
                  Buffer.from(r.payload).toString('hex'),
                ]),
              ])
              .sort(([s1, [a1]], [s2, [a2]]) => (s1 !== s2 ? (s1 < s2 ? -1 : 1) : a1 < a2 ? -1 : a1 > a2 ? 1 : 0)),
          );
      const none = { outputs: [], acks: [], ended: [] };
      // (A lease long enough for the commit on a loaded machine; the takeover waits for it to run out.)
      const lease = await call('acquire', log.acquire(0, 'w1', 1000));
      await call(
        'a commit journals every kind',
        log.commit(lease, {
          ...none,
          journal: [
            { sid: a, records: text },
            { sid: b, records: alone },
            { sid: c, records: bytes },
          ],
          serial: 1,
        }),
      );
      // A crash: the lease runs out, and the next owner reads the journal to replay the sessions.
      await side.sleep(1200);
      const next = await call('the takeover', log.acquire(0, 'w2', 10_000));
      await call('read at the takeover', journal(next));
      await call(
        'the next owner journals after them and forgets an entry named by an undefined',
        log.commit(next, { ...none, journal: [{ sid: a, records: later }], unjournal: [`${b} 1`], serial: 1 }),
      );
      await call('read after', journal(next));
      await call('release', log.release(next));
      const third = await call('acquire again', log.acquire(0, 'w3', 10_000));
      await call('read by the owner after', journal(third));
    });
    const at = (label) => record.find(([l]) => l === label)[1];
    // Exact bytes: every payload as given (a string's UTF-8), every one a Buffer as read.
    const read = (sid, records) => [
      sid,
      ...records.map((r) => [r.at, r.kind, r.name, r.yielded, true, Buffer.from(r.payload).toString('hex')]),
    ];
    const first = [read('a@#1', text), read('b@#2', alone), read('c@#3', bytes)];
    assert.deepEqual(at('read at the takeover'), first);
    const after = [read('a@#1', text), read('a@#1', later), read('c@#3', bytes)];
    assert.deepEqual(at('read after'), after);
    assert.deepEqual(at('read by the owner after'), after);
  });
}
