// How a session of the Redis tier opens (js/durable/engine/opening.ts), as tables without a run: which sid, version
// and caps from the stored records and the worker's release, and what state it starts from, migrated or not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { migratedCheckpoint, openingState, planOpening } = require('../dist/durable/engine/opening.js');
const { OutputPlaces, placedBy } = require('../dist/durable/engine/output-places.js');
const { Checkpoints } = require('../dist/durable/engine/session.js');
const { newState } = require('../dist/durable/rules/session-rules.js');
const { jsonCodec } = require('../dist/durable/common/codec.js');

const CAPS = { idleTimeout: 1000, maxSessionAge: 0, maxSessionEvents: 0, maxSessionTimers: 1000 };
const OLD_CAPS = { ...CAPS, idleTimeout: 50 };
const release = (version, runs = [version], migrates = false) => ({
  version,
  limits: CAPS,
  migrates,
  runsVersion: (v) => v === '' || runs.includes(v),
});
const json = { encode: (v) => Buffer.from(JSON.stringify(v)), decode: (b) => JSON.parse(b.toString()) };
const snapshot = (state, more = {}) => ({
  sid: 'k@1-0',
  key: 'k',
  seq: 3,
  lastTime: 5,
  events: 2,
  state: JSON.stringify(state),
  timers: 1,
  pending: [],
  lastInput: '4-0',
  ...more,
});
const opened = (version) => new Map([['k@1-0', { sid: 'k@1-0', version, limits: OLD_CAPS }]]);

test('planOpening: the sid, version, caps and state source of every kind of opening', () => {
  const rows = [
    // what is stored, the release -> sid, version, caps, written, from, migrated from
    [{ snapshot: undefined, openings: new Map(), kept: null }, release('v2'), ['k@9-0', 'v2', CAPS, true, 'none', null]],
    [
      { snapshot: undefined, openings: new Map(), kept: { state: '{}' } },
      release('v2'),
      ['k@9-0', 'v2', CAPS, true, 'key', null],
    ],
    [{ snapshot: snapshot({}), openings: new Map(), kept: null }, release('v2'), ['k@1-0', 'v2', CAPS, true, 'checkpoint', null]],
    [
      { snapshot: snapshot({}), openings: opened('v1'), kept: null },
      release('v2', ['v2', 'v1']),
      ['k@1-0', 'v1', OLD_CAPS, false, 'checkpoint', null],
    ],
    [
      { snapshot: snapshot({}), openings: opened('v1'), kept: null },
      release('v2', ['v2'], true),
      ['k@1-0', 'v2', OLD_CAPS, true, 'checkpoint', 'v1'],
    ],
    // Replayed from its first event by a worker that migrates: no state to convert.
    [
      { snapshot: undefined, openings: new Map([['k@9-0', { sid: 'k@9-0', version: 'v1', limits: OLD_CAPS }]]), kept: null },
      release('v2', ['v2'], true),
      ['k@9-0', 'v2', OLD_CAPS, true, 'none', null],
    ],
    // Opened with no version: any worker runs it as it is.
    [
      { snapshot: snapshot({}), openings: opened(''), kept: null },
      release('v2'),
      ['k@1-0', '', OLD_CAPS, false, 'checkpoint', null],
    ],
  ];
  for (const [stored, rel, [sid, version, limits, write, from, migrateFrom]] of rows) {
    const plan = planOpening({ key: 'k', sid: 'k@9-0', ...stored, release: rel });
    assert.equal(plan.foreign, false);
    assert.deepEqual(
      [plan.sid, plan.opening.version, plan.opening.limits, plan.write, plan.from, plan.migrateFrom],
      [sid, version, limits, write, from, migrateFrom],
      JSON.stringify(stored.snapshot?.sid ?? null) + ' ' + rel.version,
    );
    if (migrateFrom !== null) assert.equal(plan.opening.replaces, migrateFrom);
  }
});

test('planOpening: a stored version the worker neither runs nor adopts is foreign (a stale owner reads what its successor wrote): nothing opens', () => {
  for (const snap of [snapshot({}), undefined]) {
    const openings = new Map([[snap?.sid ?? 'k@9-0', { sid: snap?.sid ?? 'k@9-0', version: 'v3', limits: OLD_CAPS }]]);
    const plan = planOpening({
      key: 'k',
      sid: 'k@9-0',
      snapshot: snap,
      openings,
      kept: null,
      release: release('v2', ['v2', 'v1']),
    });
    assert.deepEqual([plan.foreign, plan.write, plan.migrateFrom], [true, false, null]);
  }
});

test('openingState: a migrated checkpoint is converted once, through the codec, and committed as the checkpoint that goes with its new opening', () => {
  const inputs = {
    key: 'k',
    sid: 'k@9-0',
    snapshot: snapshot({ total: 7 }),
    openings: opened('v1'),
    kept: null,
    release: release('v2', ['v2'], true),
  };
  const plan = planOpening(inputs);
  const calls = [];
  const state = openingState(
    plan,
    inputs,
    json,
    (s, from) => (calls.push(from), { ...s, items: 0 }),
    () => false,
  );
  assert.deepEqual(calls, ['v1']);
  assert.deepEqual(state.restored, { total: 7, items: 0 });
  assert.equal(state.migrated.toString(), '{"total":7,"items":0}');
  assert.equal(state.broken, undefined);
  const { acks, checkpoint } = migratedCheckpoint(inputs.snapshot, state.migrated);
  assert.deepEqual(acks, []);
  assert.deepEqual({ ...checkpoint, state: checkpoint.state.toString() }, { ...inputs.snapshot, state: '{"total":7,"items":0}' });
  // A session that runs on its own version is not converted, and commits nothing at its open.
  const same = { ...inputs, release: release('v2', ['v2', 'v1']) };
  const kept = openingState(
    planOpening(same),
    same,
    json,
    () => assert.fail('migrate called'),
    () => false,
  );
  assert.deepEqual([kept.restored, kept.migrated], [{ total: 7 }, undefined]);
});

test('openingState: a migrate that throws, returns a promise, or a state the codec refuses fails the session; an unreadable key state starts it without', () => {
  const inputs = {
    key: 'k',
    sid: 'k@9-0',
    snapshot: snapshot({ total: 7 }),
    openings: opened('v1'),
    kept: null,
    release: release('v2', ['v2'], true),
  };
  const plan = planOpening(inputs);
  for (const migrate of [
    () => {
      throw new Error('no');
    },
    async () => ({}),
    () => ({ big: 10n }),
  ]) {
    const state = openingState(plan, inputs, json, migrate, () => false);
    assert.equal(state.broken?.code, 'ERR_VELO_MIGRATE');
    assert.equal(state.migrated, undefined);
    // Its key keeps the checkpoint's state as v1's, for the next session to convert (or start without).
    assert.deepEqual([String(state.keep), state.keepVersion], ['{"total":7}', 'v1']);
  }
  // A converted state is a checkpoint: over maxCheckpointBytes it is refused as one is.
  const big = openingState(
    plan,
    inputs,
    json,
    (state) => ({ ...state, pad: 'x'.repeat(100) }),
    () => false,
    64,
  );
  assert.deepEqual([big.broken?.code, big.migrated], ['ERR_VELO_CHECKPOINT_TOO_LARGE', undefined]);
  assert.equal(
    openingState(
      plan,
      inputs,
      json,
      (state) => state,
      () => false,
      64,
    ).broken,
    undefined,
  );
  const keyed = { ...inputs, snapshot: undefined, openings: new Map(), kept: { state: '{not json' } };
  const state = openingState(planOpening(keyed), keyed, json, null, () => false);
  assert.equal(state.broken, undefined);
  assert.equal(state.fromKey, false);
  assert.equal(state.keptUnreadable?.code, 'ERR_VELO_DECODE');
  // A key's state converted over the limit: the session starts without it, reported.
  const keyedOld = { ...keyed, kept: { state: '{"total":1}', version: 'v1' } };
  const bigKey = openingState(
    planOpening(keyedOld),
    keyedOld,
    json,
    (s) => ({ ...s, pad: 'x'.repeat(100) }),
    () => false,
    64,
  );
  assert.deepEqual([bigKey.broken, bigKey.fromKey, bigKey.restored, bigKey.migrated], [undefined, false, undefined, undefined]);
  assert.equal(bigKey.keptUnreadable?.code, 'ERR_VELO_CHECKPOINT_TOO_LARGE');
  // A key's state converted to something the codec refuses: migrate's failure, not a decode error.
  const unencodable = openingState(
    planOpening(keyedOld),
    keyedOld,
    json,
    () => ({ big: 10n }),
    () => false,
  );
  assert.deepEqual([unencodable.fromKey, unencodable.keptUnreadable?.code], [false, 'ERR_VELO_MIGRATE']);
});

test('planOpening: a migrated session whose earlier owner wrote past where it starts skips those outputs by place', () => {
  const migrating = release('v2', ['v2'], true);
  const adopted = (mark, snap = snapshot({})) => {
    snap ??= undefined;
    const sid = snap?.sid ?? 'k@9-0';
    const openings = new Map([[sid, { sid, version: 'v1', limits: OLD_CAPS }]]);
    return planOpening({ key: 'k', sid: 'k@9-0', snapshot: snap, openings, kept: null, release: migrating, mark }).writtenBefore;
  };
  // Outputs 4 and 5 written past the checkpoint (seq 3), the last at its second input's first output.
  assert.deepEqual(adopted({ written: 5, at: [2, 1] }), { written: 5, at: [2, 1] });
  // Nothing past the checkpoint, or no place recorded (an older release wrote it): matched by seq, as before.
  assert.equal(adopted({ written: 3, at: [0, 3] }), null);
  assert.equal(adopted({ written: 5 }), null);
  assert.equal(adopted(undefined), null);
  // Without a checkpoint: past 0.
  assert.deepEqual(adopted({ written: 2, at: [1, 2] }, null), { written: 2, at: [1, 2] });
  // A later owner of the same version (its stored opening says it was migrated, its adoption found the old version's
  // outputs up to seq 5, at its second input) skips by place too, the last written being its own version's answer to
  // a later input ...
  const laterOwner = (after, mark = { written: 7, at: [3, 2] }) =>
    planOpening({
      key: 'k',
      sid: 'k@9-0',
      snapshot: snapshot({}),
      openings: new Map([['k@1-0', { sid: 'k@1-0', version: 'v2', limits: OLD_CAPS, replaces: 'v1', after }]]),
      kept: null,
      release: release('v2'),
      mark,
    });
  const again = laterOwner([5, 2]);
  assert.deepEqual(
    [again.write, again.migrateFrom, again.writtenBefore, again.writtenOwn],
    [false, null, { written: 7, at: [3, 2] }, true],
  );
  // (Its last written at the input the old version was answering: the old answer, continued or restarted.)
  assert.equal(laterOwner([5, 2], { written: 7, at: [2, 4] }).writtenOwn, false);
  // ... but by seq where its adoption found none of the old version's outputs past its start, or it starts past them.
  assert.equal(laterOwner(undefined).writtenBefore, null);
  assert.equal(laterOwner([3, 1]).writtenBefore, null);
  // ... and one never migrated by seq (what checkReplay compares).
  const plain = planOpening({
    key: 'k',
    sid: 'k@9-0',
    snapshot: snapshot({}),
    openings: opened('v2'),
    kept: null,
    release: release('v2'),
    mark: { written: 7, at: [3, 2] },
  });
  assert.equal(plain.writtenBefore, null);
});

/** The `output`-th output as `places` queues it, with its place. */
const placer = (places) => (output) => {
  places.place(output);
  const queued = { at: undefined };
  places.placeInto(queued);
  return queued;
};

test('OutputPlaces: an output is placed by the inputs taken since the last checkpoint queued and its position after them', () => {
  const places = new OutputPlaces();
  const placed = placer(places);
  const place = (output) => placed(output).at;
  // Two outputs before any input (a handler that yields at its start), then input 1 with three, input 2 with none,
  // input 3 with one; a checkpoint after input 3's step; then one output on it, input 4 and two.
  assert.deepEqual(
    [place(1), place(2)],
    [
      [0, 1],
      [0, 2],
    ],
  );
  places.took(2);
  assert.deepEqual(
    [place(3), place(4), place(5)],
    [
      [1, 1],
      [1, 2],
      [1, 3],
    ],
  );
  places.took(5);
  places.took(5);
  assert.deepEqual(place(6), [3, 1]);
  places.checkpointed(3, 6);
  assert.deepEqual(place(7), [0, 1]);
  places.took(7);
  assert.deepEqual(
    [place(8), place(9)],
    [
      [1, 1],
      [1, 2],
    ],
  );
  // The handler asks for its next input: input 1's outputs are all given (the last output queued is marked, and
  // later ones of the same output count know it at once).
  const last = placed(10);
  assert.deepEqual(last.at, [1, 3]);
  places.asked(10);
  assert.deepEqual(last.at, [1, 3, true]);
  places.took(10);
  places.asked(11);
  assert.deepEqual(place(11), [2, 1, true]);
  // Placed before it is queued: the place found is the output's (`current`, as a migrated session compares it).
  places.took(11);
  places.place(12);
  assert.deepEqual(places.current, [3, 1]);
  // An input before the last one written is covered, whatever the outputs; an input in flight (not answered) covers
  // none of its outputs: the new version's whole answer to it is written after the old one's partial answer.
  assert.ok(placedBy([0, 9], [1, 1]) && placedBy([0, 1], [1, 9]));
  assert.ok(!placedBy([1, 1], [1, 2]) && !placedBy([1, 2], [1, 2]) && !placedBy([1, 3], [1, 2]) && !placedBy([2, 1], [1, 9]));
  // An answered input covers all of its outputs, whatever their number.
  assert.ok(placedBy([1, 7], [1, 2, true]) && !placedBy([2, 1], [1, 2, true]));
});

test('OutputPlaces: a handler running ahead of the forwarding places its outputs as one in step', () => {
  // The same inputs and outputs, told in two orders: each output forwarded before the next input (in step), and all
  // inputs taken before any output is forwarded (ahead).
  const run = (ahead) => {
    const places = new OutputPlaces();
    const out = [];
    const forward = (output) => {
      places.place(output);
      const queued = { at: undefined };
      places.placeInto(queued);
      out.push(queued);
    };
    // Input i (1..5) yields i % 3 outputs.
    let yielded = 0;
    const steps = [];
    for (let i = 1; i <= 5; i++) {
      steps.push(['took', yielded]);
      for (let j = 0; j < i % 3; j++) steps.push(['out', ++yielded]);
    }
    if (ahead) {
      for (const [kind, n] of steps) if (kind === 'took') places.took(n);
      for (const [kind, n] of steps) if (kind === 'out') forward(n);
    } else for (const [kind, n] of steps) kind === 'took' ? places.took(n) : forward(n);
    return out.map((o) => o.at);
  };
  assert.deepEqual(run(true), run(false));
  assert.deepEqual(run(false), [
    [1, 1],
    [2, 1],
    [2, 2],
    [4, 1],
    [5, 1],
    [5, 2],
  ]);
});

test("OutputPlaces: an input's outputs are marked answered at its last only, however far its handler ran ahead", () => {
  const places = new OutputPlaces();
  const placed = placer(places);
  // Input 1 yields three outputs (a token, a token, the answer's end) and its handler asks for its next input while
  // only the first is forwarded: a commit may carry it alone, and a stored mark that says its input is answered would
  // cover the end that was never written (a migrated session's later owner drops it as written before).
  places.took(0);
  const first = placed(1);
  places.asked(3);
  assert.deepEqual(first.at, [1, 1]);
  assert.deepEqual(placed(2).at, [1, 2]);
  assert.deepEqual(placed(3).at, [1, 3, true]);
  // Ahead by inputs: input 2 yields two outputs, input 3 one, all asked past before any is placed.
  places.took(3);
  places.asked(5);
  places.took(5);
  places.asked(6);
  places.took(6);
  assert.deepEqual(
    [placed(4).at, placed(5).at, placed(6).at],
    [
      [2, 1],
      [2, 2, true],
      [3, 1, true],
    ],
  );
});

test('OutputPlaces keeps no output once its handler has asked past it', async () => {
  const places = new OutputPlaces();
  places.took(0);
  places.place(1);
  let queued = { at: undefined };
  places.placeInto(queued);
  const kept = new WeakRef(queued);
  queued = null;
  places.asked(1);
  await new Promise((resolve) => setImmediate(resolve));
  globalThis.gc();
  assert.equal(kept.deref(), undefined, 'a live session holds nothing of its last output until its next');
});

test("Checkpoints: the entries a handler took after yielding an output that fails are the key's next session's, however far it ran ahead", () => {
  const entry = (n) => ({ id: `${n}-0`, key: 'k', payload: Buffer.from(String(n)) });
  const host = { codec: jsonCodec, maxCheckpointBytes: 1 << 20, maxEventBytes: 1 << 20 };
  const limits = { maxSessionEvents: 1000, maxSessionAge: 1e9, maxSessionTimers: 10, idleTimeout: 1000 };
  // The handler takes entry n having yielded n - 1 outputs (one output per entry); the first `forwarded` outputs are
  // forwarded; then output `failing` cannot be encoded.
  const run = (takes, forwarded, failing) => {
    const c = new Checkpoints(undefined, newState(0), limits, 'k@1-0', host);
    for (let n = 1; n <= takes; n++) {
      c.next(n - 1);
      c.took(`${n}-0`, n, entry(n));
      if (n <= forwarded) c.forwarded(n);
    }
    for (let n = takes + 1; n <= forwarded; n++) c.forwarded(n);
    const back = c.failAt(failing).map((e) => e.id);
    return { back, last: c.lastInput };
  };
  // In step (each output forwarded before the next take), then running ahead by 1, 3 and 6 takes.
  assert.deepEqual(run(6, 3, 4), { back: ['5-0', '6-0'], last: '4-0' });
  assert.deepEqual(run(6, 0, 4), { back: ['5-0', '6-0'], last: '4-0' });
  assert.deepEqual(run(6, 1, 2), { back: ['3-0', '4-0', '5-0', '6-0'], last: '2-0' });
  assert.deepEqual(run(6, 5, 6), { back: [], last: '6-0' });
  assert.deepEqual(run(1, 0, 1), { back: [], last: '1-0' });
});

test("planOpening: a new session starts from its key's state as it is if its release runs the version that kept it, converted if it migrates, else without it; a replay as its opening says", () => {
  const kept = (version) => ({ state: '{}', ...(version === undefined ? {} : { version }) });
  const plan = (release, k, openings = new Map()) =>
    planOpening({ key: 'k', sid: 'k@9-0', snapshot: undefined, openings, kept: k, release });
  const rows = [
    // release, kept by -> use, recorded in the opening
    [release('v2', ['v2', 'v1']), 'v1', 'as-is', undefined],
    [release('v2'), 'v2', 'as-is', undefined],
    [release('v2'), undefined, 'as-is', undefined],
    [release('v2'), '', 'as-is', undefined],
    [release('v2', ['v2'], true), 'v1', 'migrate', 'migrated'],
    [release('v1'), 'v2', 'refused', 'refused'],
  ];
  for (const [r, by, use, recorded] of rows) {
    const p = plan(r, kept(by));
    assert.deepEqual([p.keyState, p.opening.keyState], [use, recorded], `${r.version} reading a state kept by ${by}`);
  }
  assert.equal(plan(release('v2'), null).keyState, null);
  // A replay follows its stored opening: refused stays refused, whatever the release.
  const stored = (keyState) =>
    new Map([['k@9-0', { sid: 'k@9-0', version: 'v2', limits: CAPS, ...(keyState ? { keyState } : {}) }]]);
  assert.equal(plan(release('v3', ['v3', 'v2']), kept('v3'), stored('refused')).keyState, 'refused');
  assert.equal(plan(release('v3', ['v3', 'v2']), kept('v1'), stored()).keyState, 'as-is');
  // Converted before (its first checkpoint holds the result, unless a wake-up stored its opening first): converted
  // again only by a release of its version, else started without (another release's migrate makes another shape).
  assert.equal(plan(release('v2', ['v2'], true), kept('v1'), stored('migrated')).keyState, 'migrate');
  assert.equal(plan(release('v3', ['v3', 'v2'], true), kept('v1'), stored('migrated')).keyState, 'refused');
  // Adopted now by a release that migrates: converted as a new session's would be.
  const adopted = plan(
    release('v3', ['v3'], true),
    kept('v1'),
    new Map([['k@9-0', { sid: 'k@9-0', version: 'v2', limits: CAPS }]]),
  );
  assert.deepEqual([adopted.keyState, adopted.opening.replaces, adopted.opening.keyState], ['migrate', 'v2', 'migrated']);
});

test("an opening's debounce is stored and read back as it was; a stored value that is not one reads as unrecorded (the owner's)", () => {
  const { openingValue, parseOpening } = require('../dist/durable/common/stored.js');
  const base = { sid: 'k@1-0', version: 'v2', limits: CAPS };
  for (const debounce of [
    null,
    { wait: 300, leading: false, maxDelay: Infinity },
    { wait: 2.5, leading: true, maxDelay: 1000 },
    { wait: 0, leading: false, maxDelay: 0 },
  ]) {
    assert.deepEqual(parseOpening('k@1-0', openingValue({ ...base, debounce }))?.debounce, debounce, JSON.stringify(debounce));
  }
  // Written by an earlier release: no `d`, the owner's debounce.
  const stored = { v: 'v2', idle: 1000, age: 0, events: 0, timers: 1000 };
  assert.equal('debounce' in parseOpening('k@1-0', JSON.stringify(stored)), false);
  for (const d of [
    1,
    -1,
    'x',
    [],
    {},
    { w: -1, l: 0 },
    { w: 5, l: 2 },
    { w: 5, l: 0, x: -3 },
    { w: 5, l: 0, x: 'y' },
    { w: Infinity, l: 0 },
  ]) {
    const opening = parseOpening('k@1-0', JSON.stringify({ ...stored, d }));
    assert.equal(opening?.version, 'v2', JSON.stringify(d));
    assert.equal('debounce' in opening, false, JSON.stringify(d));
  }
});
