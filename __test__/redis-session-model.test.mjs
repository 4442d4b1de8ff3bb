// The reference model of Redis sessions (helpers/session-model.mjs) on short scenarios whose sessions were worked
// out by hand from the docs: the two cases of the rewrite's motivation and the past regressions of the session tier,
// each named by what broke. Then the scripted handler against the model (a restore at every checkpoint changes no
// output), and the model against the older model of redis-timers-crash.test.mjs on random scenarios it can express.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { model } from './helpers/session-model.mjs';
import { SCRIPT_THROW, randomScenario, scriptHandler, timeOf } from './helpers/session-script.mjs';

const T = 1_000_000;
const EV = 'ERR_VELO_SESSION_EVENTS';
const AGE = 'ERR_VELO_SESSION_AGE';

/** An entry of `key` at T + ms (seq for ties), its event a reaction stamped with its own time unless `at` says. */
const entry = (ms, tag, reaction = {}, { key = 'K', seq = 0 } = {}) => ({
  id: `${T + ms}-${seq}`,
  key,
  event: { tag, at: T + ms, ...reaction },
});

/** Per key, each session as `'<tags taken> | <how>@<ms after T>'`. */
function brief(result) {
  const out = {};
  for (const [key, sessions] of Object.entries(result)) {
    out[key] = sessions.map(
      (s) => `${s.inputs.map((i) => i.tag).join(' ')} | ${s.end.how}${s.end.at === undefined ? '' : `@${s.end.at - T}`}`,
    );
  }
  return out;
}

const run = (limits, log, clock) => model({ limits, log, ...(clock === undefined ? {} : { clock: T + clock }) });

// [what broke or what the case pins, limits, log, final clock (ms after T; none: past every deadline), K's sessions]
const cases = [
  // The restored idle end: E1's producer time is 300 ms before its id's; its timer is already due (T - 299), and
  // that timer makes one due at T + 851. The idle end is from the latest time taken (T), not the timer's.
  [
    'a timer due in the past does not move the idle end back: its chained timer at +851 fires',
    { idleTimeout: 1000 },
    [entry(0, 'E1', { at: T - 300, timers: [{ after: 1, timers: [{ after: 1150 }], checkpoint: true }] })],
    undefined,
    ['E1 E1.0 E1.0.0 | idle@1851'],
  ],
  [
    'a timer due in the past does not move the idle end back: an entry at +800 joins the session',
    { idleTimeout: 1000 },
    [entry(0, 'E1', { at: T - 300, timers: [{ after: 1, checkpoint: true }] }), entry(800, 'E2')],
    undefined,
    ['E1 E1.0 E2 | idle@1800'],
  ],
  // maxSessionTimers counts the timers not taken: E0.1, due with E0.0 but not taken when E0.0 makes two, counts.
  [
    'maxSessionTimers counts a due timer not yet taken (the second made by E0.0 is refused; E0.1 then makes one)',
    { idleTimeout: 1000, maxSessionTimers: 2 },
    [
      entry(0, 'E0', {
        timers: [
          { after: 5, timers: [{ after: 95 }, { after: 195 }] },
          { after: 5, timers: [{ after: 300 }] },
        ],
      }),
    ],
    undefined,
    ['E0 E0.0 E0.1 E0.0.0 E0.1.0 | idle@1305'],
  ],
  // Timers fire by the log's clock (a key's late event opened a new session; timers were lost at the idle end).
  [
    'an entry exactly idleTimeout after a fired timer opens a new session',
    { idleTimeout: 2000 },
    [entry(0, 'E0', { timers: [{ after: 1500 }] }), entry(3500, 'E1')],
    undefined,
    ['E0 E0.0 | idle@3500', 'E1 | idle@5500'],
  ],
  [
    'an entry one ms before the idle end (from a fired timer) joins',
    { idleTimeout: 2000 },
    [entry(0, 'E0', { timers: [{ after: 1500 }] }), entry(3499, 'E1')],
    undefined,
    ['E0 E0.0 E1 | idle@5499'],
  ],
  [
    'a timer due one ms before the idle end fires',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 999 }] })],
    undefined,
    ['E0 E0.0 | idle@1999'],
  ],
  [
    'a timer due at the idle end fires (a pending timer keeps the session open); the idle end is then from its time',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 1000 }] })],
    undefined,
    ['E0 E0.0 | idle@2000'],
  ],
  // A timer due long after the idle end of the inputs before it still fires; the next entry, at its idle end, opens
  // the key's next session.
  [
    'a fired timer and one due past the idle end of the first: both fire, the idle end is from the last timer',
    { idleTimeout: 2500 },
    [entry(0, 'E0', { timers: [{ after: 500 }, { after: 7500 }] }), entry(10_000, 'E1')],
    undefined,
    ['E0 E0.0 E0.1 | idle@10000', 'E1 | idle@12500'],
  ],
  // Timers of one time fire in the order made, also one made while the other waits.
  [
    'two timers of one due time, and a third of that time made by the first as it fires: in the order made',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 100, timers: [{ after: 0 }] }, { after: 100 }] })],
    undefined,
    ['E0 E0.0 E0.1 E0.0.0 | idle@1100'],
  ],
  // Timers made while entries wait in the input fire in front of the next entry if due before it (or at its ms).
  [
    'a timer due at the next entry’s ms goes first; a timer made in the past goes before the next entry',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 50 }] }), entry(50, 'E1', { timers: [{ after: -40 }] }), entry(60, 'E2')],
    undefined,
    ['E0 E0.0 E1 E1.0 E2 | idle@1060'],
  ],
  // A checkpoint between two timers of one due time lost the second at a restore.
  [
    'two timers of one due time with a checkpoint between them: each fires once',
    { idleTimeout: 5000 },
    [entry(0, 'E0', { checkpoint: true, timers: [1000, 1000, 3000].map((after) => ({ after, checkpoint: true })) })],
    undefined,
    ['E0 E0.0 E0.1 E0.2 | idle@8000'],
  ],
  // A timer made by a timer was lost at a takeover, and the key's next entry opened a new session.
  [
    'a chained timer moves the idle end: the next entry within idleTimeout of it joins',
    { idleTimeout: 700 },
    [entry(0, 'E0', { timers: [{ after: 600, timers: [{ after: 300 }] }] }), entry(1450, 'E1')],
    undefined,
    ['E0 E0.0 E0.0.0 E1 | idle@2150'],
  ],
  [
    'a chained timer moves the idle end: the next entry exactly idleTimeout after it opens a session',
    { idleTimeout: 700 },
    [entry(0, 'E0', { timers: [{ after: 600, timers: [{ after: 300 }] }] }), entry(1600, 'E1')],
    undefined,
    ['E0 E0.0 E0.0.0 | idle@1600', 'E1 | idle@2300'],
  ],
  // The caps count timers, in the order the handler takes its inputs.
  [
    'maxSessionEvents: a timer that would be the 3rd never fires',
    { idleTimeout: 3000, maxSessionEvents: 2 },
    [entry(0, 'E0', { timers: [{ after: 200 }, { after: 500 }] })],
    undefined,
    ['E0 E0.0 | events@500'],
  ],
  [
    'maxSessionAge: a timer due past the age never fires',
    { idleTimeout: 3000, maxSessionAge: 350 },
    [entry(0, 'E0', { timers: [{ after: 200 }, { after: 500 }] })],
    undefined,
    ['E0 E0.0 | age@351'],
  ],
  [
    'maxSessionEvents: a timer due before a waiting entry pushes it past the cap; it opens the next session',
    { idleTimeout: 3000, maxSessionEvents: 2 },
    [entry(0, 'E0', { timers: [{ after: 100 }] }), entry(150, 'E1')],
    undefined,
    ['E0 E0.0 | events@150', 'E1 | idle@3150'],
  ],
  [
    'maxSessionAge: an entry past the age opens the next session, which ends at its own age',
    { idleTimeout: 3000, maxSessionAge: 350 },
    [entry(0, 'E0', { timers: [{ after: 200 }] }), entry(420, 'E1')],
    undefined,
    ['E0 E0.0 | age@351', 'E1 | age@771'],
  ],
  [
    'maxSessionEvents with checkpoints: the 5th input is a timer; it never fires, E3 opens the next session',
    { idleTimeout: 3000, maxSessionEvents: 4 },
    [
      entry(0, 'E0', { timers: [{ after: 150 }, { after: 300 }] }),
      entry(100, 'E1', { checkpoint: true }),
      entry(250, 'E2'),
      entry(400, 'E3', { checkpoint: true }),
    ],
    undefined,
    ['E0 E1 E0.0 E2 | events@300', 'E3 | idle@3400'],
  ],
  // Past both its age and its idle end, a session ends at the earlier (it ended by idle after a takeover or on a
  // backlog; a late age marker ended one by age whose idle end came first).
  [
    'past the age, then the idle end: by age',
    { idleTimeout: 1000, maxSessionAge: 300 },
    [entry(0, 'E0'), entry(1300, 'E1')],
    undefined,
    ['E0 | age@301', 'E1 | age@1601'],
  ],
  [
    'past the idle end, then the age: by idle',
    { idleTimeout: 400, maxSessionAge: 900 },
    [entry(0, 'E0')],
    undefined,
    ['E0 | idle@400'],
  ],
  [
    'the age and idle ends on the same ms: by idle (the model’s decision)',
    { idleTimeout: 1000, maxSessionAge: 999 },
    [entry(0, 'E0')],
    undefined,
    ['E0 | idle@1000'],
  ],
  // An entry past both caps ended its session with the event cap's error after a takeover; the age came first.
  [
    'an entry past both the age and the event cap: the age’s error',
    { idleTimeout: 3000, maxSessionEvents: 1, maxSessionAge: 500 },
    [entry(0, 'E0'), entry(700, 'E1')],
    undefined,
    ['E0 | age@501', 'E1 | age@1201'],
  ],
  [
    'a timer past both the age and the event cap: the age’s error',
    { idleTimeout: 3000, maxSessionEvents: 1, maxSessionAge: 500 },
    [entry(0, 'E0', { timers: [{ after: 600 }] })],
    undefined,
    ['E0 | age@501'],
  ],
  // A timer made as a timer fires, due before the age, was lost when a known timer was past the age.
  [
    'a chain due before the age fires although a known timer is due past it',
    { idleTimeout: 400, maxSessionAge: 450 },
    [entry(0, 'E0'), entry(105, 'E1', { timers: [{ after: 404 }, { after: 75, timers: [{ after: 120 }] }] })],
    undefined,
    ['E0 E1 E1.1 E1.1.0 | age@451'],
  ],
  [
    'a timer due at start + maxSessionAge fires, one at + 1 does not',
    { idleTimeout: 3000, maxSessionAge: 300 },
    [entry(0, 'E0', { timers: [{ after: 300 }, { after: 301 }] })],
    undefined,
    ['E0 E0.0 | age@301'],
  ],
  [
    'an entry at start + maxSessionAge joins, one at + 1 opens the next session',
    { idleTimeout: 3000, maxSessionAge: 300 },
    [entry(0, 'E0'), entry(300, 'E1'), entry(301, 'E2')],
    undefined,
    ['E0 E1 | age@301', 'E2 | age@602'],
  ],
  [
    'a timer pending at the idle end: no end there; the timer, then the entry of its ms',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 1000 }] }), entry(1000, 'E1')],
    undefined,
    ['E0 E0.0 E1 | idle@2000'],
  ],
  // Late timers, keys: a timer due after the age end is refused at the call; a key replaces or cancels.
  [
    'a timer due at the age end fires, one a ms later is refused (never made): the session ends by age',
    { idleTimeout: 1000, maxSessionAge: 500 },
    [entry(0, 'E0', { timers: [{ after: 500 }, { after: 501 }] })],
    undefined,
    ['E0 E0.0 | age@501'],
  ],
  [
    'a timer of a key replaces the pending one of that key: only the new one fires',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 100, key: 'x' }, { after: 200, key: 'x' }, { after: 150, key: 'y' }] })],
    undefined,
    ['E0 E0.2 E0.1 | idle@1200'],
  ],
  [
    'a replacement made by a timer as it fires, for a later one of its key',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 100, timers: [{ after: 400, key: 'x' }] }, { after: 300, key: 'x' }] })],
    undefined,
    ['E0 E0.0 E0.0.0 | idle@1500'],
  ],
  [
    'a cancelled timer never fires, and the idle end is then from the last input',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 1500, key: 'x' }] }), entry(50, 'E1', { cancel: ['x'] })],
    undefined,
    ['E0 E1 | idle@1050'],
  ],
  [
    'maxSessionTimers: a replacement is never refused; a cancelled timer frees its room',
    { idleTimeout: 1000, maxSessionTimers: 1 },
    [
      entry(0, 'E0', { timers: [{ after: 100, key: 'x' }, { after: 200, key: 'x' }, { after: 300 }] }),
      entry(10, 'E1', { cancel: ['x'], timers: [{ after: 50 }] }),
    ],
    undefined,
    ['E0 E1 E1.0 | idle@1060'],
  ],
  [
    'maxSessionEvents 1 with an entry of the same ms: it opens the next session',
    { idleTimeout: 1000, maxSessionEvents: 1 },
    [entry(0, 'E0'), entry(0, 'E1', {}, { seq: 1 })],
    undefined,
    ['E0 | events@0', 'E1 | idle@1000'],
  ],
  // A handler that returns or throws ends its session where it stopped; the entries it never took open the next.
  [
    'return: an entry of the same ms opens the next session, a pending timer never fires',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { end: 'return', timers: [{ after: 10 }] }), entry(0, 'E1', {}, { seq: 1 })],
    undefined,
    ['E0 | return@0', 'E1 | idle@1000'],
  ],
  [
    'a timer that returns',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 10, end: 'return' }] }), entry(20, 'E1')],
    undefined,
    ['E0 E0.0 | return@10', 'E1 | idle@1020'],
  ],
  [
    'throw',
    { idleTimeout: 1000 },
    [entry(0, 'E0'), entry(5, 'E1', { end: 'throw' }), entry(6, 'E2')],
    undefined,
    ['E0 E1 | throw@5', 'E2 | idle@1006'],
  ],
  // The log's clock at the end: a session whose end it has not reached is open, with its timers due by then fired.
  ['clock before the timer: open', { idleTimeout: 1000 }, [entry(0, 'E0', { timers: [{ after: 500 }] })], 499, ['E0 | open']],
  [
    'clock at the timer: it fired, open',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 500 }] })],
    500,
    ['E0 E0.0 | open'],
  ],
  [
    'clock one ms before the idle end: open',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 500 }] })],
    1499,
    ['E0 E0.0 | open'],
  ],
  [
    'clock at the idle end: ended by idle',
    { idleTimeout: 1000 },
    [entry(0, 'E0', { timers: [{ after: 500 }] })],
    1500,
    ['E0 E0.0 | idle@1500'],
  ],
  [
    'clock at the age end (an entry of another key moved it): ended by age',
    { idleTimeout: 1000, maxSessionAge: 300 },
    [entry(0, 'E0'), entry(301, 'X0', {}, { key: 'X' })],
    0,
    ['E0 | age@301'],
  ],
  [
    'clock one ms before the age end: open',
    { idleTimeout: 1000, maxSessionAge: 300 },
    [entry(0, 'E0'), entry(300, 'X0', {}, { key: 'X' })],
    0,
    ['E0 | open'],
  ],
];

for (const [name, limits, log, clock, want] of cases) {
  test(`model: ${name}`, () => {
    assert.deepEqual(brief(run(limits, log, clock)).K, want);
  });
}

test('model: the outputs show each session’s history, a refused timer, and end with a cap’s or a throw’s error', () => {
  const timers = run({ idleTimeout: 1000, maxSessionTimers: 2 }, cases[2][2]).K[0].outputs;
  assert.deepEqual(timers.slice(0, 2), [
    { in: 'E0', count: 1, took: 'E0', entry: `${T}-0@${T}` },
    { in: 'E0.0', count: 2, took: 'E0 E0.0', entry: `t1@${T + 5}`, refused: ['E0.0.1'] },
  ]);
  // A late timer, a cancel and a replacement, as the handler sees them.
  const keyed = run({ idleTimeout: 1000, maxSessionAge: 500 }, [
    entry(0, 'E0', { timers: [{ after: 100, key: 'x' }, { after: 600 }] }),
    entry(10, 'E1', { cancel: ['x', 'y'], timers: [{ after: 20, key: 'y' }, { after: 30, key: 'y' }] }),
  ]).K[0].outputs;
  assert.deepEqual(keyed, [
    { in: 'E0', count: 1, took: 'E0', entry: `${T}-0@${T}`, late: ['E0.1'] },
    { in: 'E1', count: 2, took: 'E0 E1', entry: `${T + 10}-0@${T + 10}`, cancelled: ['x'] },
    { in: 'E1.1', count: 3, took: 'E0 E1 E1.1', entry: `t3@${T + 40}` },
    { error: AGE },
  ]);
  assert.deepEqual(
    run({ idleTimeout: 3000, maxSessionEvents: 2 }, [
      entry(0, 'E0', { yield: 2, timers: [{ after: 1, yield: 0 }, { after: 2 }] }),
    ]).K[0].outputs,
    [
      { in: 'E0', count: 1, took: 'E0', entry: `${T}-0@${T}` },
      { in: 'E0', count: 1, took: 'E0', entry: `${T}-0@${T}`, part: 1 },
      { error: EV },
    ],
  );
  assert.deepEqual(
    run({ idleTimeout: 1000, maxSessionAge: 10 }, [entry(0, 'E0'), entry(11, 'E1')]).K.map((s) => s.outputs.at(-1)),
    [{ error: AGE }, { error: AGE }],
  );
  const thrown = run({ idleTimeout: 1000 }, [entry(0, 'E0', { end: 'throw', yield: 1 })]).K[0];
  assert.deepEqual(thrown.outputs, [{ in: 'E0', count: 1, took: 'E0', entry: `${T}-0@${T}` }, { error: SCRIPT_THROW }]);
  assert.deepEqual(thrown.inputs, [{ entry: `${T}-0`, tag: 'E0' }]);
  assert.equal(thrown.sid, `K@${T}-0`);
});

test('model: checkpoints change nothing visible (the same sessions with every checkpoint removed)', () => {
  const strip = (r) => {
    const { checkpoint: _, timers, ...rest } = r;
    return timers === undefined ? rest : { ...rest, timers: timers.map(strip) };
  };
  for (let seed = 1; seed <= 300; seed++) {
    const scenario = randomScenario(seed);
    const bare = { ...scenario, log: scenario.log.map((e) => ({ ...e, event: strip(e.event) })) };
    assert.deepEqual(model(bare), model(scenario), `seed ${seed}`);
  }
});

/**
 * Feeds one session's inputs, as the model took them, to the real scripted handler, with a context that counts the
 * timers not taken as the model does. A timer input's payload is the one the handler made under that number (the
 * model numbers a session's timers in the order made). `restoreAt`: the instance is dropped after that input's
 * checkpoint and a fresh one, restored from it, takes the inputs after it (what a takeover does). Returns the outputs
 * (a throw as `{ error: code }`) and the timers made, in order.
 */
async function drive(session, eventOf, limits, restoreAt) {
  const limit = limits.maxSessionTimers ?? 1000;
  const maxAge = limits.maxSessionAge ?? 0;
  const start = timeOf(session.inputs[0].entry);
  let outputs = [];
  let made = [];
  let pending = [];
  let taken = 0;
  let snapshot;
  let entry;
  const instance = async (inputs, restored) => {
    entry = undefined;
    const ctx = {
      restored,
      get entry() {
        return entry;
      },
      wakeAt(due, payload, { key } = {}) {
        if (maxAge > 0 && Math.ceil(due) > start + maxAge)
          throw Object.assign(new Error('past the age end'), { code: 'ERR_VELO_TIMER_PAST_AGE' });
        const old = key === undefined ? undefined : pending.find((p) => p.key === key);
        if (old === undefined && pending.length >= limit)
          throw Object.assign(new Error('too many timers'), { code: 'ERR_VELO_TOO_MANY_TIMERS' });
        pending = pending.filter((p) => p !== old);
        made.push({ due, payload });
        pending.push({ n: made.length, key });
      },
      cancelTimer(key) {
        const old = pending.find((p) => p.key === key);
        pending = pending.filter((p) => p !== old);
        return old !== undefined;
      },
      checkpoint(state) {
        if (taken - 1 === restoreAt)
          snapshot = { state: structuredClone(state), pending: [...pending], made: [...made], outputs: [...outputs] };
      },
    };
    const events = (async function* () {
      for (const input of inputs) {
        if (input.timer !== undefined) {
          pending = pending.filter((p) => p.n !== input.timer);
          entry = { id: `t${input.timer}`, time: input.due };
        } else entry = { id: input.entry, time: timeOf(input.entry) };
        taken++;
        yield input.entry !== undefined ? eventOf(input.entry) : made[input.timer - 1].payload;
      }
    })();
    try {
      for await (const output of scriptHandler()(events, ctx)) outputs.push(output);
    } catch (error) {
      outputs.push({ error: error.code });
    }
  };
  await instance(session.inputs);
  if (snapshot === undefined) return { outputs, made };
  ({ outputs, made, pending } = snapshot);
  taken = restoreAt + 1;
  await instance(session.inputs.slice(restoreAt + 1), snapshot.state);
  return { outputs, made };
}

test('the scripted handler makes what the model says, and a restore at any checkpoint continues it unchanged', async () => {
  let restores = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const scenario = randomScenario(seed);
    const events = new Map(scenario.log.map((e) => [e.id, e.event]));
    for (const sessions of Object.values(model(scenario))) {
      for (const session of sessions) {
        const full = await drive(session, (id) => events.get(id), scenario.limits);
        const want = session.outputs.filter((o) => o.error === undefined || o.error === SCRIPT_THROW);
        assert.deepEqual(full.outputs, want, `seed ${seed} ${session.sid}: outputs`);
        for (const input of session.inputs.filter((i) => i.timer !== undefined)) {
          assert.equal(full.made[input.timer - 1].due, input.due, `seed ${seed} ${session.sid}: timer ${input.timer} due`);
          assert.equal(
            full.made[input.timer - 1].payload.tag,
            input.tag,
            `seed ${seed} ${session.sid}: timer ${input.timer} tag`,
          );
        }
        for (const [at, input] of session.inputs.entries()) {
          const payload = input.entry !== undefined ? events.get(input.entry) : full.made[input.timer - 1].payload;
          // (A checkpoint on an input that then returns or throws is followed by the session's end: a restore from
          // it would have no input left to end with, so it is no point to restore at here.)
          if (payload.checkpoint !== true || payload.end !== undefined) continue;
          restores++;
          assert.deepEqual(
            await drive(session, (id) => events.get(id), scenario.limits, at),
            full,
            `seed ${seed} ${session.sid}: restored after input ${at}`,
          );
        }
      }
    }
  }
  assert.ok(restores > 100, `restores exercised (${restores})`);
});

/**
 * The model of redis-timers-crash.test.mjs (`expected()`), ported to a log in memory: what the timerCounts fixture
 * handler makes, per key, as labels (`n`, `woke`, or a cap's code).
 */
function timerCountsExpected(log, idle, { maxSessionEvents = 0, maxSessionAge = 0 } = {}) {
  const byKey = new Map();
  for (const { id, key, event } of log) byKey.set(key, [...(byKey.get(key) ?? []), { time: timeOf(id), event }]);
  const out = {};
  for (const [key, events] of byKey) {
    const sessions = [];
    let session = null;
    let last = 0;
    let start = 0;
    let timers = [];
    let made = 0;
    const endAt = (at) => {
      // (A pending timer keeps the session open: no idle end before it fires.)
      const idleEnd = timers.length > 0 ? Infinity : last + idle;
      const ageEnd = maxSessionAge > 0 ? start + maxSessionAge + 1 : Infinity;
      if (at >= Math.min(idleEnd, ageEnd)) return idleEnd <= ageEnd ? null : AGE;
      if (maxSessionEvents > 0 && session.length >= maxSessionEvents) return EV;
      return undefined;
    };
    const end = (how) => {
      if (how !== null) session.push(how);
      session = null;
      timers = [];
    };
    // A timer due after the session's age end is refused: none is made.
    const late = (due) => maxSessionAge > 0 && due > start + maxSessionAge;
    const chain = (n, step, from, delays) => {
      if (delays?.length > 0 && !late(from + delays[0]))
        timers.push({ id: ++made, due: from + delays[0], woke: `${n}.c${step}`, n, step, chain: delays.slice(1) });
    };
    const fireUntil = (until) => {
      for (;;) {
        timers.sort((a, b) => a.due - b.due || a.id - b.id);
        if (timers.length === 0 || timers[0].due > until || session === null) return;
        // (Decided with the timer still pending.)
        const t = timers[0];
        const how = endAt(t.due);
        if (how !== undefined) return end(how);
        timers.shift();
        session.push(t.woke);
        last = Math.max(last, t.due);
        chain(t.n, t.step + 1, t.due, t.chain);
      }
    };
    for (const { time: at, event: e } of events) {
      fireUntil(at);
      const how = session === null ? undefined : endAt(at);
      if (how !== undefined) end(how);
      if (session === null) {
        sessions.push((session = []));
        start = at;
      }
      session.push(e.n);
      last = at;
      for (const [i, d] of (e.wake ?? []).entries())
        if (!late(e.at + d)) timers.push({ id: ++made, due: e.at + d, woke: `${e.n}.${i}` });
      chain(e.n, 0, e.at, e.chain);
    }
    fireUntil(Infinity);
    if (session !== null && maxSessionAge > 0 && start + maxSessionAge + 1 < last + idle) end(AGE);
    out[key] = sessions;
  }
  return out;
}

/** A scenario of randomScenario's `timerCounts` shape as that fixture's events: `{ n, at, wake, chain }`. */
function asTimerCounts({ log }) {
  return log.map(({ id, key, event }) => {
    const wake = [];
    const chain = [];
    for (const timer of event.timers ?? []) {
      if (timer.tag === undefined) wake.push(timer.after);
      else for (let link = timer; link !== undefined; link = link.timers?.[0]) chain.push(link.after);
    }
    return { id, key, event: { n: event.tag, at: event.at, wake, chain } };
  });
}

test('the model equals the older model of redis-timers-crash.test.mjs on the scenarios its fixture can express', () => {
  const seen = { sessions: 0, timers: 0, caps: 0 };
  for (let seed = 1; seed <= 3000; seed++) {
    const scenario = randomScenario(seed, { shape: 'timerCounts' });
    const got = {};
    for (const [key, sessions] of Object.entries(model(scenario))) {
      got[key] = sessions.map((s) => s.outputs.map((o) => o.in ?? o.error));
      seen.sessions += sessions.length;
      seen.timers += sessions.flatMap((s) => s.inputs).filter((i) => i.timer !== undefined).length;
      seen.caps += sessions.filter((s) => s.end.how === 'age' || s.end.how === 'events').length;
    }
    assert.deepEqual(
      got,
      timerCountsExpected(asTimerCounts(scenario), scenario.limits.idleTimeout, scenario.limits),
      `seed ${seed}`,
    );
  }
  assert.ok(seen.sessions > 3000 && seen.timers > 3000 && seen.caps > 500, JSON.stringify(seen));
});

test('randomScenario reaches every kind of end and the boundaries: ties, an entry exactly at an idle or age end, a refused timer, a past timer, a late timer, a cancel, a timer past an idle end', (t) => {
  const seen = {
    idle: 0,
    age: 0,
    events: 0,
    return: 0,
    throw: 0,
    open: 0,
    tie: 0,
    atIdleEnd: 0,
    atAgeEnd: 0,
    refused: 0,
    pastTimer: 0,
    late: 0,
    cancelled: 0,
    pastIdle: 0,
  };
  for (let seed = 1; seed <= 500; seed++) {
    const scenario = randomScenario(seed);
    const time = new Map(scenario.log.map((e) => [e.id, timeOf(e.id)]));
    for (const sessions of Object.values(model(scenario))) {
      for (const [i, s] of sessions.entries()) {
        seen[s.end.how]++;
        const next = sessions[i + 1];
        if (next !== undefined && s.end.how === 'idle' && time.get(next.inputs[0].entry) === s.end.at) seen.atIdleEnd++;
        if (next !== undefined && s.end.how === 'age' && time.get(next.inputs[0].entry) === s.end.at) seen.atAgeEnd++;
        const entries = s.inputs.filter((x) => x.entry !== undefined).map((x) => time.get(x.entry));
        seen.tie += entries.filter((t, j) => j > 0 && t === entries[j - 1]).length;
        seen.refused += s.outputs.filter((o) => o.refused !== undefined).length;
        seen.pastTimer += s.inputs.filter((x) => x.timer !== undefined && x.due < time.get(s.inputs[0].entry)).length;
        seen.late += s.outputs.filter((o) => o.late !== undefined).length;
        seen.cancelled += s.outputs.filter((o) => o.cancelled !== undefined).length;
        // A timer that fired at or after the idle end of the inputs before it (it kept the session open).
        let last = 0;
        for (const x of s.inputs) {
          const at = x.timer !== undefined ? x.due : time.get(x.entry);
          if (x.timer !== undefined && last > 0 && at >= last + scenario.limits.idleTimeout) seen.pastIdle++;
          last = Math.max(last, at);
        }
      }
    }
  }
  t.diagnostic(JSON.stringify(seen));
  for (const [what, n] of Object.entries(seen)) assert.ok(n >= 10, `${what}: ${n} in 500 seeds (${JSON.stringify(seen)})`);
});

test('the scripted handler runs in-process with streamFn: outputs, a checkpoint (a no-op there), return, throw', async () => {
  const fn = streamFn(scriptHandler(), { idleTimeout: 60_000 });
  const inputs = [
    { tag: 'a', at: 0, checkpoint: true },
    { tag: 'b', at: 1, yield: 2 },
    { tag: 'c', at: 2, end: 'return' },
    { tag: 'd', at: 3 },
  ];
  assert.deepEqual(await fn.run(inputs), [
    { in: 'a', count: 1, took: 'a' },
    { in: 'b', count: 2, took: 'a b' },
    { in: 'b', count: 2, took: 'a b', part: 1 },
    { in: 'c', count: 3, took: 'a b c' },
  ]);
  await assert.rejects(fn.run([{ tag: 'x', at: 0, end: 'throw' }]), { code: SCRIPT_THROW, message: 'scripted throw at x' });
});
