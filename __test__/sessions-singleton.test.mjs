// fn.sessions({ singleton }): one session per key at a time, and what a send to a key with a live session does.
// The handler takes one job per session (its intended use): it reads one event, waits for the test to let it
// finish, and returns. No timers: the test decides when each job ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { deferred, settle } from './helpers/util.mjs';

function oneJob() {
  const jobs = [];
  const fn = streamFn(async function* job(events, ctx) {
    for await (const e of events) {
      const done = deferred();
      jobs.push({ e, done, signal: ctx.signal });
      // A job stops when its session is cancelled (replace), as a real one would through its signal.
      ctx.signal.addEventListener('abort', () => done.resolve(), { once: true });
      await done.promise;
      yield e;
      return;
    }
  });
  return { fn, jobs };
}

function collector(sessions) {
  const got = [];
  void (async () => {
    for await (const item of sessions) got.push('error' in item ? `${item.key}:error` : `${item.key}:${item.value}`);
  })();
  return got;
}

test("singleton 'skip': sends while the key's session is live are dropped and counted", async () => {
  const { fn, jobs } = oneJob();
  const s = fn.sessions({ idleTimeout: 0, singleton: 'skip' });
  const got = collector(s);
  await s.send('k', 'a');
  await s.send('k', 'b'); // live: dropped
  await s.send('j', 'x'); // another key: its own session
  await settle();
  assert.deepEqual(
    jobs.map((j) => j.e),
    ['a', 'x'],
  );
  assert.equal(s.dropped, 1);
  jobs[0].done.resolve();
  await settle();
  assert.deepEqual(got, ['k:a']);
  await settle();
  await s.send('k', 'c'); // the session finished: a new one
  await settle();
  assert.deepEqual(
    jobs.map((j) => j.e),
    ['a', 'x', 'c'],
  );
  jobs[1].done.resolve();
  jobs[2].done.resolve();
  await s.close();
  assert.deepEqual(got.sort(), ['j:x', 'k:a', 'k:c']);
  assert.equal(s.dropped, 1);
});

test("singleton 'replace': a send cancels the live session and opens the next with it", async () => {
  const { fn, jobs } = oneJob();
  const s = fn.sessions({ idleTimeout: 0, singleton: 'replace' });
  const got = collector(s);
  await s.send('k', 'a');
  await settle();
  const sent = s.send('k', 'b');
  await sent; // resolves once the next session took it
  await settle();
  assert.equal(jobs[0].signal.aborted, true, 'the live session was cancelled');
  assert.deepEqual(
    jobs.map((j) => j.e),
    ['a', 'b'],
  );
  // Two replaces before the next session opens: the later wins, the earlier is dropped (counted).
  const c = s.send('k', 'c');
  const d = s.send('k', 'd');
  await Promise.all([c, d]);
  await settle();
  assert.deepEqual(
    jobs.map((j) => j.e),
    ['a', 'b', 'd'],
  );
  assert.equal(s.dropped, 1);
  jobs[2].done.resolve();
  await s.close();
  assert.deepEqual(got, ['k:d'], 'a cancelled session yields nothing');
});

test("singleton 'latest': the one pending event opens the key's next session; a later send replaces it", async () => {
  const { fn, jobs } = oneJob();
  const s = fn.sessions({ idleTimeout: 0, singleton: 'latest' });
  const got = collector(s);
  await s.send('k', 'a');
  const b = s.send('k', 'b');
  const c = s.send('k', 'c');
  await b; // replaced by c: dropped, resolved at once
  await settle();
  assert.deepEqual(
    jobs.map((j) => j.e),
    ['a'],
    'the live session is not disturbed',
  );
  assert.equal(jobs[0].signal.aborted, false);
  assert.equal(s.dropped, 1);
  jobs[0].done.resolve();
  await c; // delivered to the next session once the live one finished
  await settle();
  assert.deepEqual(
    jobs.map((j) => j.e),
    ['a', 'c'],
  );
  jobs[1].done.resolve();
  await s.close();
  assert.deepEqual(got, ['k:a', 'k:c']);
});

test('singleton is checked at fn.sessions(), and runs on the function itself when given alone', () => {
  const { fn } = oneJob();
  for (const singleton of ['one', true, 1]) {
    assert.throws(() => fn.sessions({ singleton }), { code: 'ERR_INVALID_ARG_VALUE' });
  }
  assert.equal(fn.sessions({ singleton: 'skip' }).fn, fn);
});
