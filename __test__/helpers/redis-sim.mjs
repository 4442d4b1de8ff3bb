// Seeds for the simulator (js/durable/testing/simulator.ts): each seed draws a log (keys, ties, gaps at the idle and age
// boundaries, producer timestamps behind the entries' times), the scripted handler's reactions (session-script.mjs:
// outputs, timers at and around the boundaries, chained timers, checkpoints, a return or a throw), the worker's
// limits (small reads, buffers and slots, to force the held and spilled paths) and faults (crashes, pauses past the
// lease, lost, refused and late replies). The oracle: the reference model (session-model.mjs), on the entry ids
// each run's log gave the events; the run without faults (the handler never delayed) must make the same sessions
// and outputs as the faulty one too, and (with checkReplay) end each session where the calm run did, by its kept
// ends; the calm run must take each timer when it is due (`CALM_LATE_MS`: outputs cannot show a late timer); and
// in both, every (sid, seq) once and in order, nothing left in the log's bookkeeping, no buffer over its bound, no
// divergence reported, no error but lost connections and fencing.
import { streamFn } from 'velo-stream';
import { simulate } from '#testing';
import { prng } from '../../bench/prng.mjs';
import { model } from './session-model.mjs';
import { resetServices, scriptHandler, takeCallers, timeOf } from './session-script.mjs';
import { JOURNAL_KEYS, callsDiffer, journalChecks, journalPlansFor } from './sim-journal.mjs';
import { BOUND_KEYS, boundChecks, journalBoundFor } from './sim-journal-bound.mjs';

/** The one-line command that replays a seed, with its trace and a shrunk scenario (`permits`: its faulty run with limiters). */
export const replayCommand = (
  seed,
  only = FAULT_KINDS,
  {
    permits = false,
    versions = false,
    debounce = false,
    keyState = false,
    hostileMigrate = false,
    releaseDebounce = false,
    clockSkew = false,
    poolOrder = false,
    cut = false,
    answers = false,
    journal = false,
    journalBound = false,
    markers = false,
    wide = false,
    pipe = false,
  } = {},
) =>
  `node scripts/sim.mjs --seed ${seed} --trace --shrink${only.length === FAULT_KINDS.length ? '' : ` --only ${only.join(',')}`}${permits ? ' --permits' : ''}${versions ? ' --versions' : ''}${debounce ? ' --debounce' : ''}${keyState ? ' --key-state' : ''}${hostileMigrate ? ' --hostile-migrate' : ''}${releaseDebounce ? ' --release-debounce' : ''}${clockSkew ? ' --clock-skew' : ''}${poolOrder ? ' --pool-order' : ''}${cut ? ' --cut' : ''}${answers ? ' --answers' : ''}${journal ? ' --journal' : ''}${journalBound ? ' --journal-bound' : ''}${markers ? ' --markers' : ''}${wide ? ' --wide' : ''}${pipe ? ' --pipe' : ''}`;

/** The `keyState` of a seed's runs with key state: kept a day (far past any run). */
export const KEY_STATE = { retention: 86_400_000 };

/**
 * The debounce of a seed's debounced runs (`redisWorker`'s option, as given), drawn from a stream of the seed's own:
 * trailing or leading, a `wait` about the scenario's gaps (a fraction of a ms now and then: due times are rounded
 * up), and a `maxDelay` or none.
 */
export function debounceFor(seed, idle) {
  const random = prng(seed + 0x64626e63);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const wait = pick([1, 2.5, Math.floor(idle / 4), idle - 1, idle, idle + 1]);
  const maxDelay = pick([undefined, undefined, wait, Math.ceil(wait * 2), idle]);
  return { wait, edge: pick(['trailing', 'leading']), ...(maxDelay === undefined ? {} : { maxDelay }) };
}

/** A debounce as drawn (`debounceFor`: `{ wait, edge, maxDelay? }`) as the engine takes it. */
const engineDebounce = (d) => ({ wait: d.wait, leading: d.edge === 'leading', maxDelay: d.maxDelay ?? Infinity });

/** The release chains a seed's versioned runs deploy (`versionsFor`): waiting, migrating, and both. */
export const RELEASE_CHAINS = {
  // Each release carries the ones before: sessions keep their version until they end.
  wait: [{ version: 'v1' }, { version: 'v2', carries: ['v1'] }, { version: 'v3', carries: ['v1', 'v2'] }],
  // v2 adopts v1's sessions from their checkpoints.
  migrate: [{ version: 'v1' }, { version: 'v2', migrate: true }],
  // The third carries the second and adopts what is older (v1's sessions). Named as Object.prototype's own
  // properties: a version is a name, never a key looked up through a prototype.
  mixed: [
    { version: 'v1' },
    { version: 'constructor', carries: ['v1'] },
    { version: '__proto__', carries: ['constructor'], migrate: true },
  ],
  // Two migrating releases, the later carrying the earlier.
  twice: [{ version: 'v1' }, { version: 'v2', migrate: true }, { version: 'v3', carries: ['v2'], migrate: true }],
  // A release that does not carry the one before: neither supersedes the other; partitions with v1 sessions stay
  // with (or are rescued by) v1 workers, which are never stopped.
  nocarry: [{ version: 'v1' }, { version: 'v2' }],
};

/**
 * Whether release `a` supersedes release `b`, as docs/redis/versions.md says (written from the docs, not from the
 * engine's rule): a worker with `migrate` supersedes every worker without; of two that both migrate or both do not,
 * the one that runs every version the other runs, and more.
 */
export function supersedesByDocs(a, b) {
  if ((a.migrate === true) !== (b.migrate === true)) return a.migrate === true;
  const runs = (r) => new Set([r.version, ...(r.carries ?? [])]);
  const [ra, rb] = [runs(a), runs(b)];
  return ra.size > rb.size && [...rb].every((v) => ra.has(v));
}

/**
 * The fleet invariant of the versioned runs (`SimOptions.invariant`): a worker superseded by one that is up and
 * registered (what the others can see of it) hands its partitions over (within a lease and a balance period of both
 * being so, and `stall` ms more for each of the two where a call may stall until its bound cuts it), so it never
 * keeps serving beside a newer release: two releases would then open, or migrate, each other's sessions. (A stall of
 * each: the newer worker's registration seen again only when its heartbeat's stalled reply comes; then the older's
 * heartbeat, which would see it, stalls. The newer worker's heartbeats may stall again and again: its registration
 * lapses, and the older rightly serves on meanwhile.)
 */
export function supersededHandOver(releases, leaseTtl, stall = 0) {
  const since = new Map();
  const unowned = new Map();
  const grace = 2 * leaseTtl + 2 * stall;
  const runs = (r, versions) =>
    r.migrate === true || versions.every((v) => v === '' || v === r.version || (r.carries ?? []).includes(v));
  return (fleet) => {
    // A partition whose live sessions an up worker can run is not left without an owner (docs/redis/versions.md: a
    // worker takes a partition refused to others past its share).
    const now = fleet.now - fleet.skipped;
    for (const [p, { owner, versions }] of fleet.partitions.entries()) {
      const can = owner === null && fleet.processes.some((q) => q.up && runs(releases[q.release], versions));
      if (!can) {
        unowned.delete(p);
        continue;
      }
      const from = unowned.get(p) ?? now;
      unowned.set(p, from);
      if (now - from > 2 * grace)
        return `p${p} (sessions on ${versions.join(', ') || 'none'}) has no owner ${now - from} ms while a worker that runs them is up`;
    }
    for (const p of fleet.processes) {
      const over =
        p.up &&
        p.partitions.length > 0 &&
        fleet.processes.some((q) => q.up && q.registered && supersedesByDocs(releases[q.release], releases[p.release]));
      if (!over) {
        since.delete(p.id);
        continue;
      }
      // (Time the simulation skipped over, with nothing but renewals to run, is not time the worker had.)
      const now = fleet.now - fleet.skipped;
      const from = since.get(p.id) ?? now;
      since.set(p.id, from);
      if (now - from > grace)
        return `${p.id} (${releases[p.release].version}) still runs p${p.partitions.join(', p')} ${now - from} ms after a worker that supersedes it is up`;
    }
    return undefined;
  };
}

/**
 * The versioned runs' check of `redisVersions().drained()` (`SimOptions.invariant`; `fleet.drained` is its rule over
 * what the store holds), written from docs/redis/versions.md: a version is drained once no live session runs on it
 * and no live worker of it owns a partition. At no step may `drained` hold while a session of the version lives on
 * the process that holds its partition's lease (a deploy script would remove a handler a session still runs on),
 * nor fail to hold once no session is counted on it and no worker of it owns a partition (it would wait for ever).
 */
export function drainedAsDocs(releases) {
  return (fleet) => {
    for (const q of fleet.processes) {
      for (const { partition, version } of q.sessions) {
        if (fleet.partitions[partition].owner === q.id && fleet.drained(version))
          return `drained('${version}') would resolve while ${q.id} runs a session on it in p${partition}`;
      }
    }
    for (const { version } of releases) {
      const none =
        fleet.partitions.every((p) => (p.counts.get(version) ?? 0) === 0) &&
        !fleet.processes.some((q) => q.version === version && fleet.partitions.some((p) => p.owner === q.id));
      if (none && !fleet.drained(version)) return `drained('${version}') would not resolve: no session or owner is on it`;
    }
    return undefined;
  };
}

/**
 * Every check of the versioned runs' fleet at each step: hand-overs (`supersededHandOver`) and `drainedAsDocs`;
 * `stall`: how long a call may stall before it is cut (`SimFaults.callTimeout` of a run with `cut`), 0 for none.
 */
function versionsInvariant(releases, leaseTtl, stall = 0) {
  const handOver = supersededHandOver(releases, leaseTtl, stall);
  const drained = drainedAsDocs(releases);
  return (fleet) => handOver(fleet) ?? drained(fleet);
}

/** `migrate` of the versioned runs: the state as `to` checkpoints it (the scripted handler checks it). */
export const migrateState = (state, from, to) => {
  if ((state?.v ?? '') !== from) throw new Error(`migrate(${JSON.stringify(state)}, ${from}) to ${to}: not a ${from} state`);
  return { ...state, v: to };
};

/**
 * The keys of `--answers` runs: each event is a question answered in tokens and an end (`{ in, done }`), a pause
 * between tokens, and a migrating release answers in fewer tokens than the release before it (`answersFor`).
 */
export const ANSWER_KEYS = ['Q0', 'Q1', 'Q2'];

/**
 * The answers of `--answers` runs, per key and question: each question's outputs as read back must hold exactly one
 * end, and the version that wrote it must have written its whole answer, in order, just before it (outputs of
 * another version before those are an answer given up at a migration; a head of one answer ending in another's tail
 * is a splice). Every question the run sent is answered.
 */
export function answerChecks(result, s) {
  const problems = [];
  const asked = s.events.filter((e) => ANSWER_KEYS.includes(e.key)).map((e) => e.event);
  const byTag = new Map();
  for (const o of [...result.outputs].sort((a, b) => (a.sid < b.sid ? -1 : a.sid > b.sid ? 1 : a.seq - b.seq))) {
    if (!('value' in o) || !ANSWER_KEYS.includes(o.key)) continue;
    const list = byTag.get(o.value.in) ?? [];
    list.push(o.value);
    byTag.set(o.value.in, list);
  }
  for (const question of asked) {
    const outs = byTag.get(question.tag) ?? [];
    const ends = outs.filter((o) => o.done !== undefined);
    if (ends.length !== 1) {
      problems.push(
        `${question.tag}: ${ends.length} ends in its answer (${outs.map((o) => `${o.ver}:${o.done ?? o.tok}`).join(' ')})`,
      );
      continue;
    }
    const end = ends[0];
    const tokens = Object.hasOwn(question.answer, end.ver) ? question.answer[end.ver] : question.answer.tokens;
    const whole = outs.slice(outs.length - tokens - 1);
    const ok =
      outs.at(-1) === end &&
      whole.length === tokens + 1 &&
      whole.every((o, i) => o.ver === end.ver && (i === tokens ? o.done === tokens : o.tok === i));
    if (!ok)
      problems.push(
        `${question.tag}: not one whole answer at its end (${outs.map((o) => `${o.ver}:${o.done ?? o.tok}`).join(' ')})`,
      );
  }
  return problems;
}

/** The keys of `--hostile-migrate` runs, whose every conversion by `migrate` returns a state that cannot be read. */
export const HOSTILE_KEYS = ['H0', 'H1', 'H2', 'H3'];

/**
 * `migrate` of `--hostile-migrate` runs: a state of a hostile key (one that took an event of it) comes back as an
 * object whose `then` getter throws, as a revoked Proxy or a careless class would. docs/redis/versions.md: the
 * session fails with ERR_VELO_MIGRATE (a key's kept state: the session starts without it), and nothing else changes.
 */
export const hostileMigrate = (state, from, to) => {
  const converted = migrateState(state, from, to);
  if (!(state?.took ?? []).some((tag) => HOSTILE_KEYS.some((key) => String(tag).startsWith(`${key}.`)))) return converted;
  return Object.defineProperty({ ...converted }, 'then', {
    get() {
      throw new Error('a then that cannot be read');
    },
  });
};

/**
 * The releases and deploys of a seed's versioned runs (`SimOptions.releases`, `deploys`, `oldJoins`), drawn from a
 * stream of the seed's own, over the span of its events (`from`..`to`, virtual ms): a chain of `RELEASE_CHAINS`,
 * each later release deployed at a drawn time with one or two processes, the older processes stopped gracefully a
 * drawn time later (or never), and crashed processes sometimes replaced by an older release's.
 */
export function versionsFor(seed, from, to) {
  const random = prng(seed + 0x76657273);
  const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = (list) => list[Math.floor(random() * list.length)];
  const chain = pick(Object.keys(RELEASE_CHAINS));
  const releases = RELEASE_CHAINS[chain];
  const deploys = [];
  let at = from;
  for (let release = 1; release < releases.length; release++) {
    at = int(at, Math.max(at, to));
    // Stopped, or not (never while a later release cannot run their sessions).
    const stopOld = chain !== 'nocarry' && random() < 0.6 ? int(0, 3000) : undefined;
    deploys.push({ at, release, workers: int(1, 2), ...(stopOld === undefined ? {} : { stopOld }) });
  }
  return { chain, releases, deploys, oldJoins: pick([0, 0, 0.3]) };
}

/**
 * The limiters a seed's faulty run takes permits of with `permits` (simulator.ts `SimOptions.permits`), drawn from
 * a stream of the seed's own: a session limiter, a step limiter or both, shared by the run's processes, with
 * concurrency 1 or 2, `maxWaiting` 1, 2 or 1000, and acquires that fail now and then (or never).
 */
export function permitsFor(seed) {
  const random = prng(seed + 0x7065726d);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const kind = pick(['session', 'step', 'both']);
  const permits = { maxWaiting: pick([1, 2, 1000]), fail: pick([0, 0, 0.05]) };
  if (kind !== 'step') permits.session = pick([1, 2]);
  if (kind !== 'session') permits.step = pick([1, 2]);
  return permits;
}

/** The seed's scenario: `{ events, idleTimeout, maxConcurrent, limits, faults }`. */
export function scenario(seed) {
  const random = prng(seed);
  const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = (list) => list[Math.floor(random() * list.length)];
  const chance = (p) => random() < p;

  const idle = pick([100, 250, 1000]);
  const limits = {
    leaseTtl: pick([300, 600, 1500]),
    readCount: pick([1, 2, 3, 16]),
    maxBufferedEvents: pick([1, 2, 4, 64]),
    checkReplay: chance(0.5),
  };
  if (chance(0.3)) limits.maxSessionAge = pick([Math.floor(idle / 2), idle - 1, idle, 2 * idle]);
  if (chance(0.3)) limits.maxSessionEvents = int(2, 6);
  if (chance(0.2)) limits.maxSessionTimers = int(1, 3);
  const age = limits.maxSessionAge ?? 0;

  // Timer keys and cancels, drawn from a stream of their own (the draws above and below make the scenarios they
  // made before keys existed, plus keys).
  const keyed = prng(seed + 0x6b6579);
  const keyOf = () => (keyed() < 0.35 ? { key: keyed() < 0.5 ? 'x' : 'y' } : {});
  // A reaction: what the handler does with an input (an event, or a timer's payload), as data in that input, in the
  // scenario language of session-script.mjs (a timer `{ after, key?, ...the reaction to it }`).
  let tags = 0;
  const reaction = (at, depth) => {
    const r = { tag: `r${++tags}`, at };
    if (chance(0.15)) r.yield = pick([0, 2]);
    const timers = [];
    for (let i = pick([0, 0, 0, 1, 1, 2]); i > 0; i--) {
      const after = pick([-int(1, idle), 0, 1, idle - 1, idle, idle + 1, int(2, 2 * idle), ...(age > 0 ? [age, age + 1] : [])]);
      timers.push({ after, ...(depth < 2 && chance(0.3) ? reaction(at + after, depth + 1) : { tag: `r${++tags}` }), ...keyOf() });
    }
    if (timers.length > 0) r.timers = timers;
    if (keyed() < 0.2) r.cancel = [keyed() < 0.5 ? 'x' : 'y'];
    if (chance(0.3)) r.checkpoint = true;
    if (chance(0.04)) r.end = pick(['return', 'throw']);
    return r;
  };

  const events = [];
  const keys = ['a', 'b', 'c'].slice(0, int(1, 3));
  for (const key of keys) {
    let t = 1_000_000 + int(0, 3);
    const start = t;
    for (let i = int(1, 8); i > 0; i--) {
      events.push({ at: t, key, event: reaction(t - (chance(0.25) ? int(1, idle) : 0), 0) });
      t += pick([
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
      t = Math.max(t, events.at(-1).at);
    }
  }
  events.sort((x, y) => x.at - y.at);
  const faults = {
    crash: pick([0, 0.003, 0.01, 0.03]),
    maxCrashes: int(1, 3),
    pause: pick([0, 0.003, 0.01]),
    lost: pick([0, 0.02, 0.1]),
    refused: pick([0, 0.02]),
    delay: pick([0, 0.1, 0.3]),
    maxDelay: pick([5, 100, 400]),
  };
  const maxConcurrent = pick([1, 2, 3, 8]);
  // (Drawn last: the draws before it make the same scenarios as before trims were drawn.)
  limits.trimInterval = pick([0, 0, 50, 500]);
  // A crash just after a commit applied (before its reply), at the first dozen: where a checkpoint has just been
  // committed and the handler goes on from it. (Drawn last, as trims.)
  faults.crashAfterCommits = chance(0.5) ? [int(1, 12)] : [];
  // A crash just after a wake-up is written (before its reply): the next owner finds a wake-up it did not write,
  // maybe of a session it restores from a checkpoint only once a slot frees. (Drawn last, as trims.)
  faults.crashAfterWakes = chance(0.5) ? [int(1, 3)] : [];
  // Two partitions, one owner for both at first: a takeover restores the first's sessions into the free slots, and
  // the second's wait for one (a wake-up of such a session, read first, starts its restore). (Drawn last, as trims.)
  if (chance(0.3)) limits.partitions = 2;
  return { events, idleTimeout: idle, maxConcurrent, limits, faults };
}

/** A pipe's last stage (`--pipe`): each output of the stage before it, as it is. */
const passOn = streamFn(async function* passOn(outputs) {
  for await (const o of outputs) yield o;
});

/** Scenario `s` for a pipe (`--pipe`): its reactions keep what a stage without hooks can do, outputs and ends. */
function pipeScenario(s) {
  s.pipe = true;
  for (const e of s.events) {
    delete e.event.timers;
    delete e.event.cancel;
    delete e.event.checkpoint;
  }
}

/** The versions a release runs: its own and those it carries (none: `[undefined]`, the handler's own default). */
const runsOf = (release) => (release === undefined ? undefined : [release.version, ...(release.carries ?? [])]);

/**
 * How a new session of release `release` starts from a key's state kept by `version` (docs/redis/key-state.md): as it
 * is if the release runs that version (or either has none), converted by `migrate` if it migrates, else not at all.
 */
export function keyStateUse(release, version) {
  if (version === '' || runsOf(release).includes(version)) return 'as-is';
  return release.migrate === true ? 'migrate' : 'refused';
}

/**
 * The scripted handler (session-script.mjs) as a function, `delay()` awaited after each take; `took(input, entry)`,
 * if given, is told of each take first.
 */
export function scripted(delay, { idleTimeout, maxConcurrent, limits, versions }, took, version) {
  return streamFn(
    scriptHandler({
      pause: (input, entry) => {
        took?.(input, entry);
        return delay();
      },
      version,
      upgrades: limits?.keyState != null,
      extra: versions?.releases.some((r) => r.version === version && r.migrate === true) ?? false,
      knows: runsOf(versions?.releases.find((r) => r.version === version)),
    }),
    { idleTimeout, maxConcurrent },
  );
}

/**
 * Most virtual ms a timer of a calm run (no faults, the handler never delayed) is taken after it was due (its due
 * time, or when it was made if later). Outputs cannot show a late timer (its payload and `ctx.entry.time` are the
 * same whenever it fires), so a wake-up or tick skipped or written late would pass an outputs-only oracle; the calm
 * runs of 2,300 seeds take every timer within 10 ms (a session waiting for a slot).
 */
export const CALM_LATE_MS = 100;

/**
 * A recorder of when each timer is taken, on the run's virtual clock (`now`): `took` for `scripted`, and `late()`,
 * the timers taken more than `bound` ms after they were due (or made), as `<tag> <lag> ms`.
 */
function timerLags(now, bound) {
  const made = new Map();
  const late = [];
  return {
    took(input, entry) {
      // (A timer's input the handler made: an event debounce delivers at its own timer's time was made by no handler.)
      if (entry?.id.startsWith('t') && made.has(input.tag)) {
        const lag = now() - Math.max(entry.time, made.get(input.tag) ?? -Infinity);
        if (lag > bound) late.push(`${input.tag} ${lag} ms`);
      }
      // The timers this input makes are made now (in a calm run the handler reacts at its take).
      for (const [i, timer] of (input.timers ?? []).entries()) made.set(timer.tag ?? `${input.tag}.${i}`, now());
    },
    late: () => late,
  };
}

/**
 * Sessions as `{ key: [[session, outputs...]...] }`, from `[sid, outputs]` pairs: a session named by its key and the
 * index of the event that opened it (`result.ids`: each event's entry id, `result.keys` its key). Sids are not
 * compared: an event's entry id depends on what else its partition got in the same ms (a tick, a wake-up, a
 * marker: a crash changes those), in Redis as here. (Looked up by key and id: partitions give the same ids.)
 */
function named(pairs, result) {
  const index = sidIndex(result);
  const out = {};
  for (const [sid, outputs] of pairs) {
    const key = sid.slice(0, sid.lastIndexOf('@'));
    const opened = index.get(sid);
    (out[key] ??= []).push([`${key}@e${opened}`, ...outputs]);
  }
  for (const list of Object.values(out)) list.sort((x, y) => Number(x[0].split('@e')[1]) - Number(y[0].split('@e')[1]));
  // Keys in order: sessions of different keys may be written in any order.
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * The run's sessions (`named`), their outputs by seq (a failure as `{ error: code }`; the version that made it left
 * out, and a migrating version's extra outputs: the model makes the old version's).
 */
function sessions(result) {
  const bySid = new Map();
  for (const o of result.outputs) {
    if (o.value?.extra !== undefined) continue;
    if (!bySid.has(o.sid)) bySid.set(o.sid, []);
    let value = 'error' in o ? { error: o.error.code ?? o.error.name } : o.value;
    if (value?.ver !== undefined) {
      const { ver, ...rest } = value;
      value = rest;
    }
    bySid.get(o.sid).push(value);
  }
  return named(bySid, result);
}

/**
 * With releases: each session's outputs, in seq order, come from one version, each change to a release that migrates
 * (a session runs on the version it opened with, or is adopted by `migrate`). A change back to an older release is
 * the revival docs/redis/versions.md describes (every newer worker gone): the simulator reports an adoption back
 * while a newer worker serves as a violation.
 */
function lineage(result, releases) {
  const problems = [];
  const index = new Map(releases.map((r, i) => [r.version, i]));
  const last = new Map();
  for (const o of [...result.outputs].sort((a, b) => (a.sid < b.sid ? -1 : a.sid > b.sid ? 1 : a.seq - b.seq))) {
    const ver = o.value?.ver;
    // (A journal event's outputs name the first version that makes its calls, not theirs: session-script.mjs.)
    if (ver === undefined || JOURNAL_KEYS.includes(o.key)) continue;
    const before = last.get(o.sid);
    last.set(o.sid, ver);
    if (before === undefined || before === ver) continue;
    if (releases[index.get(ver)].migrate !== true)
      problems.push(`${o.sid}: seq ${o.seq} on ${ver} after ${before}, and ${ver} does not migrate`);
  }
  return problems;
}

/**
 * The run's failures' messages per session (`named`), with what differs between runs for one session taken out:
 * its sid's entry id and its first entry's time (and a cap's age end, that plus `maxSessionAge + 1`), which the
 * run's log gave. What is left must be the same in every run: a reader sees the same text after a crash.
 */
function failureTexts(result, limits) {
  const bySid = new Map();
  for (const o of result.outputs) {
    if (!('error' in o)) continue;
    const id = o.sid.slice(o.sid.lastIndexOf('@') + 1);
    const start = timeOf(id);
    const message = String(o.error.message)
      .replaceAll(id, '<id>')
      .replaceAll(String(start + (limits.maxSessionAge ?? 0) + 1), '<age end>')
      .replaceAll(String(start), '<start>');
    bySid.set(o.sid, [...(bySid.get(o.sid) ?? []), message]);
  }
  return named(bySid, result);
}

/** The reference model's sessions with outputs (`named`) for scenario `s`, on the entry ids the run gave its events. */
function modelled(s, result) {
  const [ms, seq] = [(id) => timeOf(id), (id) => Number(id.slice(id.indexOf('-') + 1))];
  const log = s.events
    .map((e, i) => ({ id: result.ids[i], key: e.key, event: e.event }))
    .sort((a, b) => ms(a.id) - ms(b.id) || seq(a.id) - seq(b.id));
  const { maxSessionAge, maxSessionEvents, maxSessionTimers } = s.limits;
  // With releases, how a session starts from its key's state depends on the release that opened it (in this run): the
  // model takes that from the run (`keyStateChecks` holds each such decision to the docs' rule).
  const releases = s.versions?.releases;
  const keyState =
    s.limits.keyState == null
      ? false
      : releases === undefined
        ? true
        : {
            start: (sid) => ({ use: result.sessions.get(sid)?.keyState?.use ?? 'as-is' }),
          };
  const expected = model({
    log,
    limits: {
      stage: s.pipe === true,
      idleTimeout: s.idleTimeout,
      maxSessionAge,
      maxSessionEvents,
      maxSessionTimers,
      keyState,
      // With releases of their own debounce: each session's, as the release that opened it (in this run) had it.
      debounce: !s.versions?.releases.some((r) => r.debounce !== undefined)
        ? (s.debounce ?? null)
        : (sid) => {
            const r = s.versions.releases[result.sessions.get(sid)?.release ?? 0];
            return r.debounce !== undefined ? r.debounce : (s.debounce ?? null);
          },
    },
  });
  const pairs = Object.values(expected)
    .flat()
    .filter((session) => session.outputs.length > 0)
    .map((session) => [session.sid, session.outputs]);
  return named(pairs, result);
}

/**
 * With key state and releases: each session opened anew started from its key's kept state as docs/redis/versions.md
 * says for the release that opened it (`keyStateUse`), and no handler got a state its release does not read (the
 * scripted handler marks its outputs `wrong`).
 */
function keyStateChecks(result, releases) {
  const problems = [];
  for (const [sid, opened] of result.sessions) {
    if (opened.keyState === null) continue;
    const expected = keyStateUse(releases[opened.release], opened.keyState.kept);
    if (opened.keyState.use !== expected)
      problems.push(
        `${sid}: a ${opened.keyState.kept} key state ${opened.keyState.use} on ${releases[opened.release].version}, not ${expected}`,
      );
  }
  for (const o of result.outputs) if (o.value?.wrong !== undefined) problems.push(`${o.sid}: output ${o.seq}: ${o.value.wrong}`);
  return problems;
}

/**
 * What must hold in any run: every (sid, seq) once and in order, settled, clean, only expected errors (`permitErrors`:
 * the limiter's drawn refusals, reported as ERR_VELO_SESSION_PERMIT, are expected too).
 */
function invariants(result, permitErrors = false, opaque = new Set(), diverging = new Set()) {
  const problems = [...result.violations];
  const seqs = new Map();
  for (const o of result.outputs) {
    const last = seqs.get(o.sid) ?? 0;
    if (o.seq !== last + 1) problems.push(`${o.sid}: output seq ${o.seq} after ${last}`);
    seqs.set(o.sid, o.seq);
  }
  for (const [p, left] of result.leftovers.entries()) {
    for (const [what, list] of Object.entries(left)) if (list.length > 0) problems.push(`p${p} left ${what}: ${list.join(' ')}`);
  }
  for (const error of result.errors) {
    const code = error?.code;
    if (
      code !== 'ERR_VELO_REDIS_CONNECTION' &&
      code !== 'ERR_VELO_FENCED' &&
      // A key's state kept by a version the opening worker neither runs nor adopts: reported, and started without
      // (the model says where).
      code !== 'ERR_VELO_KEY_STATE_VERSION' &&
      !(permitErrors && code === 'ERR_VELO_SESSION_PERMIT') &&
      // A hostile key's state `migrate` returned unreadable (`--hostile-migrate`): its session fails, or starts
      // without its key's state.
      !(code === 'ERR_VELO_MIGRATE' && [...opaque].some((key) => String(error?.message).includes(`"${key}`))) &&
      // A replay of a key whose releases make different journaled calls (`--journal --versions`): its handler
      // catches the divergence and answers again (`journalChecks`).
      // (Or a release yields its answers in another shape: one adopting an answer in flight writes it whole.)
      !(
        (code === 'ERR_VELO_JOURNAL_DIVERGED' || code === 'ERR_VELO_ANSWER_RESTARTED') &&
        [...diverging].some((key) => String(error?.message).includes(`session "${key}@`))
      )
    )
      problems.push(`error: ${code ?? ''} ${error?.message ?? error}`);
  }
  return problems;
}

/**
 * The processes' clocks of a seed's `--clock-skew` runs (simulator.ts `SimFaults.clockSkew`, `clockDrift`), drawn from
 * a stream of the seed's own: each process's clock up to a few ms, or tens, ahead of or behind the log's, and drifting
 * from it by up to a few ms a second (or not), as machines' wall clocks do against Redis'. What a worker writes by its
 * clock then comes early or late by the log's: a tick, an age marker (a timer's wake-up Redis itself refuses early).
 */
export function clockSkewFor(seed) {
  const random = prng(seed + 0x736b6577);
  const pick = (list) => list[Math.floor(random() * list.length)];
  return { clockSkew: pick([1, 2, 5, 30]), clockDrift: pick([0, 1, 2, 5]) };
}

/**
 * The late applies of a seed's `--pool-order` runs (simulator.ts `SimFaults.late`, `maxLate`), drawn from a stream of
 * the seed's own: a share of each process's calls applies a few ms, or tens or hundreds, after calls it made since,
 * as Postgres commits the transactions of a pool's connections in any order (Redis applies one connection's commands
 * in call order). A write the engine issued before a commit may then land after it: a wake-up after its session's end.
 */
export function poolOrderFor(seed) {
  const random = prng(seed + 0x706f6f6c);
  const pick = (list) => list[Math.floor(random() * list.length)];
  return { late: pick([0.05, 0.1, 0.2, 0.4]), maxLate: pick([5, 20, 50, 200]) };
}

/**
 * The stalled calls of a seed's `--cut` runs (simulator.ts `SimFaults.cut`, `callTimeout`), drawn from a stream of the
 * seed's own: a share of every process's calls, leases' included, stall until the caller's bound cuts them, a bound
 * shorter than the lease or longer (both backends bound each call by `callTimeout`; a lost connection on Redis, a
 * stalled or stopped server on Postgres). The call applied at once, part way, or never.
 */
export function cutFor(seed) {
  const random = prng(seed + 0x63757400);
  const pick = (list) => list[Math.floor(random() * list.length)];
  return { cut: pick([0.002, 0.005, 0.01, 0.02]), callTimeout: pick([100, 500, 2000, 5000]) };
}

/** The kinds of fault a run may draw (`only` keeps some of them): the log's, the processes', the handler's delays. */
export const FAULT_KINDS = ['crash', 'pause', 'lost', 'refused', 'delay', 'slow'];

/**
 * Runs seed `seed` calm and with its faults (`only`: those kinds; `permits`: the faulty run with the limiters of
 * `permitsFor(seed)`); `{ ok, problems, expected, actual, stats, scenario }`.
 */
export async function runSeed(
  seed,
  {
    trace,
    only = FAULT_KINDS,
    permits = false,
    versions = false,
    debounce = false,
    keyState = false,
    hostileMigrate = false,
    releaseDebounce = false,
    clockSkew = false,
    poolOrder = false,
    cut = false,
    answers = false,
    journal = false,
    journalBound = false,
    markers = false,
    wide = false,
    pipe = false,
    record = false,
  } = {},
) {
  const s = scenario(seed);
  // --pipe: the session's function is the scripted handler piped into a stage that passes its outputs on, a stream
  // without the session's hooks (no timers, checkpoints or calls: its reactions keep their outputs and ends only).
  if (pipe) pipeScenario(s);
  // (Drawn before `only` applies: the faulty run's clocks and late applies, faults of no kind `only` names.)
  if (clockSkew) Object.assign(s.faults, clockSkewFor(seed));
  if (poolOrder) Object.assign(s.faults, poolOrderFor(seed));
  if (cut) Object.assign(s.faults, cutFor(seed));
  // --journal: events of their own keys make journaled calls (an event every idle/2, a checkpoint at some), held to
  // the journal's checks (`journalChecks`) instead of the model's. --markers: each answer begins with a start output
  // made before any call, as docs/durable/migrate.md advises (`journalChecks`: once per version that begins it).
  if (journal) {
    s.journal = true;
    s.opaque = [...(s.opaque ?? []), ...JOURNAL_KEYS];
    const start = Math.min(...s.events.map((e) => e.at));
    // Without --versions, some events' handlers leave a journaled call running at their end, answered after their
    // session (`late`: session-script.mjs), drawn from a stream of the seed's own: the seed's other draws stay those of
    // runs without it. (Not with --versions: the seeds those rows hold for past defects keep their scenarios.)
    const lateDraw = prng(seed + 0x6c617465);
    // (--markers: each answer's start is the same output in every version with its calls, as the docs advise, or
    // names the version that made it, drawn per event from a stream of the seed's own: `journalChecks`.)
    const markerDraw = prng(seed + 0x6d61726b);
    // (With a debounce, each event further apart than any drawn wait, `debounceFor`'s and the releases' own: one
    // burst each, so that a debounced function delivers and answers every event, as the checks need.)
    const gap = debounce ? s.idleTimeout + 2 : Math.floor(s.idleTimeout / 2);
    for (const key of JOURNAL_KEYS) {
      for (let i = 0; i < 8; i++) {
        const at = start + i * gap;
        // (`late`: its handler leaves a journaled call running at its end, answered after its session: session-script.mjs.)
        const late = !versions && lateDraw() < 0.3;
        s.events.push({
          at,
          key,
          event: {
            tag: `${key}.${i}`,
            at,
            journal: true,
            checkpoint: i % 3 === 1,
            ...(late ? { late } : {}),
            ...(markers ? { marker: markerDraw() < 0.5 ? 'same' : 'versioned' } : {}),
          },
        });
      }
    }
    s.events.sort((x, y) => x.at - y.at);
  }
  // --journal-bound: events of their own keys make journaled calls of drawn sizes under a small `maxJournalBytes`,
  // in bursts and apart, held to the bound's checks (`boundChecks`). (Not with --journal, whose answers would pass
  // it, nor --pipe, whose handler makes no journaled calls.)
  if (journalBound) {
    if (journal || pipe) throw new TypeError('--journal-bound runs without --journal and --pipe');
    s.journalBound = true;
    s.opaque = [...(s.opaque ?? []), ...BOUND_KEYS];
    // (With a debounce, each event further apart than any drawn wait, and none in a burst: each delivered.)
    journalBoundFor(seed, s, debounce ? s.idleTimeout + 2 : Math.floor(s.idleTimeout / 2), !debounce);
  }
  if (keyState) s.limits.keyState = KEY_STATE;
  // --wide: six partitions, and keys of their own whose events come at the same times (an event each every idle/2, a
  // checkpoint at some), so that a process commits several partitions at one time (on Postgres, in one transaction).
  if (wide) {
    s.limits.partitions = 6;
    const start = Math.min(...s.events.map((e) => e.at));
    for (let k = 0; k < 12; k++) {
      for (let i = 0; i < 10; i++) {
        const at = start + i * Math.floor(s.idleTimeout / 2);
        s.events.push({ at, key: `W${k}`, event: { tag: `W${k}.${i}`, at, checkpoint: i % 4 === 3 } });
      }
    }
    s.events.sort((x, y) => x.at - y.at);
  }
  for (const kind of FAULT_KINDS) if (!only.includes(kind) && kind !== 'slow') s.faults[kind] = 0;
  if (!only.includes('crash')) {
    s.faults.crashAfterCommits = [];
    s.faults.crashAfterWakes = [];
  }
  if (debounce) s.debounce = debounceFor(seed, s.idleTimeout);
  if (versions) {
    const times = s.events.map((e) => e.at);
    s.versions = versionsFor(seed, Math.min(...times), Math.max(...times) + s.idleTimeout);
    // Each migrate call's synchronous work (virtual ms), drawn from a stream of its own: none, or a quarter or half
    // of the lease, so that adopting a few sessions takes longer in all than the lease.
    const slow = prng(seed + 0x6d696772);
    s.versions.migrateMs = [0, 0, 0.25, 0.5][Math.floor(slow() * 4)] * (s.limits.leaseTtl ?? 3000);
    // With a slow migrate, sessions that live through the deploys and checkpoint at every event: each adoption of
    // them takes longer in all than the lease.
    if (s.versions.migrateMs > 0 && s.versions.releases.some((r) => r.migrate)) {
      const start = Math.min(...times);
      for (const key of ['M0', 'M1', 'M2', 'M3', 'M4', 'M5']) {
        for (let i = 0; i < 24; i++) {
          const at = start + i * Math.floor(s.idleTimeout / 2);
          s.events.push({ at, key, event: { tag: `${key}.${i}`, at, checkpoint: true } });
        }
      }
      s.events.sort((x, y) => x.at - y.at);
    }
    // --hostile-migrate: sessions of their own keys live through the deploys (an event every idle/2, a checkpoint at
    // each), so that a migrating release adopts them, and `migrate` returns for them a state that cannot be read.
    // Their outputs are not the model's (where a session fails depends on the run): each run is held to the
    // invariants alone for them (every output once and in order, settled, no partition left, errors as documented).
    if (hostileMigrate && s.versions.releases.some((r) => r.migrate)) {
      s.versions.hostile = true;
      s.opaque = [...(s.opaque ?? []), ...HOSTILE_KEYS];
      const start = Math.min(...times);
      for (const key of HOSTILE_KEYS) {
        for (let i = 0; i < 24; i++) {
          const at = start + i * Math.floor(s.idleTimeout / 2);
          s.events.push({ at, key, event: { tag: `${key}.${i}`, at, checkpoint: true } });
        }
      }
      s.events.sort((x, y) => x.at - y.at);
    }
    // --answers: questions of their own keys live through the deploys (one every idle/2, a checkpoint at some),
    // answered in tokens with a pause between each; a migrating release answers in fewer tokens than the one before
    // it, so that an answer in flight at an adoption is longer in the old version than in the new. Their outputs are
    // held to the answers' checks (`answerChecks`) instead of the model's.
    // (Not with a debounce: it merges questions, and the checks need each answered.)
    if (answers && s.debounce === undefined && s.versions.releases.some((r) => r.migrate)) {
      s.answers = true;
      s.opaque = [...(s.opaque ?? []), ...ANSWER_KEYS];
      const start = Math.min(...times);
      const short = Object.fromEntries(s.versions.releases.filter((r) => r.migrate).map((r, i) => [r.version, i]));
      for (const key of ANSWER_KEYS) {
        for (let i = 0; i < 16; i++) {
          const at = start + i * Math.floor(s.idleTimeout / 2);
          s.events.push({ at, key, event: { tag: `${key}.${i}`, at, checkpoint: i % 3 === 2, answer: { tokens: 4, ...short } } });
        }
      }
      s.events.sort((x, y) => x.at - y.at);
    }
    // --journal: each release makes other journaled calls for an event than the release before it (a call added,
    // dropped or renamed), so that a migrating release replays answers whose records are another version's calls.
    if (s.journal === true) journalPlansFor(seed, s);
    // --release-debounce (with --debounce): each later release has a debounce of its own, drawn from a stream of
    // its own (another wait or edge, or none): a session keeps the one it opened with (docs/redis/versions.md).
    if (releaseDebounce && s.debounce !== undefined) {
      const releases = s.versions.releases.map((r, i) =>
        i === 0 ? r : { ...r, debounce: i % 2 === 1 && seed % 3 === 0 ? null : debounceFor(seed * 31 + i, s.idleTimeout) },
      );
      s.versions = { ...s.versions, releases };
    }
    // A migrated session reports no divergence: its new version's outputs for what its old one answered are not
    // written (nor checked), and its end counts the old outputs (checkReplay as drawn).
    // More partitions than the old release has workers: some with v1 sessions, refused to v2, must be rescued by a
    // v1 worker past its share.
    if (s.versions.chain === 'nocarry') {
      s.limits.partitions = 4;
      // Long v1 sessions on every partition through the deploy (a key every idle/2 for 30 events), so that v1
      // workers hold partitions no v2 worker can take.
      const start = Math.min(...times);
      for (const key of ['L0', 'L1', 'L2', 'L3', 'L4', 'L5', 'L6', 'L7']) {
        for (let i = 0; i < 30; i++) {
          const at = start + i * Math.floor(s.idleTimeout / 2);
          s.events.push({ at, key, event: { tag: `${key}.${i}`, at } });
        }
      }
      s.events.sort((x, y) => x.at - y.at);
    }
  }
  return runScenario(seed, s, { trace, slow: only.includes('slow'), permits: permits ? permitsFor(seed) : undefined, record });
}

/**
 * Runs scenario `s` (as `scenario()` makes them) calm and with its faults, the draws from `seed`: each run's sessions
 * must be the model's, and the two runs' the same. `permits` (simulator.ts `SimOptions.permits`): the faulty run
 * takes permits of those limiters, the calm run none, so a permit's wait must change nothing either makes.
 */
export async function runScenario(seed, s, { trace, slow = true, permits, record = false } = {}) {
  resetServices();
  let lags = null;
  const run = (faults, delays, withPermits) =>
    simulate({
      seed,
      fn: (delay, now, version) => {
        // (One recorder per run: every process of the calm run shares it.)
        if (!delays) lags ??= timerLags(now, CALM_LATE_MS);
        const fn = scripted(
          delays ? delay : () => Promise.resolve(),
          s,
          delays ? undefined : lags.took,
          s.versions === undefined ? undefined : version,
        );
        return s.pipe === true ? fn.pipe(passOn) : fn;
      },
      ...(s.versions === undefined
        ? {}
        : {
            releases: s.versions.releases.map((r) =>
              r.debounce === undefined ? r : { ...r, debounce: r.debounce === null ? null : engineDebounce(r.debounce) },
            ),
            deploys: s.versions.deploys,
            oldJoins: s.versions.oldJoins,
            migrate: s.versions.hostile === true ? hostileMigrate : migrateState,
            migrateMs: s.versions.migrateMs ?? 0,
            invariant: versionsInvariant(
              s.versions.releases,
              s.limits.leaseTtl ?? 3000,
              (faults.cut ?? 0) > 0 ? faults.callTimeout : 0,
            ),
          }),
      events: s.events,
      limits:
        s.debounce === undefined
          ? s.limits
          : {
              ...s.limits,
              debounce: engineDebounce(s.debounce),
            },
      faults,
      trace,
      // (A seed's run settles within seconds of virtual time: one that has not in an hour never will.)
      settleWithin: 3_600_000,
      ...(withPermits === undefined ? {} : { permits: withPermits }),
      // (`record`: each run's operations on the store, for sim-on-postgres.mjs.)
      ...(record ? { record: true } : {}),
    });
  const keys = s.events.map((e) => e.key);
  // (`callers`: the versions that made journaled calls for each input, in that run: `journalChecks`.)
  const calm = { ...(await run({}, false)), keys, callers: takeCallers() };
  const faulty = { ...(await run(s.faults, slow, permits)), keys, callers: takeCallers() };
  const opaque = new Set(s.opaque ?? []);
  // (Keys whose releases make different journaled calls: a replay by another reports where it diverged.)
  const diverging = new Set(s.events.filter((e) => callsDiffer(e.event)).map((e) => e.key));
  const problems = [
    ...invariants(calm, false, opaque, diverging).map((p) => `calm: ${p}`),
    ...invariants(faulty, (permits?.fail ?? 0) > 0, opaque, diverging).map((p) => `faulty: ${p}`),
  ];
  // (A deploy hands partitions over: a timer waits for the next owner, as after any hand-off.)
  if (s.versions === undefined)
    for (const late of lags?.late() ?? []) problems.push(`calm: timer ${late} after it was due (more than ${CALM_LATE_MS})`);
  if (s.journal === true) {
    problems.push(...journalChecks(calm, s).map((p) => `calm: ${p}`));
    problems.push(...journalChecks(faulty, s).map((p) => `faulty: ${p}`));
  }
  if (s.journalBound === true) {
    problems.push(...boundChecks(calm, s).map((p) => `calm: ${p}`));
    problems.push(...boundChecks(faulty, s).map((p) => `faulty: ${p}`));
  }
  if (s.answers === true) {
    problems.push(...answerChecks(calm, s).map((p) => `calm: ${p}`));
    problems.push(...answerChecks(faulty, s).map((p) => `faulty: ${p}`));
  }
  if (s.versions !== undefined) {
    problems.push(...lineage(calm, s.versions.releases).map((p) => `calm: ${p}`));
    problems.push(...lineage(faulty, s.versions.releases).map((p) => `faulty: ${p}`));
    if (s.limits.keyState != null) {
      problems.push(...keyStateChecks(calm, s.versions.releases).map((p) => `calm: ${p}`));
      problems.push(...keyStateChecks(faulty, s.versions.releases).map((p) => `faulty: ${p}`));
    }
  }
  // (Keys held to the invariants alone: left out of every comparison.)
  const compared = (named) => Object.fromEntries(Object.entries(named).filter(([key]) => !opaque.has(key)));
  const expected = compared(sessions(calm));
  const actual = compared(sessions(faulty));
  const model = compared(modelled(s, faulty));
  const calmModel = compared(modelled(s, calm));
  if (JSON.stringify(expected) !== JSON.stringify(calmModel))
    problems.push("the calm run made other sessions or outputs than the model's");
  if (JSON.stringify(actual) !== JSON.stringify(model))
    problems.push("the faulty run made other sessions or outputs than the model's");
  // (With key state and releases, whether a session can read its key's state depends on the release that opened it,
  // which differs between runs, and so does its debounce with releases of their own: each run is held to the model
  // of its own openings.)
  const ownDebounce = s.versions?.releases.some((r) => r.debounce !== undefined) === true;
  // (Across the two runs an event's entry id is compared by its time alone: a worker's write of one run (a marker, a
  // wake-up), made when its retries allow, may take an id of the same millisecond before the event's. Each run's
  // ids are held exactly to its own model above.)
  const sameMs = (named) => JSON.stringify(named).replace(/"entry":"(\d+)-\d+@/g, '"entry":"$1@');
  if (sameMs(expected) !== sameMs(actual) && !(s.limits.keyState != null && s.versions !== undefined) && !ownDebounce)
    problems.push('the faulty run made other sessions or outputs than the calm one');
  // Ends a trim removed in one run and not the other are not compared (nor any, where the runs' releases may have
  // opened a session with different debounces).
  const calmEnds = ownDebounce ? new Map() : endsOf(calm);
  for (const [sid, end] of endsOf(faulty)) {
    if (opaque.has(sid.slice(0, sid.lastIndexOf('@')))) continue;
    const first = calmEnds.get(sid);
    if (first !== undefined && first !== end) problems.push(`faulty: ${sid} ended ${end}, calm ${first}`);
  }
  if (
    !ownDebounce &&
    JSON.stringify(compared(failureTexts(calm, s.limits))) !== JSON.stringify(compared(failureTexts(faulty, s.limits)))
  )
    problems.push("the faulty run's failures have other messages than the calm run's");
  // (`--hostile-migrate`: the conversions that failed, both runs.)
  const migrateFailures = [...calm.errors, ...faulty.errors].filter((e) => e?.code === 'ERR_VELO_MIGRATE').length;
  return {
    ok: problems.length === 0,
    problems,
    expected,
    actual,
    model,
    calmModel,
    stats: faulty.stats,
    migrateFailures,
    scenario: s,
    ...(record ? { records: { calm: calm.record, faulty: faulty.record } } : {}),
  };
}

/** Each event's index by the sid it would open, `<key>@<entry id>`. */
function sidIndex(result) {
  return new Map(result.ids.map((id, i) => [`${result.keys[i]}@${id}`, i]));
}

/** The ends a run kept (checkReplay), with entry ids as `e<index of the event>` (ids differ between runs). */
function endsOf(result) {
  const index = sidIndex(result);
  const ends = new Map();
  for (const partition of result.ends) {
    for (const [sid, end] of partition) {
      const at = sid.lastIndexOf('@');
      const space = end.indexOf(' ');
      const key = sid.slice(0, at);
      const named = (id) => (index.has(`${key}@${id}`) ? `e${index.get(`${key}@${id}`)}` : id);
      ends.set(`${key}@${named(sid.slice(at + 1))}`, `${end.slice(0, space)} ${named(end.slice(space + 1))}`);
    }
  }
  return ends;
}

/**
 * A smaller scenario that still fails: events dropped one at a time while the run (same seed, so faults are drawn
 * the same way, though they may land elsewhere) still fails, until no single drop does.
 */
export async function shrink(seed, failing, { slow = true, permits } = {}) {
  let s = failing;
  for (let again = true; again;) {
    again = false;
    for (let i = 0; i < s.events.length; i++) {
      const smaller = { ...s, events: s.events.filter((_, j) => j !== i) };
      if (!(await runScenario(seed, smaller, { slow, permits })).ok) {
        s = smaller;
        again = true;
        i--;
      }
    }
  }
  return s;
}
