// Reads a function's recorded sessions out of Redis (docs/redis/storage.md): per partition, the input the worker
// had read (events, and the markers, ticks and wake-ups among them), the outputs, where sessions ended (kept with
// `checkReplay`) and which were live. Reads only: nothing in Redis changes. The reads of a partition are not one
// atomic snapshot (a partition's input can be far larger than one command should carry); they go in an order that
// keeps what they find consistent for the replay: the ends and live sessions first (an end is committed with the
// session's last outputs), then the outputs, then how far the worker had read, then the input up to there.
import { describe, invalidType, recordingTooLargeError } from '../../errors';
import { integerOption } from '../../validate';
import { type RedisClientLike, send } from '../log/connection';
import { checkName, checkKey, fnv1a } from '../log/options';
import { entryFields } from '../common/stored';
import { KeySpace } from '../log/redis-log';
import { Script } from '../log/script';
import type { HandlerFailure } from '../common/outputs';
import {
  MAX_ENTRIES,
  RECORDING_FORMAT,
  RECORDING_VERSION,
  type RecordedEnd,
  type RecordedEntry,
  type RecordedOutput,
  type RecordedPartition,
  type Recording,
  compareIds,
  idParts,
  splitSid,
} from './recording';

/** Options of `exportRecording`. */
export interface ExportRecordingOptions {
  /** A connected node-redis client (v5 or v6, a single server or a Cluster). Not closed. */
  client: RedisClientLike;
  /** The function's name in Redis. */
  name: string;
  /** The function's partition count. Default 64 (as the worker's). */
  partitions?: number;
  /** Which partitions to record. Default: every one (or, with `keys`, those of the keys). */
  only?: readonly number[];
  /** Record only these keys' entries, outputs and sessions. Default: every key. */
  keys?: readonly string[];
  /**
   * Record from this time on (ms since the epoch, Redis' clock): entries before it are left out, as if trimmed,
   * and sessions that began before it are reported as not replayable. Default: the whole retained input.
   */
  since?: number;
  /** Most input entries, outputs, ends or live sessions per partition: past it the export fails (nothing is cut). Default 1 000 000. */
  maxEntries?: number;
  /** Most outputs per partition: past it the export fails. Default `maxEntries`. */
  maxOutputs?: number;
}

const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };
const DELIVERED = new Script('delivered.lua');
/** Entries per XRANGE. */
const PAGE = 1000;
const EXPORT = 'exportRecording()';

/** A stream's entries from `start` (inclusive) to `end`, in pages; at most `max` (else the error of `what`). */
async function range(
  client: RedisClientLike,
  key: string,
  start: string,
  end: string,
  max: number,
  what: string,
): Promise<[string, Map<string, Buffer>][]> {
  const found: [string, Map<string, Buffer>][] = [];
  let from = start;
  for (;;) {
    const page = (await send(client, key, ['XRANGE', key, from, end, 'COUNT', String(PAGE)], BUFFERS)) as [Buffer, unknown][];
    for (const [id, list] of page) found.push([id.toString(), entryFields(list)]);
    if (found.length > max) {
      throw recordingTooLargeError(
        `${EXPORT}: ${what} has more than ${max} entries: record fewer (keys, since, only) or raise the bound`,
      );
    }
    if (page.length < PAGE) return found;
    from = `(${found[found.length - 1][0]}`;
  }
}

/** A hash's fields and values (strings), in pages; at most `max`. */
async function hash(client: RedisClientLike, key: string, max: number, what: string): Promise<[string, string][]> {
  const found: [string, string][] = [];
  let cursor = '0';
  do {
    const [next, fields] = (await send(client, key, ['HSCAN', key, cursor, 'COUNT', String(PAGE)])) as [string, string[]];
    cursor = String(next);
    for (let i = 0; i + 1 < fields.length; i += 2) found.push([String(fields[i]), String(fields[i + 1])]);
    if (found.length > max) {
      throw recordingTooLargeError(`${EXPORT}: ${what} has more than ${max} fields: record fewer or raise maxEntries`);
    }
  } while (cursor !== '0');
  return found;
}

function base64(data: Buffer | undefined): string {
  return (data ?? Buffer.alloc(0)).toString('base64');
}

/** An input entry's fields as the recording keeps them. */
function recordedEntry(id: string, f: Map<string, Buffer>): RecordedEntry {
  const key = f.get('k')?.toString() ?? '';
  const close = f.get('c');
  if (close !== undefined) {
    const reason = f.get('r')?.toString();
    return reason === undefined ? { id, key, close: close.toString() } : { id, key, close: close.toString(), reason };
  }
  const wake = f.get('w');
  if (wake !== undefined) {
    const due = Number(f.get('d')?.toString());
    const entry = { id, key, wake: wake.toString(), v: base64(f.get('v')) };
    return f.has('d') && Number.isSafeInteger(due) && due >= 0 ? { ...entry, due } : entry;
  }
  return { id, key, v: base64(f.get('v')) };
}

/** An output entry as the recording keeps it (a failure's JSON parsed; one that is not JSON kept as its text). */
function recordedOutput(id: string, f: Map<string, Buffer>): RecordedOutput {
  const base = {
    id,
    sid: f.get('sid')?.toString() ?? '',
    key: f.get('k')?.toString() ?? '',
    seq: Number(f.get('seq')?.toString()),
  };
  const e = f.get('e');
  if (e === undefined) return { ...base, v: base64(f.get('v')) };
  let error: HandlerFailure;
  try {
    const parsed = JSON.parse(e.toString()) as Partial<HandlerFailure>;
    error = {
      name: String(parsed.name),
      message: String(parsed.message),
      ...(typeof parsed.code === 'string' ? { code: parsed.code } : {}),
    };
  } catch {
    error = { name: 'Error', message: e.toString() };
  }
  return { ...base, error };
}

async function exportPartition(
  o: { client: RedisClientLike; keys: KeySpace; only: Set<string> | null; since: number; maxEntries: number; maxOutputs: number },
  partition: number,
): Promise<RecordedPartition> {
  const { client, keys } = o;
  const input = keys.input(partition);
  const wanted = (key: string) => o.only === null || o.only.has(key);
  const where = `partition ${partition}`;
  // Where the retained input starts: entries before it were trimmed (or are before `since`).
  const first = (await send(client, input, ['XRANGE', input, o.since > 0 ? String(o.since) : '-', '+', 'COUNT', '1'])) as [
    string,
    unknown,
  ][];
  let from = first.length > 0 ? String(first[0][0]) : `${o.since}-0`;
  // What sessions ended, and which were live: before the outputs (an end is committed with its last outputs).
  const endsKept =
    Number(
      await send(client, keys.ends(partition), ['EXISTS', keys.ends(partition), keys.ended(partition), keys.check(partition)]),
    ) > 0;
  const ends = (await hash(client, keys.ends(partition), o.maxEntries, `${where}'s ends`)).map(([sid, value]): RecordedEnd => {
    const space = value.indexOf(' ');
    return { sid, reason: space < 0 ? value : value.slice(0, space), last: space < 0 ? '' : value.slice(space + 1) };
  });
  const live = new Set<string>();
  for (const k of [keys.hw(partition), keys.ckpt(partition), keys.timers(partition)]) {
    const fields = (await send(client, k, ['HKEYS', k])) as string[];
    if (fields.length > o.maxEntries)
      throw recordingTooLargeError(`${EXPORT}: ${where} has more than ${o.maxEntries} live sessions`);
    // (The marks' hash also keeps each mark's output place, under "<sid> p": a sid has no space before its id.)
    for (const field of fields) if (!String(field).endsWith(' p')) live.add(String(field));
  }
  // The outputs from the first entry's time: a session that began there wrote none before it.
  const outputs = (
    await range(client, keys.output(partition), String(idParts(from)[0]), '+', o.maxOutputs, `${where}'s output stream`)
  ).map(([id, f]) => recordedOutput(id, f));
  // How far the worker had read: later entries no session had seen.
  const delivered = String(await DELIVERED.run(client, [input], []));
  const entries =
    compareIds(delivered, from) < 0
      ? []
      : (await range(client, input, from, delivered, o.maxEntries, `${where}'s input`)).map(([id, f]) => recordedEntry(id, f));
  // A trim between the first read and this one moved the start on.
  if (entries.length > 0 && compareIds(entries[0].id, from) > 0) from = entries[0].id;
  const mine = (sid: string) => wanted(splitSid(sid).key) && sid.includes('@');
  return {
    partition,
    from,
    delivered,
    endsKept,
    // (With a key filter, ticks are left out with the other keys' entries: they name no session.)
    input: entries.filter((e) => (e.key === '' ? o.only === null : wanted(e.key))),
    outputs: outputs.filter((out) => mine(out.sid)),
    // (Ends of sessions before `from` are kept: the replay reports those sessions as not replayable.)
    ends: ends.filter((e) => mine(e.sid)),
    live: [...live].filter(mine).sort(),
  };
}

/**
 * Reads a function's recorded sessions from Redis: per partition, the input its worker had read (in log order,
 * events with their ids and bytes, and the markers, ticks and wake-ups among them), the outputs, where sessions
 * ended (kept by workers with `checkReplay: true`) and which sessions were live. The result is plain JSON: write
 * it to a file (`JSON.stringify`), and replay a new handler over it with `replayRecording` (`velo-stream/testing`).
 * It holds what Redis retains: the input is trimmed to the live sessions' entries every `trimInterval` (set it
 * long, or `0`, on a function you record), so a session whose first entry was trimmed cannot be replayed.
 * @throws {RangeError} `ERR_VELO_RECORDING_TOO_LARGE` when a partition holds more than `maxEntries` entries or `maxOutputs` outputs.
 */
export async function exportRecording(options: ExportRecordingOptions): Promise<Recording> {
  if (options === null || typeof options !== 'object')
    throw invalidType(`${EXPORT}: options must be an object, not ${describe(options)}`);
  const { client, name, partitions = 64, only, keys, since = 0, maxEntries = MAX_ENTRIES } = options;
  const maxOutputs = options.maxOutputs ?? maxEntries;
  if (client === null || typeof client !== 'object' || typeof client.sendCommand !== 'function') {
    throw invalidType(`${EXPORT}: options.client must be a connected node-redis client, not ${describe(client)}`);
  }
  checkName(EXPORT, name);
  integerOption(EXPORT, 'partitions', partitions, 1, 16384);
  integerOption(EXPORT, 'since', since, 0, Number.MAX_SAFE_INTEGER);
  integerOption(EXPORT, 'maxEntries', maxEntries, 1, 1e9);
  integerOption(EXPORT, 'maxOutputs', maxOutputs, 1, 1e9);
  // (Checked on copies: narrowing a readonly array by Array.isArray makes its items `any`.)
  const givenKeys: unknown = keys;
  const givenOnly: unknown = only;
  if (givenKeys !== undefined && !Array.isArray(givenKeys))
    throw invalidType(`${EXPORT}: options.keys must be an array of keys, not ${describe(keys)}`);
  if (givenOnly !== undefined && !Array.isArray(givenOnly))
    throw invalidType(`${EXPORT}: options.only must be an array of partitions, not ${describe(only)}`);
  const keyList = keys?.map((k) => checkKey(k));
  only?.forEach((p, i) => integerOption(EXPORT, `only[${i}]`, p, 0, partitions - 1));
  let chosen = only === undefined ? Array.from({ length: partitions }, (_, p) => p) : [...new Set(only)].sort((a, b) => a - b);
  if (keyList !== undefined) {
    const of = new Set(keyList.map((k) => fnv1a(k) % partitions));
    chosen = chosen.filter((p) => of.has(p));
  }
  const o = {
    client,
    keys: new KeySpace(name),
    only: keyList === undefined ? null : new Set(keyList),
    since,
    maxEntries,
    maxOutputs,
  };
  const parts: RecordedPartition[] = [];
  for (const p of chosen) parts.push(await exportPartition(o, p));
  return {
    format: RECORDING_FORMAT,
    version: RECORDING_VERSION,
    name,
    partitions,
    ...(keyList === undefined ? {} : { keys: keyList }),
    ...(since > 0 ? { since } : {}),
    parts,
  };
}
