// The journal's bound in the simulator's `--journal-bound` runs (redis-sim.mjs): keys whose events make journaled
// calls with results of drawn sizes under a small `maxJournalBytes` (`journalBoundFor`), and what must hold of the
// outputs read back (`boundChecks`).
import { prng } from '../../bench/prng.mjs';

/** The keys of `--journal-bound` runs. */
export const BOUND_KEYS = ['B0', 'B1', 'B2'];

/**
 * Adds the keys' events to scenario `s` and sets its `maxJournalBytes`, drawn from a stream of the seed's own (the
 * seed's other draws stay those of runs without it). Each event makes 1 to 4 journaled calls whose results are
 * strings of drawn lengths (session-script.mjs `bounded`), and some checkpoint. The events of a key come in bursts
 * (several at one time, as a backlog does, unless `bursts` is false) and apart (`gap`): whether a call is refused
 * must not depend on which.
 */
export function journalBoundFor(seed, s, gap, bursts) {
  const random = prng(seed + 0x626f756e);
  const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
  s.limits.maxJournalBytes = int(40, 160);
  const start = Math.min(...s.events.map((e) => e.at));
  for (const key of BOUND_KEYS) {
    let at = start;
    for (let i = 0; i < 10; i++) {
      const bounded = Array.from({ length: int(1, 4) }, () => int(8, 40));
      s.events.push({ at, key, event: { tag: `${key}.${i}`, at, bounded, checkpoint: random() < 0.35 } });
      if (random() < 0.5 || !bursts) at += gap;
    }
  }
  s.events.sort((x, y) => x.at - y.at);
}

/** The calls `boundChecks` has seen kept and refused, in this process: a slice of seeds must see both. */
export const boundSeen = { kept: 0, refused: 0 };

/**
 * What must hold of the bound keys' outputs in run `result`: every event answered once, a result per call in order,
 * then its end; and whether the journal took a call's result is what its bound says of the session's records
 * (docs/durable/bounds.md): the results it took since the session began or since its last checkpoint call (the
 * step after a checkpoint starts the count again), each its JSON text's bytes, may not pass `maxJournalBytes`. The
 * sizes are the scenario's, whatever the run's timing, faults and replays, so the refusals are too.
 */
export function boundChecks(result, s) {
  const problems = [];
  const limit = s.limits.maxJournalBytes;
  const events = new Map(s.events.filter((e) => BOUND_KEYS.includes(e.key)).map((e) => [e.event.tag, e.event]));
  const bySid = new Map();
  for (const o of result.outputs) {
    if (!('value' in o) || !BOUND_KEYS.includes(o.key)) continue;
    const list = bySid.get(o.sid) ?? [];
    list.push(o);
    bySid.set(o.sid, list);
  }
  const answered = new Map();
  for (const [sid, outs] of bySid) {
    outs.sort((a, b) => a.seq - b.seq);
    let bytes = 0;
    let next = 0;
    let asked;
    for (const { value: v } of outs) {
      const event = events.get(v.in);
      if (event === undefined) {
        problems.push(`${sid}: an output of no event: ${JSON.stringify(v)}`);
        break;
      }
      if (asked !== v.in) {
        if (next !== 0) problems.push(`${sid}: ${asked} left at call ${next} for ${v.in}`);
        asked = v.in;
        next = 0;
        answered.set(v.in, (answered.get(v.in) ?? 0) + 1);
      }
      if (v.done === true) {
        if (next !== event.bounded.length) problems.push(`${sid}: ${v.in} ended after ${next} of ${event.bounded.length} calls`);
        if (event.checkpoint === true) bytes = 0;
        next = 0;
        asked = undefined;
        continue;
      }
      if (v.call !== next) problems.push(`${sid}: ${v.in} call ${v.call} where ${next} was next`);
      // (A result's JSON text: the string and its quotes.)
      const size = event.bounded[v.call] + 2;
      const refused = bytes + size > limit;
      if ((v.took === 'refused') !== refused)
        problems.push(`${sid}: ${v.in} call ${v.call} (${size} bytes) ${v.took}, the journal holding ${bytes} of ${limit} bytes`);
      if (!refused) bytes += size;
      boundSeen[v.took === 'refused' ? 'refused' : 'kept']++;
      next = v.call + 1;
    }
  }
  for (const tag of events.keys()) {
    const times = answered.get(tag) ?? 0;
    if (times !== 1) problems.push(`${tag}: answered ${times} times`);
  }
  return problems;
}
