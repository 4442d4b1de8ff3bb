// What a replay compares, and how: the recorded sessions of each partition (known by their sids: from their
// outputs, their ends, the live ones), which recorded events a replay can be given, and every difference between
// the recorded sessions and the replayed ones. A session is the same one in both runs when it begins at the same
// recorded entry of the same key. Pure: the replay itself is passed in (replay.ts runs it in the simulator).
import type { Codec } from '../common/codec';
import type { HandlerFailure } from '../common/outputs';
import { type RecordedOutput, type RecordedPartition, type Recording, compareIds, splitSid } from '../common/recording';
import { describe, invalidType } from '../../errors';

/** An output as the report shows it: decoded by the codec, a failure, or its bytes when the codec cannot decode them. */
export interface ReplayOutput<O = unknown> {
  /** The output, decoded. */
  value?: O;
  /** The session's failure (its last output). */
  error?: HandlerFailure;
  /** The bytes (base64), when the codec could not decode them. */
  bytes?: string;
}

/** Where a session ended: why its input ended, and the last input it took (a recorded entry id, or `t<n>` for its n-th timer). */
export interface ReplayEnd {
  /** `idle`, `age`, `events`, `decode`, `throw` or `return`. */
  reason: string;
  /** The last input it took. */
  last: string;
}

/**
 * One difference between the recorded run and the replay. `kind`:
 *
 * - `output`: output `seq` of the session differs (`recorded`, `replayed`);
 * - `missing-output`: the replay made no output `seq` (`recorded`);
 * - `extra-output`: the replay made an output `seq` the recorded session had not (`replayed`);
 * - `end`: the session ended after another input or for another reason (`recordedEnd`, `replayedEnd`);
 * - `merged`: the replay began no session at this recorded session's first entry: the replayed session `into`
 *   took it (`into` null: none did);
 * - `split`: the replay began a session (`sid`, named by the recorded entry it began at) inside the recorded
 *   session `within`, whose kept end took that entry;
 * - `extra-session`: the replay began a session with outputs where the recorded run began none with outputs
 *   (between two recorded sessions of its key, in a partition without ends kept).
 *
 * What the recording cannot judge (see `judgeUnmatched`) is listed in `unverified`, not here.
 */
export interface ReplayDifference<O = unknown> {
  /** What differs. */
  kind: 'output' | 'missing-output' | 'extra-output' | 'end' | 'merged' | 'split' | 'extra-session';
  /** The partition. */
  partition: number;
  /** The session's key. */
  key: string;
  /** The session: `<key>@<recorded id of its first entry>`. */
  sid: string;
  /** The output's `seq` (output kinds). */
  seq?: number;
  /** The recorded output (`output`, `missing-output`). */
  recorded?: ReplayOutput<O>;
  /** The replayed output (`output`, `extra-output`). */
  replayed?: ReplayOutput<O>;
  /** Where the recorded session ended (`end`). */
  recordedEnd?: ReplayEnd;
  /** Where the replayed one ended (`end`; null: it did not end). */
  replayedEnd?: ReplayEnd | null;
  /** `merged`: the replayed session that took this one's first entry. */
  into?: string | null;
  /** `split`: the recorded session the replayed one began inside. */
  within?: string;
  /** `split`, `extra-session`, `merged`: how many outputs the session in question made. */
  outputs?: number;
}

/** What a replay could not compare, and why. */
export interface NotReplayable {
  /** The partition. */
  partition: number;
  /** The key. */
  key: string;
  /** The recorded session, when one is known. */
  sid?: string;
  /**
   * `trimmed`: the session began before the recording's first entry (its first entries were trimmed, or are before
   * `since`); `unknown-session`: the key's events before the first session known to begin in the recording (no
   * output, end or checkpoint names the session they belong to).
   */
  why: 'trimmed' | 'unknown-session';
  /** The key's recorded events left out of the replay for it. */
  events: number;
  /** The session's recorded outputs. */
  outputs: number;
}

/** What `replayRecording` found. */
export interface ReplayReport<O = unknown> {
  /** True when nothing differs. */
  ok: boolean;
  /** Counts. */
  summary: ReplaySummary;
  /** Every difference, by partition, key and session. */
  differences: ReplayDifference<O>[];
  /** What could not be replayed. */
  notReplayable: NotReplayable[];
  /**
   * Sessions of the replay that began where the recording does not say whether a session began (no `checkReplay`
   * ends; after a session's kept end, or inside a session live at the recording, where the worker may have begun
   * one it had not committed yet): not counted as differences, their outputs not compared.
   */
  unverified: UnverifiedSession[];
}

/** A replayed session that began where the recording does not say whether a session began. */
export interface UnverifiedSession {
  /** The partition. */
  partition: number;
  /** The key. */
  key: string;
  /** The session: `<key>@<recorded id of its first entry>`. */
  sid: string;
  /** The outputs the replay made in it (not compared: the recording has none to compare them with). */
  outputs: number;
}

/** The counts of a replay report. */
export interface ReplaySummary {
  /** Partitions replayed. */
  partitions: number;
  /** Recorded events given to the new handler. */
  events: number;
  /** Recorded sessions compared. */
  sessions: number;
  /** Of those, the ones with no difference. */
  same: number;
  /** Recorded sessions still live when recorded: their outputs are compared as far as they went, their ends not. */
  open: number;
  /** Partitions whose recording kept session ends (`checkReplay`): only there are ends compared. */
  endsKept: number;
  /** Partitions with nothing recorded (no event, no output, no session end kept): nothing to compare there. */
  empty: number;
  /** Differences. */
  differences: number;
}

/** A session of the replay: its key, the recorded id of its first entry, its outputs by seq, its end. */
export interface ReplayedSession {
  readonly key: string;
  readonly first: string;
  /** seq -> `v` (base64 bytes) or `e` (the failure's JSON). */
  readonly outputs: Map<number, { v?: string; e?: string }>;
  end: ReplayEnd | null;
}

/** A recorded session: where it began, its outputs, its end if kept, and whether it was live. */
interface RecordedSession {
  readonly sid: string;
  readonly key: string;
  readonly first: string;
  readonly outputs: Map<number, RecordedOutput>;
  end: ReplayEnd | null;
  /** Still live at the recording (or its end not kept although ends were): compared as far as it went. */
  open: boolean;
}

function decoded<O>(codec: Codec<O>, bytes: string): ReplayOutput<O> {
  try {
    return { value: codec.decode(Buffer.from(bytes, 'base64')) };
  } catch {
    return { bytes };
  }
}

function failureOf(json: string): HandlerFailure {
  try {
    const f = JSON.parse(json) as Partial<HandlerFailure>;
    return { name: String(f.name), message: String(f.message), ...(typeof f.code === 'string' ? { code: f.code } : {}) };
  } catch {
    return { name: 'Error', message: json };
  }
}

const sameFailure = (a: HandlerFailure, b: HandlerFailure) => a.name === b.name && a.message === b.message && a.code === b.code;

/** Whether `last` (an end's last input) is an entry id. */
const isId = (last: string) => /^\d+-\d+$/.test(last);

/** Runs one partition's replay: its events given, the replayed sessions. */
export type PartitionReplay = (
  partition: number,
  events: readonly { id: string; key: string; v: string }[],
) => Promise<ReplayedSession[]>;

/** Compares the recorded sessions of `recording` with their replay (`replay`), partition by partition. */
export async function compareRecording<O>(
  recording: Recording,
  codec: Codec<O>,
  replay: PartitionReplay,
): Promise<ReplayReport<O>> {
  const differences: ReplayDifference<O>[] = [];
  const notReplayable: NotReplayable[] = [];
  const unverified: UnverifiedSession[] = [];
  const summary: ReplaySummary = {
    partitions: 0,
    events: 0,
    sessions: 0,
    same: 0,
    open: 0,
    endsKept: 0,
    empty: 0,
    differences: 0,
  };
  for (const part of recording.parts) {
    summary.partitions++;
    if (part.endsKept) summary.endsKept++;
    else if (part.input.length === 0 && part.outputs.length === 0 && part.live.length === 0) summary.empty++;
    const plan = planPartition(part, notReplayable);
    summary.events += plan.events.length;
    const replayed = await replay(part.partition, plan.events);
    comparePartition(part, plan.sessions, replayed, codec, summary, differences, unverified);
  }
  summary.differences = differences.length;
  return { ok: differences.length === 0, summary, differences, notReplayable, unverified };
}

/** The recorded sessions of a partition by key (in order of their first entry), and the events to replay. */
function planPartition(
  part: RecordedPartition,
  notReplayable: NotReplayable[],
): { sessions: Map<string, RecordedSession[]>; events: { id: string; key: string; v: string }[] } {
  const events = part.input.filter((e): e is { id: string; key: string; v: string } => 'v' in e && !('wake' in e));
  const eventIds = new Map<string, string[]>();
  for (const e of events) {
    const list = eventIds.get(e.key) ?? [];
    list.push(e.id);
    eventIds.set(e.key, list);
  }
  const isEvent = new Set(events.map((e) => `${e.key}@${e.id}`));
  const known = new Map<string, RecordedSession>();
  const trimmed = new Map<string, { key: string; outputs: number }>();
  const ends = new Map(part.ends.map((e) => [e.sid, { reason: e.reason, last: e.last }]));
  const note = (sid: string): RecordedSession | null => {
    const { key, first } = splitSid(sid);
    if (!isEvent.has(sid) || compareIds(first, part.from) < 0) {
      const t = trimmed.get(sid) ?? { key, outputs: 0 };
      trimmed.set(sid, t);
      return null;
    }
    let s = known.get(sid);
    if (s === undefined) {
      const end = ends.get(sid) ?? null;
      known.set(sid, (s = { sid, key, first, outputs: new Map(), end, open: end === null }));
    }
    return s;
  };
  for (const out of part.outputs) {
    const s = note(out.sid);
    if (s === null) trimmed.get(out.sid)!.outputs++;
    else s.outputs.set(out.seq, out);
  }
  for (const e of part.ends) note(e.sid);
  for (const sid of part.live) note(sid);
  // Without ends kept, a recorded session with outputs that is not live (no high-water mark left) had ended:
  // its outputs are complete, its end unknown.
  if (!part.endsKept) for (const s of known.values()) s.open = part.live.includes(s.sid);
  const sessions = new Map<string, RecordedSession[]>();
  for (const s of known.values()) sessions.set(s.key, [...(sessions.get(s.key) ?? []), s]);
  for (const list of sessions.values()) list.sort((a, b) => compareIds(a.first, b.first));
  // The events replayed: each key's from its first recorded session on. Those before it belong to a session the
  // recording does not know (one that began before it, or one with no trace): left out, and said so.
  const firstOf = new Map([...sessions].map(([key, list]) => [key, list[0].first]));
  const given = events.filter((e) => {
    const first = firstOf.get(e.key);
    return first !== undefined && compareIds(e.id, first) >= 0;
  });
  for (const [key, ids] of eventIds) {
    const first = firstOf.get(key);
    const before = ids.filter((id) => first === undefined || compareIds(id, first) < 0).length;
    const earlier = [...trimmed].filter(([, t]) => t.key === key);
    if (earlier.length > 0) {
      // (The events before the first known session are the latest trimmed session's, as far as anything says.)
      earlier.forEach(([sid, t], i) =>
        notReplayable.push({
          partition: part.partition,
          key,
          sid,
          why: 'trimmed',
          events: i === earlier.length - 1 ? before : 0,
          outputs: t.outputs,
        }),
      );
    } else if (before > 0) {
      notReplayable.push({ partition: part.partition, key, why: 'unknown-session', events: before, outputs: 0 });
    }
  }
  for (const [sid, t] of trimmed) {
    if (!eventIds.has(t.key))
      notReplayable.push({ partition: part.partition, key: t.key, sid, why: 'trimmed', events: 0, outputs: t.outputs });
  }
  return { sessions, events: given };
}

/**
 * What the recording proves of a replayed session that no recorded session begins at (at entry `first`, with
 * `outputs`): `within` is the key's recorded session before it, `last` the key's last recorded session.
 *
 * Invariant: a difference is reported only where the recording proves it. A recording holds what the workers had
 * committed when it was read: each session's outputs, its end (kept with checkReplay), whether it was live. One
 * read while workers run also holds entries (up to `delivered`) the worker had read and not answered yet: a
 * session it had ended there, or begun there, whose end or outputs were not committed. Neither is in the
 * recording, so neither may count as a difference:
 * - `split` only where `within`'s kept end took this entry (its last input an entry id at or after it). Live at the
 *   recording, it proves where the session began, not how far it went (the cap or idle end that ends it there
 *   may not be committed yet); ended on a timer, it does not say which entries it took (its own `end` is compared).
 * - `extra-session` only between two recorded sessions of a partition without ends kept: `within` ended with its
 *   outputs complete (not live), and the key's later session shows its worker had gone past this entry.
 * - Else `unverified`: after a kept end (its worker's next session, maybe begun and not committed), inside a live
 *   session, after the key's last recorded session, or without outputs (where a session began is not recorded).
 */
function judgeUnmatched(
  first: string,
  outputs: number,
  within: RecordedSession | undefined,
  last: RecordedSession | undefined,
): 'split' | 'extra-session' | 'unverified' {
  if (within === undefined) return 'unverified';
  if (within.end !== null) return isId(within.end.last) && compareIds(within.end.last, first) >= 0 ? 'split' : 'unverified';
  return !within.open && outputs > 0 && last !== within ? 'extra-session' : 'unverified';
}

function comparePartition<O>(
  part: RecordedPartition,
  recorded: Map<string, RecordedSession[]>,
  replayed: ReplayedSession[],
  codec: Codec<O>,
  summary: ReplaySummary,
  differences: ReplayDifference<O>[],
  unverified: UnverifiedSession[],
): void {
  const partition = part.partition;
  const replayedByKey = new Map<string, ReplayedSession[]>();
  for (const s of replayed) replayedByKey.set(s.key, [...(replayedByKey.get(s.key) ?? []), s]);
  const keys = [...new Set([...recorded.keys(), ...replayedByKey.keys()])].sort();
  const show = (o: RecordedOutput): ReplayOutput<O> => (o.error !== undefined ? { error: o.error } : decoded(codec, o.v ?? ''));
  const showReplayed = (o: { v?: string; e?: string }): ReplayOutput<O> =>
    o.e !== undefined ? { error: failureOf(o.e) } : decoded(codec, o.v ?? '');
  for (const key of keys) {
    const rec = recorded.get(key) ?? [];
    const rep = (replayedByKey.get(key) ?? []).sort((a, b) => compareIds(a.first, b.first));
    const repAt = new Map(rep.map((s) => [s.first, s]));
    const recAt = new Map(rec.map((s) => [s.first, s]));
    for (const r of rec) {
      summary.sessions++;
      if (r.open) summary.open++;
      const before = differences.length;
      const where = { partition, key, sid: r.sid };
      const p = repAt.get(r.first);
      if (p === undefined) {
        const into = rep.filter((s) => compareIds(s.first, r.first) < 0).at(-1);
        differences.push({
          kind: 'merged',
          ...where,
          into: into === undefined ? null : `${key}@${into.first}`,
          outputs: r.outputs.size,
        });
        continue;
      }
      const seqs = [...r.outputs.keys()];
      // Outputs trimmed from the output stream (outputRetention, outputMaxLen): compared from the first one left.
      const lowest = seqs.length === 0 ? 1 : Math.min(...seqs);
      const recordedMax = seqs.length === 0 ? 0 : Math.max(...seqs);
      const top = Math.max(recordedMax, ...p.outputs.keys());
      for (let seq = lowest; seq <= top; seq++) {
        const a = r.outputs.get(seq);
        const b = p.outputs.get(seq);
        if (a !== undefined && b !== undefined) {
          const same =
            a.error !== undefined ? b.e !== undefined && sameFailure(a.error, failureOf(b.e)) : b.v !== undefined && a.v === b.v;
          if (!same) differences.push({ kind: 'output', ...where, seq, recorded: show(a), replayed: showReplayed(b) });
        } else if (a !== undefined) {
          differences.push({ kind: 'missing-output', ...where, seq, recorded: show(a) });
        } else if (b !== undefined && !(r.open && seq > recordedMax)) {
          // (A session live at the recording went on after it: its later outputs are not the recording's.)
          differences.push({ kind: 'extra-output', ...where, seq, replayed: showReplayed(b) });
        }
      }
      if (r.end !== null && (p.end === null || p.end.reason !== r.end.reason || p.end.last !== r.end.last)) {
        differences.push({ kind: 'end', ...where, recordedEnd: r.end, replayedEnd: p.end });
      }
      if (differences.length === before) summary.same++;
    }
    for (const p of rep) {
      if (recAt.has(p.first)) continue;
      const sid = `${key}@${p.first}`;
      const outputs = p.outputs.size;
      const within = rec.filter((s) => compareIds(s.first, p.first) < 0).at(-1);
      const judged = judgeUnmatched(p.first, outputs, within, rec.at(-1));
      if (judged === 'split') differences.push({ kind: 'split', partition, key, sid, within: within!.sid, outputs });
      else if (judged === 'extra-session') differences.push({ kind: 'extra-session', partition, key, sid, outputs });
      else unverified.push({ partition, key, sid, outputs });
    }
  }
}

/** A value for a line of text: JSON, cut at 200 characters. */
function brief(o: ReplayOutput | undefined): string {
  if (o === undefined) return 'none';
  const text =
    o.error !== undefined
      ? `error ${o.error.name}${o.error.code === undefined ? '' : ` (${o.error.code})`}: ${o.error.message}`
      : o.bytes !== undefined
        ? `bytes ${o.bytes}`
        : (JSON.stringify(o.value) ?? String(o.value));
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

const endText = (e: ReplayEnd | null | undefined) =>
  e === null || e === undefined ? 'not ended' : `${e.reason} after ${e.last === '' ? '(unknown)' : e.last}`;

const isObject = (value: unknown): value is object => value !== null && typeof value === 'object';

/**
 * Refuses what is not a report of `replayRecording`: an object with a `summary` object and arrays of objects as
 * `differences`, `notReplayable` and `unverified` (what formatting reads without a further check).
 */
function checkReport(report: unknown): asserts report is ReplayReport {
  const what = (field: string, value: unknown) =>
    invalidType(
      `formatReplayReport() takes the report replayRecording() resolves with: its ${field} is ${value === undefined ? 'missing' : describe(value)}`,
    );
  if (!isObject(report))
    throw invalidType(`formatReplayReport() takes the report replayRecording() resolves with, not ${describe(report)}`);
  const r = report as Record<string, unknown>;
  if (!isObject(r.summary)) throw what('summary', r.summary);
  for (const field of ['differences', 'notReplayable', 'unverified']) {
    const list = r[field];
    if (!Array.isArray(list)) throw what(field, list);
    const bad = (list as unknown[]).findIndex((item) => !isObject(item));
    if (bad >= 0) throw what(`${field}[${bad}]`, (list as unknown[])[bad]);
  }
}

/**
 * A replay report as text for a terminal or a CI log: the counts, then one line per difference and per session not replayed.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for what is not a report of `replayRecording`.
 */
export function formatReplayReport(report: ReplayReport): string {
  checkReport(report);
  const s = report.summary;
  const lines = [
    `${report.ok ? 'OK' : 'DIFFERENT'}: ${s.sessions} recorded sessions in ${s.partitions} partitions replayed (${s.events} events): ` +
      `${s.same} the same, ${s.differences} differences` +
      (s.open > 0 ? `; ${s.open} live when recorded (compared as far as they went)` : '') +
      (report.notReplayable.length > 0 ? `; ${report.notReplayable.length} not replayable` : '') +
      (s.empty > 0 ? `; ${s.empty} empty` : '') +
      (s.endsKept + s.empty < s.partitions
        ? `; session ends not kept in ${s.partitions - s.endsKept - s.empty} partitions (no checkReplay): ends not compared there`
        : ''),
  ];
  for (const d of report.differences) {
    const at = `p${d.partition} ${d.sid}`;
    if (d.kind === 'output') lines.push(`  output ${at} #${d.seq}: recorded ${brief(d.recorded)}, replayed ${brief(d.replayed)}`);
    else if (d.kind === 'missing-output')
      lines.push(`  missing output ${at} #${d.seq}: recorded ${brief(d.recorded)}, the replay made none`);
    else if (d.kind === 'extra-output')
      lines.push(`  extra output ${at} #${d.seq}: replayed ${brief(d.replayed)}, the recording has none`);
    else if (d.kind === 'end') lines.push(`  end ${at}: recorded ${endText(d.recordedEnd)}, replayed ${endText(d.replayedEnd)}`);
    else if (d.kind === 'merged')
      lines.push(
        `  merged ${at}: the replay began no session there (${d.outputs} recorded outputs); its first entry went to ${d.into ?? 'no session'}`,
      );
    else if (d.kind === 'split')
      lines.push(`  split ${at}: the replay began a session there, inside recorded session ${d.within} (${d.outputs} outputs)`);
    else lines.push(`  extra session ${at}: the replay began a session with ${d.outputs} outputs where the recording has none`);
  }
  for (const n of report.notReplayable) {
    lines.push(
      `  not replayable p${n.partition} ${n.sid ?? n.key}: ${n.why === 'trimmed' ? 'began before the recording (its first entry was trimmed)' : 'events of no session the recording knows'} (${n.events} events left out, ${n.outputs} outputs)`,
    );
  }
  if (report.unverified.length > 0) {
    const outputs = report.unverified.reduce((n, u) => n + u.outputs, 0);
    lines.push(
      `  ${report.unverified.length} replayed sessions where the recording does not say whether a session began` +
        (outputs > 0 ? ` (${outputs} outputs not compared)` : ''),
    );
  }
  return lines.join('\n');
}
