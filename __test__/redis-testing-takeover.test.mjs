// checkDeterminism gives a run with a crash the takeover's true bound on top of settleWithin (takeoverWithin in
// js/durable/testing/simulator.ts): the crashed process's lease runs out up to leaseTtl after the crash, and another process
// takes the partition at its next balance, up to leaseTtl / 3 later. With only leaseTtl more, a handler whose
// crash-free run settled in time was rejected for its crash runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { checkDeterminism } from 'velo-stream/testing';
import { takeoverWithin } from '#testing';

const START = Date.UTC(2024, 0, 1);

test('takeoverWithin is a lease and a balance period (a third of it)', () => {
  assert.equal(takeoverWithin(10_000), 13_333);
  assert.equal(takeoverWithin(3000), 4000);
});

test('an echo whose crash-free run settles within settleWithin passes with a crash at each commit', async () => {
  const echo = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { idleTimeout: 1000 },
  );
  const events = [
    { key: 'k', event: 1 },
    { key: 'k', event: 2, at: START + 500 },
  ];
  for (const settleWithin of [1000, 2000]) {
    const result = await checkDeterminism(echo, events, { settleWithin });
    assert.deepEqual(result, { ok: true, crashes: 3 }, `settleWithin ${settleWithin}`);
  }
});

test('a timer a day ahead less 1 ms, with the defaults, passes with a crash just before it is due', async () => {
  const fn = streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        if (e.go) ctx.wakeAt(ctx.entry.time + 86_399_999, { due: 1 });
        else yield 'fired';
      }
    },
    { idleTimeout: 1000 },
  );
  assert.deepEqual(await checkDeterminism(fn, [{ key: 'k', event: { go: 1 } }]), { ok: true, crashes: 2 });
});

test('seeded: an echo with random leaseTtl, idleTimeout and events passes at the tightest settleWithin', async () => {
  let state = 39;
  const int = (lo, hi) => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return lo + (state % (hi - lo + 1));
  };
  for (let round = 0; round < 12; round++) {
    const idleTimeout = int(1, 5000);
    const leaseTtl = int(30, 20_000);
    const echo = streamFn(
      async function* (events) {
        for await (const e of events) yield e;
      },
      { idleTimeout },
    );
    const events = [];
    let at = START;
    for (let i = int(1, 3); i > 0; i--) events.push({ key: 'k', event: i, at: (at += int(0, idleTimeout - 1)) });
    const what = `round ${round}: leaseTtl ${leaseTtl}, idleTimeout ${idleTimeout}, events at ${events.map((e) => e.at - START)}`;
    const result = await checkDeterminism(echo, events, { leaseTtl, settleWithin: idleTimeout }).catch((e) => e);
    assert.equal(result.ok, true, `${what}: ${result.message}`);
  }
});

test('a crash run that does not settle is rejected naming the window it had: settleWithin and the takeover', async () => {
  // Settles crash-free; restored after a crash, it waits for a timer far past any window.
  const fn = streamFn(
    async function* (events, ctx) {
      let armed = false;
      for await (const e of events) {
        if (ctx.restored !== undefined && !armed) {
          armed = true;
          ctx.wakeAt(ctx.entry.time + 100_000_000, 'late');
        }
        if (e === 'late') continue;
        ctx.checkpoint(1);
        yield e;
      }
    },
    { idleTimeout: 1000 },
  );
  const events = [
    { key: 'k', event: 1 },
    { key: 'k', event: 2, at: START + 10 },
  ];
  await assert.rejects(checkDeterminism(fn, events, { settleWithin: 2000 }), {
    code: 'ERR_VELO_TEST_NOT_SETTLED',
    message: new RegExp(
      `the run with a crash after commit 1 did not settle within ${2000 + takeoverWithin(10_000)} ms of virtual ` +
        `time after the last event \\(settleWithin 2000, and ${takeoverWithin(10_000)} for the takeover after the crash\\)`,
    ),
  });
});
