// The journaled answers of the simulator's `--journal` runs (redis-sim.mjs): the calls each release makes for an
// event (`journalPlansFor`), and what must hold of the answers read back (`journalChecks`).
import { prng } from '../../bench/prng.mjs';
import { callsOf, madeBy } from './session-script.mjs';

/**
 * The keys of `--journal` runs: each event makes journaled calls to a service that answers differently on every
 * call and streams a journaled model answer (`session-script.mjs`), a pause between each output. With `--versions`,
 * each release makes other calls for an event than the release before it (`journalPlansFor`).
 */
export const JOURNAL_KEYS = ['J0', 'J1', 'J2'];

/** The calls a `--versions --journal` event's first release makes (`{ run }`: `ctx.run`, `{ stream }`: `ctx.stream`). */
const FIRST_CALLS = [
  [{ run: 'route' }, { stream: 'model' }],
  [{ run: 'route' }, { run: 'moderation' }, { stream: 'model' }],
  [{ run: 'route' }, { stream: 'model' }, { run: 'summary' }],
];

/** Names a release may give a call it adds or renames. */
const NEW_CALLS = ['lookup', 'policy', 'rerank', 'cite', 'moderation', 'summary'];

/**
 * With `--journal --versions`: each journal event's calls per release (`event.calls`, by version), drawn from a stream
 * of the seed's own. The first release's are one of `FIRST_CALLS`; each later release's are the release before's as
 * they are, or with a call added (mostly between two, as a moderation step before the model), one dropped, or one
 * renamed: a migrating release then replays an answer in flight whose records are another version's calls, and
 * one that diverges after a call that matched its record must not take its new outputs for the old answer's.
 * With `--answers`, releases also yield their streams in shapes of their own (`reshape`).
 */
export function journalPlansFor(seed, s) {
  const random = prng(seed + 0x706c616e);
  const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = (list) => list[Math.floor(random() * list.length)];
  const fresh = (calls) => pick(NEW_CALLS.filter((name) => !calls.some((c) => (c.run ?? c.stream) === name)));
  const change = (calls) => {
    const way = pick(['same', 'same', 'add', 'add', 'add', 'drop', 'drop', 'rename', 'rename']);
    const next = [...calls];
    if (way === 'add') {
      const call = random() < 0.75 ? { run: fresh(calls) } : { stream: fresh(calls) };
      next.splice(calls.length >= 2 && random() < 0.8 ? int(1, calls.length - 1) : int(0, calls.length), 0, call);
    } else if (way === 'drop' && calls.length >= 2) next.splice(int(0, calls.length - 1), 1);
    else if (way === 'rename') {
      const at = int(0, calls.length - 1);
      next[at] = calls[at].run !== undefined ? { run: fresh(calls) } : { stream: fresh(calls) };
    }
    return next;
  };
  for (const { event } of s.events) {
    if (event.journal !== true) continue;
    let calls = pick(FIRST_CALLS);
    const plans = [];
    for (const [i, { version }] of s.versions.releases.entries()) {
      if (i > 0) calls = change(calls);
      plans.push([version, calls]);
    }
    // (Versions named as Object.prototype's own properties: own properties, never a prototype set.)
    event.calls = Object.fromEntries(plans);
  }
  shorten(seed, s);
  if (s.answers === true) reshape(seed, s);
}

/** How often the first release that migrates answers a question with its old version's first call alone (`shorten`). */
const SHORTEN = 1 / 3;

/**
 * With `--journal --versions`, drawn from a stream of the seed's own (a seed whose draws pick nothing keeps the plans
 * and checkpoints drawn before): at a question, the first release that migrates may make only the first call of the
 * release whose sessions it adopts (the first's), answering without the model or the calls after it, and the
 * question checkpoints. Adopting it in flight, that release takes the old version's record of that call, leaves the
 * later ones untaken, and checkpoints at its answer's end: the checkpoint's count must cover their places (they stay
 * in the log), else an owner that restores from it (a crash, a hand-off, the next release that migrates) gives its
 * next question's first call one of them, and diverges there or takes another question's answer (71495e3:
 * `journalChecks` sees a restart with no other version's calls for that question). The calls drawn per release
 * alone seldom leave such records (a release that drops or renames another call diverges at the question in flight
 * and makes its calls past the old records), and seldom at a question with a checkpoint: with that fix reverted,
 * no seed of 1-400 (--key-state) failed before.
 */
function shorten(seed, s) {
  const random = prng(seed + 0x73686f72);
  const [first] = s.versions.releases;
  const adopting = s.versions.releases.find((r) => r.migrate === true);
  if (adopting === undefined) return;
  for (const { event } of s.events) {
    if (event.calls === undefined || random() >= SHORTEN) continue;
    const old = event.calls[first.version];
    if (old.length < 2) continue;
    // (Made anew: a version named `__proto__` is an own property, never a prototype set.)
    event.calls = Object.fromEntries(
      Object.entries(event.calls).map(([version, calls]) => [version, version === adopting.version ? old.slice(0, 1) : calls]),
    );
    event.checkpoint = true;
  }
}

/** The outputs a stream call may yield per chunk (`shape`): one each, one per two, two each (session-script.mjs). */
const SHAPES = [undefined, 'pairs', 'halves'];

/**
 * With `--journal --versions --answers`, drawn from a stream of the seed's own: a release may yield its streams'
 * chunks in another shape than the release before (`SHAPES`), taking every record of an answer in flight as the
 * old version did, but with another number of outputs per chunk: those outputs are not the old answer continued.
 */
function reshape(seed, s) {
  const random = prng(seed + 0x73686170);
  for (const { event } of s.events) {
    if (event.calls === undefined) continue;
    let shape;
    for (const version of Object.keys(event.calls)) {
      if (random() < 0.5) shape = SHAPES[Math.floor(random() * SHAPES.length)];
      event.calls[version] = event.calls[version].map((call) =>
        call.stream === undefined || shape === undefined ? call : { ...call, shape },
      );
    }
  }
}

/** Whether an event's releases make different calls (`journalPlansFor`): a replay by another may diverge. */
export const callsDiffer = (event) =>
  event.calls !== undefined && new Set(Object.values(event.calls).map((calls) => JSON.stringify(calls))).size > 1;

/** An output of a journal event as the checks show it: `<ver>:` then `route=s4`, `model.0/m5`, `restart` or `done`. */
function shownJournal(o) {
  if (o.begin !== undefined) return o.begin === true ? `${o.ver ?? ''}:start` : `start(${o.begin})`;
  const what =
    o.restart !== undefined
      ? 'restart'
      : o.done === true
        ? 'done'
        : o.chunk === undefined
          ? `${o.call}=${o.answer}`
          : `${o.call}.${o.chunk.from === undefined ? '' : `${o.chunk.from}-`}${o.chunk.i}${o.chunk.half === undefined ? '' : `h${o.chunk.half}`}/${o.chunk.of}`;
  return `${o.ver === undefined ? '' : `${o.ver}:`}${what}${o.try === undefined ? '' : ` (try ${o.try})`}`;
}

/** Whether output `o` is the first its version makes for `event` (a result or chunk 0 of its first call). */
function begins(event, o) {
  const [first] = callsOf(event, o.ver);
  return o.chunk === undefined
    ? o.call !== undefined && o.call === first.run && !o.answer.includes(' ')
    : o.call === first.stream && firstChunk(o) === 0 && o.chunk.half !== 1 && o.answer === '';
}

/** What made an answer's first output: its first call's service answer, or its model answer (`madeBy`). */
const firstAnswer = (o) => (o.chunk === undefined ? o.answer : o.chunk.of);

/** The first chunk a stream's output carries (`from`, for one of two chunks: a `pairs` shape). */
const firstChunk = (o) => o.chunk.from ?? o.chunk.i;

/**
 * What is wrong with one try at an answer (`outs`, after a restart if any, its end included if `final`), against
 * the calls of the version that made its last output (`callsOf`): its results and chunks must come in that order,
 * each call once, a stream's chunks 0, 1, 2, ... of one answer, and every output must carry the results got before
 * it (a call made again where its record was used shows another). A final try is whole: every call, then the end.
 * Another version's outputs may begin it (an answer continued from the journal after a migration).
 */
function tryProblem(event, outs, final) {
  const last = outs.at(-1);
  if (last === undefined) return undefined;
  const calls = callsOf(event, last.ver);
  let got = [];
  let next = 0;
  let stream = null;
  for (const o of outs) {
    if (o.done === true) break;
    if (o.chunk !== undefined && stream !== null && o.call === stream.name) {
      const next =
        stream.half === 0 ? o.chunk.i === stream.i && o.chunk.half === 1 : firstChunk(o) === stream.i + 1 && o.chunk.half !== 1;
      if (!next || o.chunk.of !== stream.of) return `chunk ${shownJournal(o)} splices`;
      stream.i = o.chunk.i;
      stream.half = o.chunk.half;
    } else {
      const call = calls[next++];
      const name = o.chunk === undefined ? call?.run : call?.stream;
      if (name !== o.call)
        return `${o.chunk === undefined ? 'result' : 'chunk'} of ${o.call} where ${last.ver ?? ''} calls ${call?.run ?? call?.stream ?? 'nothing'}`;
      stream = null;
      if (o.chunk === undefined) {
        const parts = o.answer.split(' ');
        if (parts.length !== got.length + 1 || parts.slice(0, -1).join(' ') !== got.join(' '))
          return `${o.call} got ${o.answer} after ${got.join(' ')}`;
        got = parts;
        continue;
      }
      if (firstChunk(o) !== 0 || o.chunk.half === 1) return `${o.call} begins at chunk ${shownJournal(o)}`;
      stream = { name: o.call, i: o.chunk.i, half: o.chunk.half, of: o.chunk.of };
    }
    if (o.answer !== got.join(' ')) return `${o.call} with ${o.answer} after ${got.join(' ')}`;
  }
  if (!final) return undefined;
  if (next !== calls.length) return `${calls.length - next} calls of ${last.ver ?? ''} missing`;
  if (last.answer !== got.join(' ')) return `its end with ${last.answer} after ${got.join(' ')}`;
  return undefined;
}

/**
 * An event's outputs as tries: one after each restart (a replay whose calls diverged from the records: the handler
 * answers again), and one where another version begins its first call anew (its answer not from the journal: written
 * whole after the old version's partial one, docs/durable/migrate.md), or begins it with a start that names it
 * (`--markers`). (Outputs name the first version that makes
 * their calls, so that versions that make them yield the same outputs: an answer begun again is another version's
 * when it names another, or another version's call made its first answer, `madeBy`.)
 */
function triesOf(event, outs) {
  const tries = [];
  let begun;
  /** The version that wrote the last start (`--markers`). */
  let marked;
  for (const o of outs) {
    if (o.begin !== undefined) {
      const bound = typeof o.begin === 'string' && marked !== undefined && o.begin !== marked;
      if (bound && tries.length > 0 && tries.at(-1).length > 0) tries.push([]);
      if (typeof o.begin === 'string') marked = o.begin;
      continue;
    }
    const begin = begins(event, o) && (o.try ?? 0) === 0 ? `${o.ver} ${madeBy.get(firstAnswer(o))}` : undefined;
    const open = tries.length > 0 && tries.at(-1).length === 0;
    if (!open && (tries.length === 0 || o.restart !== undefined || (begin !== undefined && begin !== begun))) tries.push([]);
    if (begin !== undefined) begun = begin;
    tries.at(-1).push(o);
  }
  return tries;
}

/**
 * The journaled answers of `--journal` runs, each event's outputs as read back: exactly one end, the last; tries
 * after a restart (a replay whose calls diverged from the records, only where releases make different calls for the
 * event or an earlier one of its session) each begin with their own calls again, and each try holds one answer in
 * order (`tryProblem`): no output of two answers interleaved, nothing swallowed, no call repeated where its record
 * was used, the last try whole. Every event sent is answered.
 */
export function journalChecks(result, s) {
  const problems = [];
  const asked = s.events.filter((e) => JOURNAL_KEYS.includes(e.key)).map((e) => e.event);
  const byTag = new Map();
  const sidsOf = new Map();
  for (const o of [...result.outputs].sort((a, b) => (a.sid < b.sid ? -1 : a.sid > b.sid ? 1 : a.seq - b.seq))) {
    if (!('value' in o) || !JOURNAL_KEYS.includes(o.key)) continue;
    const list = byTag.get(o.value.in) ?? [];
    list.push(o.value);
    byTag.set(o.value.in, list);
    sidsOf.set(o.value.in, (sidsOf.get(o.value.in) ?? new Set()).add(o.sid));
  }
  // Events whose replay by another release may diverge: those whose releases make different calls, and those after
  // one that does (or one answered again after a divergence: a retry's calls) in the same session since its last
  // checkpoint (`shifted`). A call's place counts the session's journaled calls since the checkpoint it restores from
  // (docs/durable/answers.md), so a release that makes other calls for an earlier event replayed with this one makes
  // this event's calls at other places than the records. A checkpoint is committed before any record of a later
  // event of its session, so a replay that meets those records restores from it or from a later one.
  const mayDiverge = new Set();
  const shifted = new Set();
  const moved = new Set();
  for (const event of asked) {
    const sids = [...(sidsOf.get(event.tag) ?? [])];
    if (sids.some((sid) => moved.has(sid))) shifted.add(event.tag);
    if (callsDiffer(event) || shifted.has(event.tag)) mayDiverge.add(event.tag);
    const restarted = (byTag.get(event.tag) ?? []).some((o) => o.restart !== undefined);
    for (const sid of sids) {
      if (event.checkpoint === true) moved.delete(sid);
      else if (callsDiffer(event) || restarted) moved.add(sid);
    }
  }
  for (const event of asked) {
    const outs = byTag.get(event.tag) ?? [];
    const problem = (() => {
      const ends = outs.filter((o) => o.done === true).length;
      if (ends !== 1) return `${ends} ends`;
      // A version writes an answer's start once: again only where another version begins it anew (an answer in
      // flight at an adoption, written whole after the old one's), never by a replay of the version that wrote it.
      // (Where its start names the version that made it, another's is another output: the new version's answer is
      // written whole after the old one's, a try of its own. A start the same in every version is no such bound: an
      // answer continued from the journal writes it once, and one written again shows as another begin.)
      // (Or its replay diverged, where the releases' calls allow it: its answer begun again, with a restart.)
      let marked;
      for (const [i, o] of outs.entries()) {
        if (typeof o.begin !== 'string') continue;
        if (o.begin === marked && outs[i + 1]?.restart === undefined) return `its start written again by ${o.begin}`;
        marked = o.begin;
      }
      if (outs.at(-1).done !== true) return 'outputs after its end';
      const tries = triesOf(event, outs);
      if (outs.some((o) => o.restart !== undefined) && !mayDiverge.has(event.tag))
        return "a restart, though every version makes the same calls for it and its session's events before";
      // With no earlier event moving its places, a replay diverges only on a record of a call made for this question
      // by a version whose calls for it differ: with only calls of its own plan made for it, a restart met another
      // question's record (one left untaken at an answer in flight, kept past a checkpoint: 71495e3).
      if (!shifted.has(event.tag)) {
        const plan = (v) => JSON.stringify(callsOf(event, v));
        const madeFor = [...(result.callers?.get(event.tag) ?? [])];
        for (const o of outs) {
          if (o.restart !== undefined && madeFor.every((v) => plan(v) === plan(o.ver)))
            return `a restart of ${o.ver}, though only ${madeFor.join(', ') || 'no version'} made calls for it, with its calls`;
        }
      }
      for (const t of tries) {
        const number = t[0].restart === undefined ? 0 : t[0].try;
        const lost = t.find((o) => (o.try ?? 0) !== number);
        if (lost !== undefined) return `an output of try ${lost.try ?? 0} in try ${number} (its restart lost)`;
      }
      for (const [i, t] of tries.entries()) {
        const problem = tryProblem(event, t[0].restart === undefined ? t : t.slice(1), i === tries.length - 1);
        if (problem !== undefined) return `try ${i}: ${problem}`;
      }
      return undefined;
    })();
    if (problem !== undefined)
      problems.push(`${event.tag}: not one journaled answer: ${problem} (${outs.map(shownJournal).join(' ')})`);
  }
  // A restart reported (ERR_VELO_ANSWER_RESTARTED) is an answer written again: some answer of its session has a
  // try after the first. One reported with none is a report of nothing (an answer its old version had ended, taken
  // for one in flight: ca796ce).
  const rewritten = new Set();
  for (const event of asked)
    if (triesOf(event, byTag.get(event.tag) ?? []).length > 1) for (const sid of sidsOf.get(event.tag) ?? []) rewritten.add(sid);
  for (const error of result.errors ?? []) {
    if (error?.code !== 'ERR_VELO_ANSWER_RESTARTED') continue;
    const sid = /session "([^"]*)"/.exec(String(error.message))?.[1];
    if (sid !== undefined && JOURNAL_KEYS.includes(sid.slice(0, sid.lastIndexOf('@'))) && !rewritten.has(sid))
      problems.push(`${sid}: a restart reported, though none of its answers was written again (${error.message})`);
  }
  return problems;
}
