// The replay report over recordings exported while workers run (docs/redis/replay-api.md#the-report): an export
// holds entries the worker had read (up to `delivered`) but not yet answered, so the sessions it had begun or
// ended with nothing committed yet are not in it. The recorded handler replays them with no difference: a session
// begun after a kept end (its last input an entry or a timer), one begun inside a session live at the recording (at
// its maxSessionEvents); they are listed in `unverified` with their outputs not compared. A changed handler is
// still caught in the same shapes: by the outputs the recording holds, the ends it kept, and a split inside a
// session whose kept end took the entry. Recordings are written here as exportRecording writes them (no server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { formatReplayReport, replayRecording } from 'velo-stream/testing';

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64');
const t = Date.UTC(2024, 0, 1);
const id = (ms) => `${t + ms}-0`;
const input = (ms, key, value) => ({ id: id(ms), key, v: b64(value) });
const output = (ms, sid, seq, value) => ({ id: id(ms), sid, key: sid.slice(0, sid.lastIndexOf('@')), seq, v: b64(value) });
const recordingOf = (part) => ({
  format: 'velo-stream-recording',
  version: 1,
  name: 'x',
  partitions: 1,
  parts: [{ partition: 0, from: id(0), endsKept: true, outputs: [], ends: [], live: [], ...part }],
});

/** Echoes each event (`reply` changes the one of `{ n: 2 }`); makes a timer at its first event when `timer`. */
const timed = ({ timer = true, reply = (e) => e } = {}) =>
  streamFn(
    async function* (events, ctx) {
      for await (const e of events) {
        yield e.n === 2 ? reply(e) : e;
        if (timer && e.n === 1) ctx.wakeAt(ctx.entry.time + 200, { fired: 1 });
      }
    },
    { idleTimeout: 300 },
  );

// ada's first session: her event, its timer's wake-up (its last input), ended by idle; the worker had read her next
// event (`delivered`) and begun her second session, not yet committed its output.
const ada1 = `ada@${id(0)}`;
const ada2 = `ada@${id(2000)}`;
const afterTimer = (more = {}) =>
  recordingOf({
    delivered: id(2000),
    input: [
      input(0, 'ada', { n: 1 }),
      { id: id(201), key: 'ada', wake: `${ada1} 1`, due: t + 200, v: b64({ fired: 1 }) },
      { id: id(501), key: '', close: '' },
      input(2000, 'ada', { n: 2 }),
    ],
    outputs: [output(1, ada1, 1, { n: 1 }), output(202, ada1, 2, { fired: 1 })],
    ends: [{ sid: ada1, reason: 'idle', last: 't1' }],
    ...more,
  });

test('a session begun after a kept end on a timer, not yet answered when recorded: no difference, listed in unverified', async () => {
  const report = await replayRecording(timed(), afterTimer());
  assert.deepEqual(report.differences, [], formatReplayReport(report));
  assert.equal(report.ok, true);
  assert.deepEqual(report.unverified, [{ partition: 0, key: 'ada', sid: ada2, outputs: 1 }]);
  assert.deepEqual(report.summary, {
    partitions: 1,
    events: 2,
    sessions: 1,
    same: 1,
    open: 0,
    endsKept: 1,
    empty: 0,
    differences: 0,
  });
  assert.match(
    formatReplayReport(report),
    /^OK: 1 recorded sessions .*\n {2}1 replayed sessions where the recording does not say whether a session began \(1 outputs not compared\)$/,
  );

  // The same after an end on an entry (a session without a timer): the same report.
  const noTimer = recordingOf({
    delivered: id(2000),
    input: [input(0, 'ada', { n: 1 }), { id: id(301), key: '', close: '' }, input(2000, 'ada', { n: 2 })],
    outputs: [output(1, ada1, 1, { n: 1 })],
    ends: [{ sid: ada1, reason: 'idle', last: id(0) }],
  });
  const same = await replayRecording(timed({ timer: false }), noTimer);
  assert.equal(same.ok, true, formatReplayReport(same));
  assert.deepEqual(same.unverified, [{ partition: 0, key: 'ada', sid: ada2, outputs: 1 }]);
});

test('after a kept end on a timer, a changed handler is still caught: in the next session where the recording has its outputs, and at the end', async () => {
  // The worker had answered ada's second event: the recording holds that output, and the changed one differs.
  const answered = afterTimer({ outputs: [...afterTimer().parts[0].outputs, output(2001, ada2, 1, { n: 2 })], live: [ada2] });
  assert.equal((await replayRecording(timed(), answered)).ok, true);
  const changed = await replayRecording(timed({ reply: (e) => ({ ...e, changed: true }) }), answered);
  assert.deepEqual(changed.differences, [
    {
      kind: 'output',
      partition: 0,
      key: 'ada',
      sid: ada2,
      seq: 1,
      recorded: { value: { n: 2 } },
      replayed: { value: { n: 2, changed: true } },
    },
  ]);
  // A handler that makes no timer: the first session's timer output is missing, and it ends after its event.
  const noTimer = await replayRecording(timed({ timer: false }), afterTimer());
  assert.deepEqual(
    noTimer.differences.map((d) => [d.kind, d.sid, d.seq, d.replayedEnd]),
    [
      ['missing-output', ada1, 2, undefined],
      ['end', ada1, undefined, { reason: 'idle', last: id(0) }],
    ],
  );
});

// Key a's session at maxSessionEvents 2, live when recorded: the worker had read a's third event, which ends the
// session at its cap and begins the next, and committed neither yet.
const a1 = `a@${id(0)}`;
const a3 = `a@${id(20)}`;
const atCap = (more = {}) =>
  recordingOf({
    delivered: id(20),
    input: [input(0, 'a', { n: 1 }), input(10, 'a', { n: 2 }), input(20, 'a', { n: 3 })],
    outputs: [output(1, a1, 1, { n: 1 }), output(11, a1, 2, { n: 2 })],
    live: [a1],
    ...more,
  });
const echo = (reply = (e) => e, stopAfter = Infinity) =>
  streamFn(
    async function* (events) {
      let taken = 0;
      for await (const e of events) {
        yield e.n === 2 ? reply(e) : e;
        if (++taken >= stopAfter) return;
      }
    },
    { idleTimeout: 1000 },
  );

test('a session live when recorded at its maxSessionEvents, its next entry read but the cap not committed: no split, listed in unverified', async () => {
  const report = await replayRecording(echo(), atCap(), { maxSessionEvents: 2 });
  assert.deepEqual(report.differences, [], formatReplayReport(report));
  assert.equal(report.ok, true);
  assert.deepEqual(report.unverified, [{ partition: 0, key: 'a', sid: a3, outputs: 1 }]);
  assert.equal(report.summary.open, 1);
  // Without checkReplay (no ends kept) the same.
  const noEnds = atCap();
  noEnds.parts[0].endsKept = false;
  assert.equal((await replayRecording(echo(), noEnds, { maxSessionEvents: 2 })).ok, true);
});

test('inside a session live when recorded, a changed handler is still caught by its outputs; a split inside a kept end is reported', async () => {
  const changed = await replayRecording(
    echo((e) => ({ ...e, changed: true })),
    atCap(),
    { maxSessionEvents: 2 },
  );
  assert.deepEqual(
    changed.differences.map((d) => [d.kind, d.sid, d.seq]),
    [['output', a1, 2]],
  );
  // A handler ending the session after its first event: the recorded session's second output is missing.
  const early = await replayRecording(echo(undefined, 1), atCap(), { maxSessionEvents: 2 });
  assert.deepEqual(
    early.differences.map((d) => [d.kind, d.sid, d.seq]),
    [['missing-output', a1, 2]],
  );
  // The session's end kept after the third entry: a cap of 2 splits it there (its third output the cap's failure,
  // the end, the split).
  const ended = atCap({
    outputs: [...atCap().parts[0].outputs, output(21, a1, 3, { n: 3 })],
    ends: [{ sid: a1, reason: 'idle', last: id(20) }],
    live: [],
  });
  assert.equal((await replayRecording(echo(), ended)).ok, true);
  const capped = await replayRecording(echo(), ended, { maxSessionEvents: 2 });
  assert.equal(capped.differences[0].replayed.error.code, 'ERR_VELO_SESSION_EVENTS');
  assert.deepEqual(capped.differences.slice(1), [
    {
      kind: 'end',
      partition: 0,
      key: 'a',
      sid: a1,
      recordedEnd: { reason: 'idle', last: id(20) },
      replayedEnd: { reason: 'events', last: id(10) },
    },
    { kind: 'split', partition: 0, key: 'a', sid: a3, within: a1, outputs: 1 },
  ]);
  assert.deepEqual(
    [capped.differences[0].kind, capped.differences[0].seq, capped.differences[0].recorded],
    ['output', 3, { value: { n: 3 } }],
  );
  assert.deepEqual(capped.unverified, []);
});

test("without checkReplay: a session after the key's last recorded one is unverified; one between two recorded sessions with outputs where the recorded had none is extra-session", async () => {
  // b's sessions (idle 300): one with an output, one of a ping only (no output, so no trace), one with an output;
  // then a ping read but not answered.
  const skipsPings = (pings) =>
    streamFn(
      async function* (events) {
        for await (const e of events) if (pings || !e.ping) yield e;
      },
      { idleTimeout: 300 },
    );
  const b1 = `b@${id(0)}`;
  const b3 = `b@${id(2000)}`;
  const recording = recordingOf({
    endsKept: false,
    delivered: id(3000),
    input: [
      input(0, 'b', { n: 1 }),
      { id: id(301), key: '', close: '' },
      input(1000, 'b', { ping: 1 }),
      { id: id(1301), key: '', close: '' },
      input(2000, 'b', { n: 3 }),
      { id: id(2301), key: '', close: '' },
      input(3000, 'b', { ping: 2 }),
    ],
    outputs: [output(1, b1, 1, { n: 1 }), output(2001, b3, 1, { n: 3 })],
  });
  const same = await replayRecording(skipsPings(false), recording);
  assert.equal(same.ok, true, formatReplayReport(same));
  assert.deepEqual(same.unverified, [
    { partition: 0, key: 'b', sid: `b@${id(1000)}`, outputs: 0 },
    { partition: 0, key: 'b', sid: `b@${id(3000)}`, outputs: 0 },
  ]);
  const yields = await replayRecording(skipsPings(true), recording);
  assert.deepEqual(yields.differences, [{ kind: 'extra-session', partition: 0, key: 'b', sid: `b@${id(1000)}`, outputs: 1 }]);
  assert.deepEqual(yields.unverified, [{ partition: 0, key: 'b', sid: `b@${id(3000)}`, outputs: 1 }]);
});
