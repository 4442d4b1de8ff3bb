// The replay test before a deploy: a new handler run over a recording (recording.ts) in the session-engine
// simulator, on virtual time (the recorded entry ids' times), and every difference from what the recorded run
// wrote: outputs, and where sessions began and ended. Each recorded partition runs on a simulated log of its own
// (sessions are per key, and a key's partition is fixed), fed the recorded events' bytes at their recorded ids (at
// their times); the simulated owner writes its own ticks, markers and wake-ups, as the new handler's timers and
// limits decide. The comparison is replay-compare.ts's.
import type { StreamFn } from '../../types';
import { describe, invalidType, invalidValue, recordingInvalidError, testNotSettledError, testStepsError } from '../../errors';
import { integerOption } from '../../validate';
import { type Codec, jsonCodec } from '../common/codec';
import { checkShape } from '../common/shape';
import { type Openable, kOpen } from '../../core/protocol';
import { type Recording, type RecordingBounds, checkRecording, compareIds, idParts, splitSid } from '../common/recording';
import { type ReplayReport, type ReplayedSession, compareRecording } from './replay-compare';
import { Simulation, simBounds } from './simulator';
import { entryFields } from '../common/stored';
import type { TestWorkerOptions } from './options';
import { LIMIT_KEYS, checkDebounceTarget, checkLimits } from '../engine/worker-limits';
import { MAX_TIMER_MS } from '../engine/owner-writes';

/**
 * The worker's settings the replay runs the handler with (those of the new deploy, each as `testWorker` takes it,
 * with the same defaults), its codec, and its bounds.
 */
export interface ReplayOptions extends Omit<TestWorkerOptions, 'partitions' | 'checkReplay' | 'start' | 'onError'> {
  /**
   * Virtual ms after a partition's last recorded event by which its replay must have ended every session (an
   * integer up to 2 147 483 647). Default a day plus the function's `idleTimeout`.
   */
  settleWithin?: number;
  /** Bounds of the recording (checked before the replay). */
  bounds?: RecordingBounds;
}

const WHAT = 'replayRecording()';
const KNOWN = [...LIMIT_KEYS.filter((k) => k !== 'checkReplay'), 'codec', 'maxEventBytes', 'settleWithin', 'bounds'];
const DAY_MS = 86_400_000;
/** Events appended between two moves of the clock (each move has its own bound of steps). */
const EVENTS_PER_MOVE = 500;

/** One recorded partition's events, replayed: what the simulated run wrote, by the recorded ids. */
async function replayPartition<I, O>(
  fn: StreamFn<I, O>,
  events: readonly { id: string; key: string; v: string }[],
  o: { limits: ReturnType<typeof checkLimits>; codec: Codec<unknown>; maxEventBytes: number; settleWithin: number },
  partition: number,
): Promise<ReplayedSession[]> {
  if (events.length === 0) return [];
  // (A log's entries come after 0-0, which no reader of it is given: Redis refuses it.)
  if (compareIds(events[0].id, '0-0') === 0)
    throw recordingInvalidError(`${WHAT}: partition ${partition}'s event ${events[0].id} has an id no log gives (0-0)`);
  const start = idParts(events[0].id)[0];
  const sim = new Simulation<I, O>({
    seed: 1,
    // Each simulated process gets the function with slots of its own, as a process would (`withConfig`: every
    // stream function has it; the public type leaves it out).
    fn: () => (fn as StreamFn<I, O> & { withConfig(config: object): StreamFn<I, O> }).withConfig({}),
    events: [],
    // (checkReplay: the simulated log keeps where each session ended, which the comparison reads.)
    limits: { ...o.limits, partitions: 1, maxEventBytes: o.maxEventBytes, checkReplay: true },
    codec: o.codec,
    start: Math.max(1, start),
  });
  // Each recorded event goes in at its recorded id (XADD <id>), so the handler sees the ids the recorded run saw
  // (`ctx.entry`, sids), whatever the recording left out (other keys, markers). A ms's events go in at once, at the
  // start of that ms: the simulated owner's own entries (markers, wake-ups) of that ms come after them, never on
  // an id the recording holds.
  const byMs = new Map<number, [string, string, Buffer][]>();
  for (const e of events) {
    const at = idParts(e.id)[0];
    const list = byMs.get(at) ?? [];
    if (list.length === 0) byMs.set(at, list);
    list.push([e.id, e.key, Buffer.from(e.v, 'base64')]);
  }
  let appended = 0;
  for (const [at, list] of byMs) {
    sim.clock.setTimeout(
      () => {
        sim.store.appendAt(0, list);
        appended += list.length;
      },
      Math.max(0, at - sim.start),
    );
  }
  const stuck = (outcome: string, where: string) => {
    const steps =
      sim.exhausted === 'at once'
        ? `${simBounds.maxStepsAtOnce} steps at one virtual time`
        : `${simBounds.maxSteps} steps in one move of the clock`;
    return outcome === 'steps'
      ? testStepsError(
          `${WHAT}: the replay of partition ${partition} took ${steps} ${where}: a handler looping without end (timers due at once on every input, outputs without input)`,
        )
      : testNotSettledError(
          `${WHAT}: the replay of partition ${partition} did not end every session within settleWithin (${o.settleWithin} ms of virtual time after its last event): a session kept open (timers far ahead, no idleTimeout); give a longer settleWithin`,
        );
  };
  try {
    for (let i = EVENTS_PER_MOVE; i < events.length; i += EVENTS_PER_MOVE) {
      const outcome = await sim.advanceTo(idParts(events[i].id)[0]);
      if (outcome !== 'done') throw stuck(outcome, `before event ${events[i].id}`);
    }
    const last = idParts(events[events.length - 1].id)[0];
    const outcome = await sim.runUntil(() => appended === events.length && sim.settled(), last + o.settleWithin);
    if (outcome !== 'done') throw stuck(outcome, 'after its last event');
  } finally {
    await sim.stop();
  }
  const sessions = new Map<string, ReplayedSession>();
  const session = (sid: string): ReplayedSession => {
    let s = sessions.get(sid);
    if (s === undefined) {
      const { key, first } = splitSid(sid);
      sessions.set(sid, (s = { key, first, outputs: new Map(), end: null }));
    }
    return s;
  };
  for (const [, list] of sim.store.outputs(0)) {
    const f = entryFields(list);
    const s = session(f.get('sid')?.toString() ?? '');
    const seq = Number(f.get('seq')?.toString());
    const error = f.get('e');
    s.outputs.set(seq, error === undefined ? { v: (f.get('v') ?? Buffer.alloc(0)).toString('base64') } : { e: error.toString() });
  }
  for (const [sid, value] of sim.store.ends(0)) {
    const space = value.indexOf(' ');
    const last = space < 0 ? '' : value.slice(space + 1);
    session(sid).end = { reason: space < 0 ? value : value.slice(0, space), last };
  }
  return [...sessions.values()];
}

/**
 * Runs `fn` (the new handler) over a recording of the function's sessions (`exportRecording`, or a file of one read
 * with `parseRecording`) in the session-engine simulator, on virtual time (the recorded entry ids' times), with
 * the worker's settings of the new deploy, and reports every difference from what was recorded: per session, each
 * output that differs (`seq`, recorded and replayed), outputs missing or extra, and where sessions begin and end
 * (a session ending after another input or for another reason, split or merged). Deterministic: nothing reads
 * the machine's clock. Sessions the recording cannot replay (their first entry was trimmed) are listed apart,
 * never guessed at.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fn` is not a stream function.
 * @throws {Error} `ERR_VELO_RECORDING_INVALID` when `recording` is not one.
 * @throws {Error} `ERR_VELO_TEST_NOT_SETTLED` / `ERR_VELO_TEST_STEPS` when a partition's replay does not end.
 */
export async function replayRecording<I = unknown, O = unknown>(
  fn: StreamFn<I, O>,
  recording: Recording,
  options: ReplayOptions = {},
): Promise<ReplayReport<O>> {
  let open: unknown;
  try {
    open = (fn as Partial<Openable<I, O>> | null)?.[kOpen];
  } catch {
    // (A revoked Proxy: not a stream function either.)
  }
  if (typeof open !== 'function')
    throw invalidType(`${WHAT}: fn must be a stream function (from streamFn()), not ${describe(fn)}`);
  if (options === null || typeof options !== 'object')
    throw invalidType(`${WHAT}: options must be an object, not ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (!KNOWN.includes(key)) throw invalidValue(`${WHAT}: unknown option "${key}". Known options: ${KNOWN.join(', ')}`);
  }
  const checked = checkRecording(recording, options.bounds);
  const { codec = jsonCodec, maxEventBytes = 1 << 20 } = options;
  checkShape(WHAT, checked.partitions, codec, maxEventBytes);
  const limits = checkLimits(WHAT, options, 1);
  checkDebounceTarget(WHAT, limits.debounce, fn);
  const idleTimeout = (fn as StreamFn<I, O> & Openable<I, O>).config.idleTimeout;
  const settleWithin = integerOption(WHAT, 'settleWithin', options.settleWithin ?? DAY_MS + idleTimeout, 0, MAX_TIMER_MS);
  return compareRecording<O>(checked, codec as Codec<O>, (partition, events) =>
    replayPartition(fn, events, { limits, codec, maxEventBytes, settleWithin }, partition),
  );
}
