// The scenario language of the Redis session tests: a log of entries per key, the limits, and a handler whose every
// reaction is data carried by its input, so that one scenario drives the real worker, the in-memory simulator and
// the reference model (session-model.mjs) alike.
//
// A scenario is `{ log, limits, clock? }`:
// - `log`: entries `{ id: '<ms>-<seq>', key, event }` in id order (all keys); the id's ms is the entry's time on the
//   log's clock.
// - `limits`: `{ idleTimeout, maxSessionAge?, maxSessionEvents?, maxSessionTimers? }` (0 or absent: no cap; the timer
//   cap defaults to the worker's 1000).
// - `clock`: the log's clock at the end (ms), at least the last entry's time; absent, it passes every deadline.
//
// An input (an entry's `event`, or a timer's payload) is a reaction:
// `{ tag, at, yield?, timers?, checkpoint?, end? }`.
// - `tag` names the input in outputs; `at` is its time as the handler knows it (an entry's producer timestamp, which
//   may differ from its id's time; a timer's due time).
// - `yield` (default 1): how many outputs it makes.
// - `cancel`: `[key]`, each cancelled with `ctx.cancelTimer(key)` first; the keys of those that were pending are
//   named in the outputs' `cancelled`.
// - `timers`: `[{ after, key?, tag?, ...reaction }]`, each made with `ctx.wakeAt(at + after, payload, { key })`
//   (no options without `key`), the payload the reaction itself with `tag` (default `<tag>.<i>`) and `at` set to
//   its due time: a timer's payload says what the handler does when it fires, so chains are nested `timers`.
//   `after` may be negative (already due) or zero.
// - `checkpoint: true`: `ctx.checkpoint(state)` after the outputs.
// - `end: 'return' | 'throw'`: the handler then returns, or throws `ScriptError` (code `ERR_SCRIPT_THROW`).
//
// The handler's state is its count of inputs taken and their tags, and every output shows both, so a session's
// outputs reveal its history; a timer `ctx.wakeAt` refuses is named in `refused` (`ERR_VELO_TOO_MANY_TIMERS`) or
// `late` (`ERR_VELO_TIMER_PAST_AGE`). Every output shows `ctx.entry` too, when defined, as `entry: '<id>@<time>'`.
import { prng } from '../../bench/prng.mjs';

export const SCRIPT_THROW = 'ERR_SCRIPT_THROW';

/** Time on the log's clock of an entry id `<ms>-<seq>`. */
export const timeOf = (id) => Number(id.slice(0, id.indexOf('-')));

/** What the scripted handler yields, as a Redis output item or a model output (a failure as `{ error: code }`). */
export const outputView = (item) => (item.error !== undefined ? { error: item.error.code ?? item.error } : item.value);

/** The error the script throws on `end: 'throw'`. */
export function scriptError(tag) {
  return Object.assign(new Error(`scripted throw at ${tag}`), { code: SCRIPT_THROW });
}

/**
 * One step of the script, pure: the state after taking `input`, its outputs, and what follows them. `ctx` is the
 * handler's context, or the model's: `wakeAt(time, payload, options?)`, `cancelTimer(key)` and `entry`; a refusal
 * with `ERR_VELO_TOO_MANY_TIMERS` or `ERR_VELO_TIMER_PAST_AGE` is reported in the outputs, any other error propagates.
 */
export function react(state, input, ctx) {
  const count = state.count + 1;
  const took = [...state.took, input.tag];
  const cancelled = (input.cancel ?? []).filter((key) => ctx.cancelTimer(key));
  const refused = [];
  const late = [];
  for (const [i, { after, key, tag = `${input.tag}.${i}`, ...rest }] of (input.timers ?? []).entries()) {
    try {
      const payload = { ...rest, tag, at: input.at + after };
      if (key === undefined) ctx.wakeAt(input.at + after, payload);
      else ctx.wakeAt(input.at + after, payload, { key });
    } catch (error) {
      if (error?.code === 'ERR_VELO_TOO_MANY_TIMERS') refused.push(tag);
      else if (error?.code === 'ERR_VELO_TIMER_PAST_AGE') late.push(tag);
      else throw error;
    }
  }
  const entry = ctx.entry === undefined ? {} : { entry: `${ctx.entry.id}@${ctx.entry.time}` };
  const outputs = [];
  for (let part = 0; part < (input.yield ?? 1); part++) {
    outputs.push({
      in: input.tag,
      count,
      took: took.join(' '),
      ...entry,
      ...(part > 0 ? { part } : {}),
      ...(cancelled.length > 0 ? { cancelled } : {}),
      ...(refused.length > 0 ? { refused } : {}),
      ...(late.length > 0 ? { late } : {}),
    });
  }
  return { state: { count, took }, outputs, checkpoint: input.checkpoint === true, end: input.end };
}

/**
 * The scripted handler: a real `async function* (events, ctx)` for `streamFn` or `redisWorker`. Deterministic over
 * its inputs, and restored from `ctx.restored` (its checkpoint is its whole state). `pause(input)`, if given, is
 * awaited after each take, before the reaction: a simulator delays the handler there without changing what it does.
 *
 * `version` (a release's handler): its checkpoints say which version made them (`v`), every output names the version
 * that made it (`ver`), and a state restored from another version's checkpoint (not migrated to this one) marks every
 * output of the session (`wrong`), so that a reader, the model and the calm run all see it. With `upgrades` (a
 * worker with `keyState`), it takes the state of another version its release runs (`knows`), as docs/redis/versions.md
 * advises for a key's kept state: converted in the handler (here the shape is the same), not marked; a state of a
 * version it does not know (a newer release's) is marked. With `extra` (a
 * release that migrates), each input's outputs end with one more, `{ in, extra: version }`: a new version that
 * answers an input with more outputs than the old one, as readers would see it after a migration.
 */
/**
 * Calls of the scripted handler's services so far, in this scenario's runs: each call's answer differs from every
 * other's. Counted from 0 for each scenario (`resetServices`), so that a seed runs alike alone and after others.
 */
let served = 0;

/**
 * The version whose call made each service answer and each model answer (`s4`, `m5`), in this scenario's runs: a
 * check can tell an answer a new version made afresh from one it continued from the journal, whose outputs are the
 * same bytes whichever version yields them.
 */
export const madeBy = new Map();

/**
 * The versions whose handler made a journaled call (ran a service's body, or pulled the model) for each input, by
 * tag, in the run under way (`takeCallers`): a replay can diverge at an input only on records of another version's
 * calls for it (`journalChecks`).
 */
const callers = new Map();

/** The versions that made calls for each input in the run just done (`callers`), from which the next run starts anew. */
export function takeCallers() {
  const taken = new Map(callers);
  callers.clear();
  return taken;
}

/** A journaled call of `version` for input `tag`. */
function called(tag, version) {
  if (tag === undefined) return;
  const versions = callers.get(tag) ?? new Set();
  versions.add(version ?? '');
  callers.set(tag, versions);
}

/**
 * The bodies of journaled calls their handlers left running (`input.late`), by key: each answers once a session of
 * its key next starts (after the session that called it ended, or was taken over), or never.
 */
const lateBodies = new Map();

/** A scenario starts: its services count their calls from 0. */
export function resetServices() {
  lateBodies.clear();
  served = 0;
  madeBy.clear();
  callers.clear();
}

/**
 * Chunks of a streamed model answer, each `{ i, of }`: as many as the call draws (1 to 4, by the call's count and
 * the version asking: a model answers differently on every call, and a new version's at another length); after a
 * recorded prefix, the same answer continues (this call's length: one shorter than the prefix ends right after it).
 * Like a model behind `fetch`, it throws an AbortError once its signal aborted (the session cancelled by a hand-off).
 */
async function* modelStream(chunks, signal, version = '', tag = undefined) {
  called(tag, version);
  const call = ++served;
  const of = chunks.length > 0 ? chunks[0].of : `m${call}`;
  if (chunks.length === 0) madeBy.set(of, version);
  const length = 1 + ((call + [...version].reduce((sum, c) => sum + c.charCodeAt(0), 0)) % 4);
  for (let i = chunks.length; i < length; i++) {
    await Promise.resolve();
    signal.throwIfAborted();
    yield { i, of };
  }
}

/** A service's journaled call by `version`: an answer no other call gets. */
const service = async ({ signal }, version, tag) => {
  called(tag, version);
  await Promise.resolve();
  signal.throwIfAborted();
  const answer = `s${++served}`;
  madeBy.set(answer, version);
  return answer;
};

/** The journaled calls of an input without a plan for the version (`input.calls`): a service, then the model. */
export const DEFAULT_CALLS = [{ run: 'svc' }, { stream: 'model' }];

/** The journaled calls `version` makes for `input` (`input.calls[version]`, else `DEFAULT_CALLS`). */
export const callsOf = (input, version) =>
  input.calls !== undefined && Object.hasOwn(input.calls, version ?? '') ? input.calls[version ?? ''] : DEFAULT_CALLS;

/** The first version (in release order) that makes the calls `version` makes for `input`. */
function planOwner(input, version) {
  if (input.calls === undefined || version === undefined) return version;
  const plan = JSON.stringify(callsOf(input, version));
  return Object.keys(input.calls).find((v) => JSON.stringify(input.calls[v]) === plan) ?? version;
}

export function scriptHandler({ pause, version, upgrades = false, extra = false, knows = [version] } = {}) {
  return async function* script(events, ctx) {
    let state = ctx.restored ?? { count: 0, took: [] };
    let mark = {};
    if (version !== undefined) {
      const of = ctx.restored?.v ?? '';
      if (ctx.restored !== undefined && of !== version && !(upgrades && (of === '' || knows.includes(of))))
        mark = { wrong: `a ${ctx.restored.v ?? 'unversioned'} state on ${version}` };
      state = { count: state.count, took: state.took };
      mark = { ver: version, ...mark };
    }
    // (The calls earlier sessions of this key left running answer now: their sessions ended or were taken over. A
    // session's id is `<key>@<its first entry>`; a context made by hand may have none.)
    const key = typeof ctx.id === 'string' ? ctx.id.slice(0, ctx.id.lastIndexOf('@')) : undefined;
    for (const answer of lateBodies.get(key) ?? []) answer('late');
    lateBodies.delete(key);
    for await (const input of events) {
      if (pause !== undefined) await pause(input, ctx.entry);
      if (input.journal === true) {
        // The version's journaled calls for the input (`callsOf`), in order: a service that answers differently on
        // every call (`ctx.run`), or a model streamed (`ctx.stream`) that continues a recorded prefix (the same
        // answer) and starts a new answer otherwise; one output per result and per chunk, each carrying the
        // results got so far (`answer`: a call made again where its record stood would show another), a pause after
        // each (a crash or a deploy may come there), then the end. A call other than the one recorded at its place
        // (another version's calls) throws ERR_VELO_JOURNAL_DIVERGED: the handler yields a restart and makes its
        // calls again, at the places after (docs/durable/answers.md: catch it and end the answer).
        const calls = callsOf(input, version);
        // (Its outputs name the first version with its calls: versions that make the same calls yield the same
        // outputs, so that one can continue another's answer in flight.)
        const owner = planOwner(input, version);
        const jmark = owner === version ? mark : { ...mark, ver: owner };
        // (`marker`: a start output before any call, as docs/durable/migrate.md advises: the same in every version
        // with the same calls (`'same'`), or naming the version that made it (`'versioned'`), which each version that
        // begins the answer writes once.)
        if (input.marker !== undefined) {
          yield { in: input.tag, begin: input.marker === 'same' ? true : (version ?? ''), ...jmark };
          if (pause !== undefined) await pause(input, ctx.entry);
        }
        let got = [];
        // (Each try after a restart is numbered in its outputs: a reader that sees one without its restart before
        // it lost that restart.)
        let again = {};
        for (;;) {
          try {
            for (const call of calls) {
              if (call.run !== undefined) {
                got = [...got, await ctx.run(call.run, (c) => service(c, version, input.tag))];
                yield { in: input.tag, call: call.run, answer: got.join(' '), ...again, ...jmark };
                if (pause !== undefined) await pause(input, ctx.entry);
                continue;
              }
              // Its outputs per chunk (`call.shape`): one each; one per two (`pairs`: chunks `from`..`i`, the last
              // alone); or two each (`halves`: `half` 0 and 1).
              const model = ctx.stream(call.stream, ({ chunks, signal }) => modelStream(chunks, signal, version, input.tag));
              let pending = null;
              for await (const pulled of model) {
                // Like a handler that reuses what it got: its chunk is changed once read (a replay's recorded chunks
                // must reach the model as recorded, whatever the handler did to its own).
                const chunk = { ...pulled };
                pulled.of = 'changed by the handler';
                const answer = got.join(' ');
                if (call.shape === 'pairs') {
                  if (pending === null) {
                    pending = chunk;
                    continue;
                  }
                  yield {
                    in: input.tag,
                    call: call.stream,
                    answer,
                    chunk: { ...chunk, from: pending.i },
                    ...again,
                    ...jmark,
                  };
                  pending = null;
                } else if (call.shape === 'halves') {
                  yield {
                    in: input.tag,
                    call: call.stream,
                    answer,
                    chunk: { ...chunk, half: 0 },
                    ...again,
                    ...jmark,
                  };
                  if (pause !== undefined) await pause(input, ctx.entry);
                  yield { in: input.tag, call: call.stream, answer, chunk: { ...chunk, half: 1 }, ...again, ...jmark };
                } else yield { in: input.tag, call: call.stream, answer, chunk, ...again, ...jmark };
                if (pause !== undefined) await pause(input, ctx.entry);
              }
              if (pending !== null) {
                const chunk = { ...pending, from: pending.i };
                yield { in: input.tag, call: call.stream, answer: got.join(' '), chunk, ...again, ...jmark };
                if (pause !== undefined) await pause(input, ctx.entry);
              }
            }
            break;
          } catch (error) {
            if (error?.code !== 'ERR_VELO_JOURNAL_DIVERGED') throw error;
            got = [];
            again = { try: (again.try ?? 0) + 1 };
            yield { in: input.tag, restart: error.code, ...again, ...jmark };
            if (pause !== undefined) await pause(input, ctx.entry);
          }
        }
        yield { in: input.tag, answer: got.join(' '), done: true, ...again, ...jmark };
        // A journaled call the handler does not await, at the same place in every version: its body answers only
        // after this session, or this owner's run of it, is over (`lateBodies`). What it answers then is recorded
        // nowhere: no commit would forget it (the simulator's leftovers).
        if (input.late === true) {
          const later = (answer) => lateBodies.set(key, [...(lateBodies.get(key) ?? []), answer]);
          ctx.run('late', () => new Promise(later)).catch(() => {});
        }
        state = { count: state.count + 1, took: [...state.took, input.tag] };
        if (input.checkpoint === true) ctx.checkpoint(version === undefined ? state : { ...state, v: version });
        continue;
      }
      if (input.bounded !== undefined) {
        // Journaled calls whose results have the sizes the input names (`--journal-bound`: sim-journal-bound.mjs), an
        // output per call saying whether the journal took its result or refused it past `maxJournalBytes`, a pause
        // after each, then the end. What a call's result says differs on every call; its size does not.
        for (const [call, size] of input.bounded.entries()) {
          let took;
          try {
            await ctx.run(`b${call}`, () => `s${++served}`.padEnd(size, '.'));
            took = 'kept';
          } catch (error) {
            if (error?.code !== 'ERR_VELO_JOURNAL_TOO_LARGE') throw error;
            took = 'refused';
          }
          // (The same outputs in every version: one adopting an answer in flight continues it.)
          yield { in: input.tag, call, took };
          if (pause !== undefined) await pause(input, ctx.entry);
        }
        yield { in: input.tag, done: true };
        state = { count: state.count + 1, took: [...state.took, input.tag] };
        if (input.checkpoint === true) ctx.checkpoint(version === undefined ? state : { ...state, v: version });
        continue;
      }
      if (input.answer !== undefined) {
        // An answer in tokens, a pause between each (a commit, a crash or a deploy may come mid-answer), then its
        // end: as many tokens as the version answers with (`answer[version]`, else `answer.tokens`).
        const tokens = Object.hasOwn(input.answer, version ?? '') ? input.answer[version] : input.answer.tokens;
        for (let tok = 0; tok < tokens; tok++) {
          yield { in: input.tag, tok, ...mark };
          if (pause !== undefined) await pause(input, ctx.entry);
        }
        yield { in: input.tag, done: tokens, ...mark };
        state = { count: state.count + 1, took: [...state.took, input.tag] };
        if (input.checkpoint === true) ctx.checkpoint(version === undefined ? state : { ...state, v: version });
        continue;
      }
      const step = react(state, input, ctx);
      state = step.state;
      for (const output of step.outputs) yield version === undefined ? output : { ...output, ...mark };
      if (extra) yield { in: input.tag, extra: version, ...mark };
      if (step.checkpoint) ctx.checkpoint(version === undefined ? state : { ...state, v: version });
      if (step.end === 'return') return;
      if (step.end === 'throw') throw scriptError(input.tag);
    }
  };
}

/**
 * A seeded random scenario. Gaps between a key's entries are drawn from the boundaries (ties, exactly
 * `idleTimeout` and one either side, the age's end and one either side), as are timers' due times (in the past,
 * exactly at the input, at the idle and age ends and one either side); caps are small enough to hit. Options:
 * `keys` and `entries` ([min, max]); `shape: 'timerCounts'` keeps to what that fixture handler can express (one
 * output per input, leaf timers then at most one linear chain, no end, no timer cap, no finite clock).
 */
export function randomScenario(seed, { keys = [1, 3], entries = [1, 8], shape = 'any' } = {}) {
  const random = prng(seed);
  const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = (list) => list[Math.floor(random() * list.length)];
  const chance = (p) => random() < p;
  const free = shape !== 'timerCounts';

  const idle = pick([100, 250, 1000]);
  const limits = { idleTimeout: idle };
  if (chance(0.4)) limits.maxSessionAge = pick([Math.floor(idle / 2), idle - 1, idle, 2 * idle, 3 * idle]);
  if (chance(0.4)) limits.maxSessionEvents = int(2, 6);
  if (free && chance(0.3)) limits.maxSessionTimers = int(1, 3);
  const age = limits.maxSessionAge ?? 0;

  // Where a timer is due, about the input's time `at` and the generator's guesses of the session's start and of its
  // latest time (the real ones depend on the walk; a guess still lands on a boundary often).
  const due = (at, start, last) =>
    pick([
      at - int(1, idle),
      at,
      at + 1,
      at + int(2, idle - 2),
      last + idle - 1,
      last + idle,
      last + idle + 1,
      ...(age > 0 ? [start + age, start + age + 1, start + age + 2] : []),
    ]);
  const reaction = (tag, at, start, last, depth) => {
    const r = { tag, at };
    if (free && chance(0.2)) r.yield = pick([0, 2]);
    const timers = [];
    const leaves = pick([0, 0, 1, 1, 2, 3]);
    for (let i = 0; i < leaves; i++) {
      const when = due(at, start, last);
      const leaf = free && depth < 2 && chance(0.25) ? reaction(`${tag}.${i}`, when, start, Math.max(last, when), depth + 1) : {};
      delete leaf.tag;
      delete leaf.at;
      // A keyed timer: a later one of the same key replaces it, a `cancel` of it cancels it.
      if (free && chance(0.35)) leaf.key = pick(['x', 'y']);
      timers.push({ after: when - at, ...leaf });
    }
    if (free && chance(0.2)) r.cancel = [pick(['x', 'y'])];
    if (!free && chance(0.3)) timers.push(chain(tag, 0, at, start, last));
    if (timers.length > 0) r.timers = timers;
    if (chance(0.3)) r.checkpoint = true;
    if (free && chance(0.08)) r.end = pick(['return', 'throw']);
    return r;
  };
  // A linear chain (the timerCounts fixture's `chain`): each timer, as it fires, makes the next.
  const chain = (tag, step, at, start, last) => {
    const when = due(at, start, last);
    const link = { after: when - at, tag: `${tag}.c${step}` };
    if (step < 2 && chance(0.5)) link.timers = [chain(tag, step + 1, when, start, Math.max(last, when))];
    return link;
  };

  const drawn = [];
  const names = ['a', 'b', 'c', 'd'].slice(0, int(...keys));
  for (const [k, key] of names.entries()) {
    let t = 1_000_000 + int(0, 3);
    let start = t;
    const n = int(...entries);
    for (let i = 0; i < n; i++) {
      if (i > 0) {
        const gap = pick([
          0,
          0,
          1,
          int(2, idle - 2),
          idle - 1,
          idle,
          idle + 1,
          3 * idle,
          ...(age > 0 ? [start + age - t, start + age + 1 - t] : []),
        ]);
        const last = t;
        t += Math.max(0, gap);
        if (t - last >= idle || (age > 0 && t > start + age)) start = t;
      }
      const skew = chance(0.2) ? -int(1, idle) : 0;
      drawn.push({ t, k, key, event: reaction(`${key}${i}`, t + skew, start, t, 0) });
    }
  }
  drawn.sort((x, y) => x.t - y.t || x.k - y.k);
  const log = [];
  for (const [i, { t, key, event }] of drawn.entries()) {
    const seq = i > 0 && drawn[i - 1].t === t ? Number(log[i - 1].id.split('-')[1]) + 1 : 0;
    log.push({ id: `${t}-${seq}`, key, event });
  }
  const scenario = { log, limits };
  if (free && chance(0.3)) scenario.clock = drawn.at(-1).t + pick([0, idle - 1, idle, idle + 1, 2 * idle]);
  return scenario;
}
