// Reads a function's recorded sessions out of Redis (docs/redis/storage.md): per partition, the input the worker
// had read (events, and the markers, ticks and wake-ups among them), the outputs, where sessions ended (kept with
// `checkReplay`) and which were live. Reads only: nothing in Redis changes. The reads of a partition are not one
// atomic snapshot (a partition's input can be far larger than one command should carry); they go in an order that
// keeps what they find consistent for the replay: the ends and live sessions first (an end is committed with the
// session's last outputs), then the outputs, then how far the worker had read, then the input up to there.
import { type RedisClientLike, send } from '../log/connection';
import { type RedisOptions, resolveOptions } from '../log/options';
import { entryFields } from '../../durable/common/stored';
import type { KeySpace } from '../log/redis-log';
import { Script } from '../log/script';
import {
  type PartitionRead,
  type RecordedPartition,
  type Recording,
  checkChoice,
  compareIds,
  beganBefore,
  idParts,
  recordedEntry,
  recordedOutput,
  recordedPartition,
  recordingOf,
  splitSid,
  tooManyError,
  type RecordingChoice,
} from '../../durable/common/recording';

/** Options of `exportRecording`: those every entry point takes (its `codec` and `maxEventBytes` go unused: bytes are recorded as written), and what to record. */
export interface ExportRecordingOptions extends RedisOptions, RecordingChoice {}

const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };
const DELIVERED = new Script('delivered.lua');
/** Entries per XRANGE. */
const PAGE = 1000;
const EXPORT = 'exportRecording()';

/**
 * A stream's entries from `start` (inclusive) to `end`, in pages: those `keep` takes, at most `max` of them (else
 * `tooManyError` of `items`), and the id of the first one read (kept or not).
 */
async function range(
  client: RedisClientLike,
  key: string,
  start: string,
  end: string,
  bound: { readonly max: number; readonly items: 'input entries' | 'outputs'; readonly where: string },
  keep: (fields: Map<string, Buffer>) => boolean,
): Promise<{ found: [string, Map<string, Buffer>][]; first: string | undefined }> {
  const found: [string, Map<string, Buffer>][] = [];
  let first: string | undefined;
  let from = start;
  for (;;) {
    const page = (await send(client, key, ['XRANGE', key, from, end, 'COUNT', String(PAGE)], BUFFERS)) as [Buffer, unknown][];
    first ??= page[0]?.[0].toString();
    for (const [id, list] of page) {
      const fields = entryFields(list);
      if (keep(fields)) found.push([id.toString(), fields]);
    }
    if (found.length > bound.max) throw tooManyError(EXPORT, bound.where, bound.max, bound.items);
    if (page.length < PAGE) return { found, first };
    from = `(${page[page.length - 1][0].toString()}`;
  }
}

/** A hash's fields and values (strings), in pages: those whose field `keep` takes, at most `max` (session ends). */
async function hash(
  client: RedisClientLike,
  key: string,
  max: number,
  where: string,
  keep: (field: string) => boolean,
): Promise<[string, string][]> {
  const found: [string, string][] = [];
  let cursor = '0';
  do {
    const [next, fields] = (await send(client, key, ['HSCAN', key, cursor, 'COUNT', String(PAGE)])) as [string, string[]];
    cursor = String(next);
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (keep(String(fields[i]))) found.push([String(fields[i]), String(fields[i + 1])]);
    }
    if (found.length > max) throw tooManyError(EXPORT, where, max, 'session ends');
  } while (cursor !== '0');
  return found;
}

/** Adds the partition's live sessions now (of the keys recorded) to `live`: those with a mark, a checkpoint or a timer. */
async function liveSessions(
  o: { client: RedisClientLike; keys: KeySpace; only: ReadonlySet<string> | null; maxEntries: number },
  partition: number,
  where: string,
  live: Set<string>,
): Promise<void> {
  const mine = (sid: string) => o.only === null || (sid.includes('@') && o.only.has(splitSid(sid).key));
  for (const k of [o.keys.hw(partition), o.keys.ckpt(partition), o.keys.timers(partition)]) {
    const fields = (await send(o.client, k, ['HKEYS', k])) as string[];
    // (The marks' hash also keeps each mark's output place, under "<sid> p": a sid has no space before its id.)
    for (const field of fields) if (!String(field).endsWith(' p') && mine(String(field))) live.add(String(field));
    if (live.size > o.maxEntries) throw tooManyError(EXPORT, where, o.maxEntries, 'live sessions');
  }
}

async function exportPartition(
  o: {
    client: RedisClientLike;
    keys: KeySpace;
    only: ReadonlySet<string> | null;
    since: number;
    maxEntries: number;
    maxOutputs: number;
  },
  partition: number,
): Promise<RecordedPartition> {
  const { client, keys, only } = o;
  const input = keys.input(partition);
  const where = `partition ${partition}`;
  // The bounds count what is recorded, as on Postgres: with `keys`, their rows only (recordedPartition's choice).
  const wanted = (key: string) => only === null || only.has(key);
  const mine = (sid: string) => only === null || (sid.includes('@') && wanted(splitSid(sid).key));
  const entryKept = (f: Map<string, Buffer>) => {
    // (With keys, ticks are left out: they name no session.)
    const key = f.get('k')?.toString() ?? '';
    return only === null || (key !== '' && wanted(key));
  };
  const outputKept = (f: Map<string, Buffer>) => only === null || mine(String(f.get('sid') ?? ''));
  // Where the retained input starts: entries before it were trimmed (or are before `since`).
  const first = (await send(client, input, ['XRANGE', input, o.since > 0 ? String(o.since) : '-', '+', 'COUNT', '1'])) as [
    string,
    unknown,
  ][];
  let from = first.length > 0 ? String(first[0][0]) : `${o.since}-0`;
  // What sessions ended: before the outputs (an end is committed with its last outputs, so each end read has all of
  // its session's outputs in the read below).
  // (Of sessions that began at `from` or later: recordedPartition leaves the others out, and the bound counts what is kept.)
  const ends = await hash(client, keys.ends(partition), o.maxEntries, where, (sid) => mine(sid) && !beganBefore(sid, from));
  // Which sessions were live: read before the outputs and again after them. The worker goes on between the reads: a
  // session that began after the first read, or wrote its first output then, has outputs below and is live at the
  // second (or ended after it was read: with ends kept, a session with neither an end nor a place in `live` is taken
  // as live too). Only one that began and ended while the outputs were read is missed.
  const live = new Set<string>();
  await liveSessions(o, partition, where, live);
  // The outputs from the first entry's time: a session that began there wrote none before it.
  const outputs = (
    await range(
      client,
      keys.output(partition),
      String(idParts(from)[0]),
      '+',
      { max: o.maxOutputs, items: 'outputs', where },
      outputKept,
    )
  ).found.map(([id, f]) => recordedOutput(id, f));
  await liveSessions(o, partition, where, live);
  // Whether the worker keeps ends (`checkReplay`): after the outputs, so that a session whose outputs are read has
  // left its digests (live) or its end (ended) by then.
  const endsKept =
    Number(
      await send(client, keys.ends(partition), ['EXISTS', keys.ends(partition), keys.ended(partition), keys.check(partition)]),
    ) > 0;
  // How far the worker had read: later entries no session had seen.
  const delivered = String(await DELIVERED.run(client, [input], []));
  const read =
    compareIds(delivered, from) < 0
      ? { found: [], first: undefined }
      : await range(client, input, from, delivered, { max: o.maxEntries, items: 'input entries', where }, entryKept);
  const entries = read.found.map(([id, f]) => recordedEntry(id, f));
  // A trim between the first read and this one moved the start on.
  if (read.first !== undefined && compareIds(read.first, from) > 0) from = read.first;
  const part: PartitionRead = { partition, from, delivered, endsKept, input: entries, outputs, ends, live };
  return recordedPartition(part, only);
}

/**
 * Reads a function's recorded sessions from Redis: per partition, the input its worker had read (in log order,
 * events with their ids and bytes, and the markers, ticks and wake-ups among them), the outputs, where sessions
 * ended (kept by workers with `checkReplay: true`) and which sessions were live. The result is plain JSON: write
 * it to a file (`JSON.stringify`), and replay a new handler over it with `replayRecording` (`velo-stream/testing`).
 * It holds what Redis retains: the input is trimmed to the live sessions' entries every `trimInterval` (set it
 * long, or `0`, on a function you record), so a session whose first entry was trimmed cannot be replayed.
 * @throws {RangeError} `ERR_VELO_RECORDING_TOO_LARGE` when a partition holds more than `maxEntries` input entries,
 * session ends or live sessions, or more than `maxOutputs` outputs, of the keys recorded.
 */
export async function exportRecording(options: ExportRecordingOptions): Promise<Recording> {
  // (The options every entry point takes, checked as each checks them: a misspelt one is refused, not ignored.)
  const { client, keys, partitions } = resolveOptions(options, EXPORT, ['only', 'keys', 'since', 'maxEntries', 'maxOutputs']);
  const choice = checkChoice(EXPORT, options, partitions);
  const o = { ...choice, client, keys };
  const parts: RecordedPartition[] = [];
  for (const p of choice.chosen) parts.push(await exportPartition(o, p));
  return recordingOf(options.name, partitions, choice, parts);
}
