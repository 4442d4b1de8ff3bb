#!/usr/bin/env node
// velo-replay: the replay test before a deploy, as a command for CI. `export` writes a function's recorded sessions
// from Redis or Postgres to a file; `run` replays a handler module over a recording (a file, or read from Redis or
// Postgres at once) and prints every difference, exiting 1 when there is one (0: none; 2: the command could not run).
import { closeSync, existsSync, fstatSync, openSync, readSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { RedisClientLike } from './redis/log/connection';
import { exportRecording } from './redis/clients/recording-export';
import { MAX_BYTES, MAX_ENTRIES, type Recording, parseRecording } from './durable/common/recording';
import { type ReplayOptions, replayRecording } from './durable/testing/replay';
import { formatReplayReport } from './durable/testing/replay-compare';
import { postgresRecording } from './postgres/clients/recording';
import type { PgPoolLike } from './postgres/log/sql';
import type { StreamFn } from './types';
import { describe, invalidValue, peerMissingError, recordingTooLargeError } from './errors';

/**
 * A real `import()`: TypeScript compiles `import()` to `require()` for CommonJS output, which cannot load an ES
 * module (a handler module is one, most likely).
 */
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const importModule = new Function('specifier', 'return import(specifier)') as (
  specifier: string,
) => Promise<Record<string, unknown>>;

const USAGE = `Usage:
  velo-replay export (--redis <url> | --postgres <connection string> [--schema <schema>]) --name <name>
                     [--partitions <n>] [--partition <p>]... [--key <key>]... [--since <time>]
                     [--max-entries <n>] [--max-outputs <n>] [--max-bytes <n>] [--out <file>]
  velo-replay run --handler <module>[#<export>] (--recording <file> | (--redis <url> | --postgres <connection string>
                  [--schema <schema>]) --name <name> [--partitions <n>] [--partition <p>]... [--key <key>]...
                  [--since <time>]) [--options <json>] [--json] [--max-bytes <n>] [--max-entries <n>]

export writes the recording as JSON (to stdout without --out). --redis needs the package redis, --postgres the
package pg (node-postgres); --schema defaults to velo_stream. run replays the module's handler (its default
export, or the one named after #; its export replayOptions, if any, gives the worker's settings and codec, and
--options JSON overrides them) and prints the differences. --since takes ms since the epoch or an ISO 8601
date-time with its zone (2024-06-01T00:00:00Z, 2024-06-01T02:00:00+02:00). Exit status: 0 no difference,
1 differences, 2 error (a server that cannot be reached included: no retry).`;

const OPTIONS = {
  redis: { type: 'string' },
  postgres: { type: 'string' },
  schema: { type: 'string' },
  name: { type: 'string' },
  partitions: { type: 'string' },
  partition: { type: 'string', multiple: true },
  key: { type: 'string', multiple: true },
  since: { type: 'string' },
  'max-entries': { type: 'string' },
  'max-outputs': { type: 'string' },
  'max-bytes': { type: 'string' },
  out: { type: 'string' },
  handler: { type: 'string' },
  recording: { type: 'string' },
  options: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** A flag's whole number (`--max-entries 1000`), or its default. */
function count(
  values: Values,
  flag: 'partitions' | 'max-entries' | 'max-outputs' | 'max-bytes',
  fallback?: number,
): number | undefined {
  const text = values[flag];
  if (text === undefined) return fallback;
  if (!/^\d{1,15}$/.test(text)) throw invalidValue(`--${flag} must be a whole number, not ${JSON.stringify(text)}`);
  return Number(text);
}

/** An ISO 8601 date-time: date, hours and minutes, seconds and their fraction if any, and the zone if any. */
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?$/i;

/**
 * `--since`: ms since the epoch (a whole number), or an ISO 8601 date-time with its zone (`Z` or `+02:00`); nothing
 * else. Without a zone, JavaScript reads a time as this machine's local time, and Redis' clock is not that; other
 * forms `Date.parse` takes are read in local time too, and it rolls an impossible day over (February 30: March).
 */
function since(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (/^\d{1,15}$/.test(text)) return Number(text);
  const iso = ISO_TIME.exec(text);
  if (iso === null || iso[8] === undefined) {
    throw invalidValue(
      iso !== null
        ? `--since: give the time zone of ${JSON.stringify(text)} (Z for UTC, or +hh:mm)`
        : `--since must be ms since the epoch (a whole number) or an ISO 8601 time with its zone (2024-06-01T00:00:00Z, 2024-06-01T02:00:00+02:00), not ${JSON.stringify(text)}`,
    );
  }
  const [year, month, day, hour, minute, second = '0', fraction = '0', zone] = iso.slice(1);
  const date = new Date(0);
  date.setUTCFullYear(Number(year), Number(month) - 1, Number(day));
  date.setUTCHours(Number(hour), Number(minute), Number(second), Number(fraction.padEnd(3, '0').slice(0, 3)));
  const [zoneHours, zoneMinutes] = zone.toUpperCase() === 'Z' ? [0, 0] : zone.slice(1).split(':').map(Number);
  const sign = zone.startsWith('-') ? -1 : 1;
  // (The fields set are the fields read back only when each was in its range: else the Date rolled it over.)
  const exact =
    date.getUTCMonth() === Number(month) - 1 &&
    date.getUTCDate() === Number(day) &&
    Number(hour) < 24 &&
    Number(minute) < 60 &&
    Number(second) < 60 &&
    zoneHours < 24 &&
    zoneMinutes < 60;
  if (!exact) throw invalidValue(`--since: ${JSON.stringify(text)} is no time of the calendar (a field out of its range)`);
  const ms = date.getTime() - sign * (zoneHours * 60 + zoneMinutes) * 60_000;
  if (ms < 0) throw invalidValue(`--since: ${JSON.stringify(text)} is before 1970 (ms since the epoch are not negative)`);
  return ms;
}

/**
 * A server's address as given (`--redis`, `--postgres`), checked for its form before any connection: a client
 * library given something else reads it as a host name and fails with a lookup error far from the cause.
 */
function serverAddress(flag: 'redis' | 'postgres', text: string): string {
  const ok = flag === 'redis' ? /^rediss?:\/\//i.test(text) : /^(postgres(ql)?:\/\/|socket:|\/)/i.test(text);
  if (!ok)
    throw invalidValue(
      flag === 'redis'
        ? `--redis must be a Redis URL (redis://host:6379 or rediss://...), not ${JSON.stringify(text)}`
        : `--postgres must be a connection string (postgres://user@host:5432/database, or a socket directory), not ${JSON.stringify(text)}`,
    );
  return text;
}

/**
 * Refuses a schema that does not exist in the database (asked when a recording came back empty):
 * `postgresRecording` reads a schema never made as holding nothing, which for a mistyped `--schema` would replay
 * nothing and say OK.
 */
async function schemaMade(pool: PgPoolLike, schema: string): Promise<void> {
  const { rows } = await pool.query({ text: 'SELECT to_regnamespace($1) IS NOT NULL AS made', values: [schema] });
  if ((rows[0] as { made?: unknown } | undefined)?.made !== true)
    throw invalidValue(
      `--schema: the database has no schema "${schema}" (workers make it on their first start; is --schema right?)`,
    );
}

/** How long `--redis` waits for its connection to open, ms. */
const CONNECT_TIMEOUT_MS = 10_000;

/** Runs `use` with a client of `url` (the optional peer dependency `redis`), closed after. */
async function withRedis<T>(url: string, use: (client: RedisClientLike) => Promise<T>): Promise<T> {
  let redis: {
    createClient(options: {
      url: string;
      socket: { connectTimeout: number; reconnectStrategy: false };
    }): RedisClientLike & { close?(): Promise<unknown>; on(e: 'error', l: (error: Error) => void): unknown };
  };
  try {
    redis = (await importModule('redis')) as unknown as typeof redis;
  } catch (error) {
    throw peerMissingError(`--redis needs the package "redis" (node-redis 5 or 6) installed: ${(error as Error).message}`, error);
  }
  // No reconnecting: node-redis would retry a server it cannot reach without end (and queue the commands), where
  // the command is to fail (exit 2) at the first connection refused, timed out or lost.
  const client = redis.createClient({ url, socket: { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: false } });
  let failed: Error | undefined;
  client.on('error', (error) => (failed ??= error));
  try {
    await client.connect();
    return await use(client);
  } catch (error) {
    throw failed !== undefined && error !== failed
      ? new Error(`${(error as Error).message} (${failed.message})`, { cause: error })
      : error;
  } finally {
    await Promise.resolve(client.close?.() ?? client.destroy()).catch(() => {});
  }
}

/**
 * Runs `use` with a pool of `connectionString` (the optional peer dependency `pg`) of one connection, ended after.
 * (A recording is read in one transaction: one connection is all it takes.)
 */
async function withPostgres<T>(connectionString: string, use: (pool: PgPoolLike) => Promise<T>): Promise<T> {
  let pg: { Pool: new (options: { connectionString: string; max: number }) => PgPoolLike & PoolEnds };
  try {
    const mod = (await importModule('pg')) as { default?: typeof pg } & Partial<typeof pg>;
    pg = (mod.default ?? mod) as typeof pg;
  } catch (error) {
    throw peerMissingError(`--postgres needs the package "pg" (node-postgres) installed: ${(error as Error).message}`, error);
  }
  const pool = new pg.Pool({ connectionString, max: 1 });
  // (An idle connection's error, the server going away: the statement in flight fails with its own.)
  pool.on('error', () => {});
  try {
    return await use(pool);
  } finally {
    await pool.end().catch(() => {});
  }
}

/** The part of a pg.Pool the CLI ends. */
interface PoolEnds {
  on(event: 'error', listener: (error: Error) => void): unknown;
  end(): Promise<void>;
}

/** What to record, from the flags every source shares: `--name` and the bounds. */
function choiceOf(values: Values, source: string) {
  if (values.name === undefined) throw invalidValue(`--name is required with --${source}`);
  const maxEntries = count(values, 'max-entries', MAX_ENTRIES);
  return {
    name: values.name,
    partitions: count(values, 'partitions', 64),
    ...(values.partition === undefined ? {} : { only: values.partition.map((p) => Number(p)) }),
    ...(values.key === undefined ? {} : { keys: values.key }),
    ...(values.since === undefined ? {} : { since: since(values.since) }),
    maxEntries,
    maxOutputs: count(values, 'max-outputs', maxEntries),
  };
}

/** The recording read from the source the flags name (`--redis` or `--postgres`), or null when they name none. */
function fromServer(values: Values): Promise<Recording> | null {
  if (values.redis !== undefined && values.postgres !== undefined)
    throw invalidValue('give either --redis or --postgres, not both');
  if (values.schema !== undefined && values.postgres === undefined) throw invalidValue('--schema goes with --postgres');
  if (values.redis !== undefined) {
    const choice = choiceOf(values, 'redis');
    return withRedis(serverAddress('redis', values.redis), (client) => exportRecording({ client, ...choice }));
  }
  if (values.postgres !== undefined) {
    const choice = choiceOf(values, 'postgres');
    const schema = values.schema ?? 'velo_stream';
    return withPostgres(serverAddress('postgres', values.postgres), async (pool) => {
      const recording = await postgresRecording({ pool, schema, ...choice });
      if (recording.parts.every((p) => p.input.length + p.outputs.length + p.ends.length + p.live.length === 0))
        await schemaMade(pool, schema);
      return recording;
    });
  }
  return null;
}

/**
 * The bytes of `path`, never more than `maxBytes` of them in memory: a regular file over the bound is refused by its
 * size before any read, and any file (a pipe, a FIFO, a device, a file still growing) is refused at its first byte
 * past the bound.
 */
function readBounded(path: string, maxBytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const stat = fstatSync(fd);
    if (stat.isFile() && stat.size > maxBytes)
      throw recordingTooLargeError(`${path} is ${stat.size} bytes, more than --max-bytes (${maxBytes})`);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      // (Reads at most one byte past the bound: that byte is what proves the source longer than it.)
      const chunk = Buffer.allocUnsafe(Math.min(1 << 20, maxBytes + 1 - total));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      total += n;
      if (total > maxBytes)
        throw recordingTooLargeError(`${path} holds ${maxBytes + 1} bytes or more, more than --max-bytes (${maxBytes})`);
      chunks.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}

/** The recording of `run`: the file (read within `--max-bytes`), or read from Redis or Postgres. */
async function recordingOf(values: Values): Promise<Recording> {
  if (values.recording !== undefined) {
    if (values.redis !== undefined || values.postgres !== undefined)
      throw invalidValue('give either --recording or a server (--redis, --postgres), not both');
    const maxBytes = count(values, 'max-bytes', MAX_BYTES) as number;
    const bytes = readBounded(values.recording, maxBytes);
    return parseRecording(bytes, { maxBytes, maxEntries: count(values, 'max-entries', MAX_ENTRIES) });
  }
  const read = fromServer(values);
  if (read === null) throw invalidValue('run needs --recording <file>, --redis <url> or --postgres <connection string>');
  return read;
}

/** Node's refusals of a TypeScript module it cannot load by itself (its codes, compared only). */
const TS_LOAD_CODES =
  /^ERR_(UNKNOWN_FILE_EXTENSION|UNSUPPORTED_TYPESCRIPT_SYNTAX|UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING|INVALID_TYPESCRIPT_SYNTAX)$/;

/**
 * `--handler`'s module path and export name. The whole text is the path when a file is there (`./dir#1/cart.mjs`);
 * else the text after its last `#` names the export (`./cart.mjs#cart`, `./dir#1/cart.mjs#cart`); without a `#`,
 * the export is `default`.
 */
function handlerSpec(spec: string): [path: string, name: string] {
  const hash = spec.lastIndexOf('#');
  if (hash <= 0 || existsSync(resolve(spec))) return [spec, 'default'];
  return [spec.slice(0, hash), spec.slice(hash + 1)];
}

/** A thrown value as text: an error's name and message, a string as it is, anything else as `String()` gives it. */
function thrownText(thrown: unknown): string {
  try {
    if (thrown instanceof Error) return `${thrown.name}: ${thrown.message}`;
    return typeof thrown === 'string' ? thrown : String(thrown);
  } catch {
    return describe(thrown);
  }
}

/** The handler module's stream function and its replay options. */
async function handlerOf(
  spec: string,
  extra: string | undefined,
): Promise<{ fn: StreamFn<unknown, unknown>; options: ReplayOptions }> {
  const [path, name] = handlerSpec(spec);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(pathToFileURL(resolve(path)).href);
  } catch (error) {
    // Node (before type stripping, or for syntax it does not strip) loads no TypeScript by itself.
    const code = (error as { code?: unknown } | null)?.code;
    if (/\.[cm]?tsx?$/.test(path) && typeof code === 'string' && TS_LOAD_CODES.test(code))
      throw invalidValue(
        `--handler: Node could not load the TypeScript module ${path} (${code}). Run velo-replay with a loader: NODE_OPTIONS="--import tsx" velo-replay run ... (npm i -D tsx), or give --handler the compiled .js`,
        error,
      );
    // Every failure leaves with a code: Node's or the module's own, else this one with what was thrown as `cause`.
    if (typeof code === 'string') throw error;
    throw invalidValue(`--handler: the module ${path} threw while loading: ${thrownText(error)}`, error);
  }
  // A module compiled to CommonJS from ESM syntax (TypeScript through a loader, in a CommonJS package): its
  // exports are `module.exports`, marked `__esModule`, which import() gives as `default`.
  const inner = mod.default as { __esModule?: unknown } | null | undefined;
  if (inner !== null && typeof inner === 'object' && inner.__esModule === true) mod = inner;
  if (!(name in mod)) throw invalidValue(`--handler: ${path} has no export named ${JSON.stringify(name)}`);
  let options = (mod.replayOptions ?? {}) as ReplayOptions;
  if (extra !== undefined) {
    let given: unknown;
    try {
      given = JSON.parse(extra);
    } catch (error) {
      throw invalidValue(`--options must be JSON: ${(error as Error).message}`);
    }
    if (given === null || typeof given !== 'object' || Array.isArray(given))
      throw invalidValue('--options must be a JSON object');
    options = { ...options, ...given };
  }
  return { fn: mod[name] as StreamFn<unknown, unknown>, options };
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [command, ...rest] = positionals;
  if (values.help === true || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return values.help === true ? 0 : 2;
  }
  if (rest.length > 0) throw invalidValue(`unexpected arguments: ${rest.join(' ')}`);
  if (command === 'export') {
    const read = fromServer(values);
    if (read === null) throw invalidValue('export needs --redis <url> or --postgres <connection string>');
    const recording = await read;
    const text = JSON.stringify(recording);
    const maxBytes = count(values, 'max-bytes', MAX_BYTES) as number;
    const size = Buffer.byteLength(text);
    if (size > maxBytes) throw recordingTooLargeError(`the recording is ${size} bytes, more than --max-bytes (${maxBytes})`);
    if (values.out === undefined) process.stdout.write(`${text}\n`);
    else writeFileSync(values.out, text);
    const sessions = recording.parts.reduce((n, p) => n + p.input.length, 0);
    if (values.out !== undefined)
      process.stdout.write(`recorded ${recording.parts.length} partitions, ${sessions} input entries to ${values.out}\n`);
    return 0;
  }
  if (command === 'run') {
    if (values.handler === undefined) throw invalidValue('run needs --handler <module>[#<export>]');
    const { fn, options } = await handlerOf(values.handler, values.options);
    const recording = await recordingOf(values);
    const report = await replayRecording(fn, recording, options);
    process.stdout.write(`${values.json === true ? JSON.stringify(report) : formatReplayReport(report)}\n`);
    return report.ok ? 0 : 1;
  }
  throw invalidValue(`unknown command ${JSON.stringify(command)} (export or run)`);
}

main(process.argv.slice(2)).then(
  (status) => (process.exitCode = status),
  (error: unknown) => {
    const e = error as { code?: unknown; message?: unknown };
    // (Node's own messages start with their code already: `ENOENT: no such file ...`.)
    const message = String(e?.message ?? error);
    const code = typeof e?.code === 'string' && !message.startsWith(`${e.code}:`) ? `${e.code}: ` : '';
    process.stderr.write(`velo-replay: ${code}${message}\n`);
    process.exitCode = 2;
  },
);
