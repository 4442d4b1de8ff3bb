// fn.sessions({ debounce }): events for a key within `wait` ms collapse to one, in virtual time (node:test's mock
// timers drive the debounce timers and its clock, `Date.now`); no wall-clock assertion. Sessions use
// `idleTimeout: 0` so the only timers are the debounce's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { settle } from './helpers/util.mjs';
import { run } from './helpers/child.mjs';

// Node 20 warns on stderr at the first use of mock timers (an ExperimentalWarning); this file expects that one.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  if (String(warning?.message ?? warning).includes('MockTimers')) return;
  emitWarning.call(process, warning, ...rest);
};

const echo = streamFn(async function* echo(events) {
  for await (const e of events) yield e;
});

/** Reads what the merged output has now (without waiting for more). */
function collector(sessions) {
  const got = [];
  void (async () => {
    for await (const item of sessions) got.push('error' in item ? `${item.key}:error` : `${item.key}:${item.value}`);
  })();
  return got;
}

/** Sends `event` to `key` at virtual time `at` (advancing to it), letting the delivery run. */
async function at(t, now, fn) {
  t.mock.timers.tick(now - Date.now());
  await fn?.();
  await settle();
}

test('trailing: the last event of a burst, after wait ms of quiet; the others dropped and counted', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const s = echo.sessions({ idleTimeout: 0, debounce: { wait: 100 } });
  const got = collector(s);
  await at(t, 0, () => s.send('k', 'a'));
  await at(t, 50, () => s.send('k', 'b'));
  await at(t, 60, () => s.send('other', 'x'));
  await at(t, 149, () => {});
  assert.deepEqual(got, [], 'nothing before 100 ms of quiet');
  assert.equal(s.size, 0, 'no session opened for a held event');
  assert.equal(s.held, 2);
  assert.equal(s.dropped, 1);
  await at(t, 150, () => {});
  assert.deepEqual(got, ['k:b']);
  await at(t, 160, () => {});
  assert.deepEqual(got, ['k:b', 'other:x']);
  assert.equal(s.held, 0);
  // A new burst after the quiet period is a new group.
  await at(t, 300, () => s.send('k', 'c'));
  await at(t, 400, () => {});
  assert.deepEqual(got, ['k:b', 'other:x', 'k:c']);
  assert.equal(s.dropped, 1);
  await s.close();
});

test('trailing with maxDelay: a steady stream of events is delivered every maxDelay ms, not postponed for ever', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const s = echo.sessions({ idleTimeout: 0, debounce: { wait: 100, maxDelay: 250 } });
  const got = collector(s);
  // An event every 60 ms (always within the 100 ms quiet period) from 0 to 600.
  for (let now = 0; now <= 600; now += 60) await at(t, now, () => s.send('k', String(now)));
  // Groups: 0..240 delivered at 250 (the event of 240); 300..540 at 550 (540); 600 after quiet, at 700.
  assert.deepEqual(got, ['k:240', 'k:540']);
  await at(t, 699, () => {});
  assert.deepEqual(got, ['k:240', 'k:540']);
  await at(t, 700, () => {});
  assert.deepEqual(got, ['k:240', 'k:540', 'k:600']);
  assert.equal(s.dropped, 11 - 3);
  await s.close();
});

test('leading: the first event at once, the rest of the quiet period dropped; maxDelay lets one through', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const s = echo.sessions({ idleTimeout: 0, debounce: { wait: 100, edge: 'leading' } });
  const got = collector(s);
  await at(t, 0, () => s.send('k', 'a'));
  assert.deepEqual(got, ['k:a'], 'delivered at once');
  await at(t, 50, () => s.send('k', 'b')); // quiet period: dropped
  await at(t, 120, () => s.send('k', 'c')); // 70 ms after b: still within it (each event restarts it)
  await at(t, 230, () => s.send('k', 'd')); // 110 ms of quiet: delivered
  assert.deepEqual(got, ['k:a', 'k:d']);
  assert.equal(s.dropped, 2);
  assert.equal(s.held, 0);
  await s.close();

  const m = echo.sessions({ idleTimeout: 0, debounce: { wait: 100, edge: 'leading', maxDelay: 150 } });
  const mgot = collector(m);
  for (let now = 1000; now <= 1360; now += 60) await at(t, now, () => m.send('k', String(now - 1000)));
  // Never quiet for 100 ms; delivered: 0, then the first at least 150 ms after the last delivered: 180, 360.
  assert.deepEqual(mgot, ['k:0', 'k:180', 'k:360']);
  assert.equal(m.dropped, 4);
  await m.close();
});

test('end(key) and close() deliver a held trailing event first; a reader that leaves drops them (counted)', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const s = echo.sessions({ idleTimeout: 0, debounce: { wait: 100 } });
  const got = collector(s);
  await at(t, 0, () => s.send('k', 'a'));
  await at(t, 10, () => s.send('k', 'b'));
  s.end('k');
  await settle();
  assert.deepEqual(got, ['k:b'], 'end(key) flushed the held event');
  await settle();
  assert.equal(s.size, 0, 'and ended the session it opened');
  await at(t, 20, () => s.send('j', 'c'));
  await s.close();
  assert.deepEqual(got, ['k:b', 'j:c'], 'close() flushed the held event');
  assert.equal(s.held, 0);
  await at(t, 500, () => {});
  assert.deepEqual(got, ['k:b', 'j:c'], 'no later delivery');

  const r = echo.sessions({ idleTimeout: 0, debounce: { wait: 100 } });
  const it = r[Symbol.asyncIterator]();
  await at(t, 600, () => r.send('k', 'x'));
  assert.equal(r.held, 1);
  await it.return();
  assert.equal(r.held, 0);
  assert.equal(r.dropped, 1);
  await at(t, 800, () => {});
  assert.equal(r.size, 0, 'nothing delivered after the reader left');
});

test('debounce options are checked at fn.sessions()', () => {
  const bad = (debounce, code) => assert.throws(() => echo.sessions({ debounce }), { code }, JSON.stringify(debounce));
  bad(100, 'ERR_INVALID_ARG_TYPE');
  bad({}, 'ERR_OUT_OF_RANGE');
  for (const wait of [0, -1, NaN, Infinity, 2 ** 31, '100']) bad({ wait }, 'ERR_OUT_OF_RANGE');
  bad({ wait: 100, edge: 'middle' }, 'ERR_INVALID_ARG_VALUE');
  bad({ wait: 100, maxDelay: 99 }, 'ERR_OUT_OF_RANGE');
  bad({ wait: 100, maxDelay: NaN }, 'ERR_OUT_OF_RANGE');
  bad({ wait: 100, wiat: 1 }, 'ERR_INVALID_ARG_VALUE');
  const s = echo.sessions({ debounce: { wait: 100, edge: 'leading', maxDelay: 100 } });
  assert.equal(s.fn, echo, 'debounce alone: the sessions run on the function itself');
  assert.equal(s.dropped, 0);
});

test('debounce timers keep the process alive no longer than the sessions do', async () => {
  // A leading key's quiet period (10 minutes here) holds nothing to deliver: once the session's idle timeout
  // ends it, the process exits. A held trailing event is delivered (it keeps the process up for its `wait`), and
  // its session then ends on its idle timeout too.
  const script = `
    import { streamFn } from 'velo-stream';
    const echo = streamFn(async function* (events) { for await (const e of events) yield e; });
    const lead = echo.sessions({ idleTimeout: 50, debounce: { wait: 600_000, edge: 'leading' } });
    const trail = echo.sessions({ idleTimeout: 50, debounce: { wait: 100 } });
    const out = [];
    void (async () => { for await (const item of lead) out.push(item.value); })();
    void (async () => { for await (const item of trail) { out.push(item.value); console.log(out.join(',')); } })();
    await lead.send('k', 'first');
    await lead.send('k', 'dropped');
    await trail.send('k', 'held');
  `;
  const { stdout } = await run(['--input-type=module', '-e', script], { timeout: 60_000 });
  assert.equal(stdout.trim(), 'first,held');
});
