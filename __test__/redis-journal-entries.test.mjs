// How a worker stores its sessions' journals, on a private Redis: a session's records of one commit are one field
// of the partition's journal hash (its calls in order), not a field per call; the commit of a checkpoint forgets
// exactly the fields of the calls it covers (a field never holds calls both before and after a checkpoint, also
// when the calls after it go in the same commit), and a session's end forgets all of its fields.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { redisProducer, redisWorker } from 'velo-stream/redis';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';

useRedis();

/**
 * A stored entry's records as `<at>:<yielded> <name>=<payload>` (`yielded`: the outputs the handler had yielded for
 * its input before the record; the values here are ASCII: a byte is a character).
 */
function records(value) {
  const found = [];
  for (let i = 0; i < value.length;) {
    const nl = value.indexOf('\n', i);
    const [at, size, yielded, ...name] = value.slice(i + 1, nl).split(' ');
    const end = nl + 1 + Number(size);
    found.push(`${at}:${yielded} ${name.join(' ')}=${value.slice(nl + 1, end)}`);
    i = end;
  }
  return found;
}

test("a commit stores a session's journal records as one field; a checkpoint forgets exactly the fields it covers, an end all of them", async () => {
  const name = fresh('jentries');
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        // Two calls per event: one that answers at once, one whose body returns a promise.
        const one = await ctx.run('one', () => e.n);
        const two = await ctx.run('two', async () => e.n * 10);
        if (e.checkpoint) ctx.checkpoint({ n: e.n });
        yield { n: e.n, one, two };
        if (e.end) return;
      }
    },
    { idleTimeout: 600_000 },
  );
  const producer = redisProducer({ client, name, partitions: 1 });
  const errors = [];
  const worker = redisWorker(fn, { client, name, partitions: 1, leaseTtl: 5000, onError: (e) => errors.push(e) });
  const key = `velo:{${name}:p0}:journal`;
  /** The journal hash as `{ <key>: [[<first place>, ...records], ...] }`, fields sorted by their first call. */
  const journal = async () => {
    const found = {};
    for (const [field, value] of Object.entries(await client.hGetAll(key))) {
      const space = field.lastIndexOf(' ');
      const sid = field.slice(0, space);
      (found[sid.slice(0, sid.lastIndexOf('@'))] ??= []).push([field.slice(space + 1), ...records(value)]);
    }
    for (const list of Object.values(found)) list.sort((x, y) => Number(x[0]) - Number(y[0]));
    return found;
  };
  const outputs = (n) => eventually(() => worker.stats().outputs >= n, `${n} outputs`);
  try {
    await producer.sendMany([
      ['a', { n: 1 }],
      ['b', { n: 1 }],
      ['a', { n: 2 }],
      ['b', { n: 2 }],
    ]);
    await outputs(4);
    const first = await journal();
    for (const k of ['a', 'b']) {
      // Each field is named by its first record's place and holds the calls after it in order (both calls of an
      // event at least: they are made in one turn, before any commit); together, every call of the session once.
      assert.ok(first[k].length <= 2, `${k}: a field per commit, not per call: ${JSON.stringify(first[k])}`);
      for (const [at, ...rs] of first[k]) {
        assert.ok(rs.length >= 2 && rs.length % 2 === 0, JSON.stringify(first[k]));
        assert.equal(rs[0].split(':')[0], at);
      }
      assert.deepEqual(
        first[k].flatMap(([, ...rs]) => rs),
        ['1:0 one=1', '2:0 two=10', '3:0 one=2', '4:0 two=20'],
      );
    }

    // A checkpoint after a's calls 5 and 6, and calls 7 and 8 after it, in the same commit: the checkpoint's commit
    // forgets a's fields of calls 1-6 (among them the one written in that commit) and keeps the one of 7-8.
    await producer.sendMany([
      ['a', { n: 3, checkpoint: true }],
      ['a', { n: 4 }],
    ]);
    await outputs(6);
    const second = await journal();
    assert.deepEqual(second.a, [['7', '7:0 one=4', '8:0 two=40']]);
    assert.deepEqual(second.b, first.b, "b's fields stay");

    // b's session ends: all of its fields go with it.
    await producer.send('b', { n: 3, end: true });
    await outputs(7);
    assert.deepEqual(await journal(), { a: second.a });
    assert.deepEqual(errors, []);
  } finally {
    await worker.close();
  }
});

test('a call answered after its session ended, or made on a context kept past the end, is recorded nowhere', async () => {
  const name = fresh('jafter');
  let late = null;
  let kept = null;
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        if (e.plain) {
          yield { plain: true };
          return;
        }
        await ctx.run('first', () => 1);
        // Left running: it answers after the handler returned.
        ctx.run('late', () => new Promise((resolve) => (late = resolve))).catch(() => {});
        kept = ctx;
        yield { done: true };
        return;
      }
    },
    { idleTimeout: 600_000 },
  );
  const producer = redisProducer({ client, name, partitions: 1 });
  const errors = [];
  const worker = redisWorker(fn, { client, name, partitions: 1, leaseTtl: 5000, onError: (e) => errors.push(e) });
  const key = `velo:{${name}:p0}:journal`;
  try {
    await producer.send('a', { n: 1 });
    await eventually(() => worker.stats().outputs >= 1 && late !== null, "a's output");
    // The end's commit forgets every field of the session: the journal is empty once it is done.
    await eventually(async () => (await client.hLen(key)) === 0 && worker.stats().sessions === 0, "a's end committed");
    late('late answer');
    assert.equal(await kept.run('after', () => 'answer after the end'), 'answer after the end', 'called through');
    // Another session's commit of the partition, which would carry anything queued since.
    await producer.send('b', { plain: true });
    await eventually(() => worker.stats().outputs >= 2, "b's output");
    await eventually(() => worker.stats().sessions === 0, "b's end committed");
    assert.deepEqual(await client.hGetAll(key), {}, 'no journal field left for a session that ended');
  } finally {
    await worker.close();
  }
  assert.deepEqual(errors, []);
});
