// Materializing outputs into Redis hashes: the feature-store shape (one hash
// per entity, its fields overwritten by each newer output).
//
// The outputs are read with a consumer group, and a batch is acked only
// after its hash writes are done: a crash re-delivers the batch. Each hash
// write is a script that records, in the hash itself, the position of the
// last output applied per source key (`_velo:<key>` = "<session start id>
// <seq>") and skips an output that is not newer: a re-delivered output
// changes nothing, and an old one never rolls a newer state back. One key
// per script call keeps every call in one Cluster slot.
import { describe, invalidReturn, invalidType, reporterOf } from '../../errors';
import { integerOption } from '../../validate';
import type { RedisName } from '../log/name';
import { type RedisOptions, type Resolved, callTimeoutOption, resolveOptions } from '../log/options';
import { type OutputItem, outputItem } from '../../durable/common/outputs';
import { checkClaimIdle, claimSweep } from './reader';
import { type RedisClientLike, readStreams, send, settlesWithin } from '../log/connection';
import { Script } from '../log/script';
import { checkGroupName } from '../log/options';
import type { MaterializeStats, Materializer } from '../../durable/common/clients';

/** An output with a value (handler failures are counted, not materialized). */
export type ValueOutput<O> = Extract<
  OutputItem<O>,
  {
    /** The output, decoded by the codec. */
    value: O;
  }
>;

/** Options of `redisMaterialize`. */
export interface RedisMaterializeOptions<O = unknown> extends RedisOptions<O>, RedisMaterializeOnly<O> {
  /** The function's name in Redis; a `RedisName<I, O>` (`redisName(fn, name)`) gives the materializer the function's output type. */
  name: RedisName<never, O>;
}

/** A materializer's own options (it runs on Redis only). */
export interface RedisMaterializeOnly<O = unknown> {
  /** The hash an output is written to (e.g. `features:${output.key}`). */
  key: (output: ValueOutput<O>) => string;
  /** The fields to set in it. Names must not start with `_velo:` (the marks). */
  fields: (output: ValueOutput<O>) => Record<string, string | number>;
  /** The consumer group it reads with: one per materialized view. Default `'materialize'`. */
  group?: string;
  /** Its consumer name in the group; after a restart it gets back what it had read but not acked. Default `'materializer'`. */
  consumer?: string;
  /** Where the group starts when it is created: `'start'` (every stored output, the default) or `'end'`. */
  from?: 'start' | 'end';
  /**
   * Take over, with `XAUTOCLAIM`, outputs another materializer of the group has had pending (read, not written
   * and acked) for at least this many ms: a materializer that stopped for good leaves nothing behind. Swept at
   * most every `claimIdle / 2` ms (and 50 ms). An output still being written by a slow one is then written
   * twice, which its mark makes harmless. Default: never.
   */
  claimIdle?: number;
  /** Outputs per partition per read: a read's outputs are written in one round of pipelined script calls, then acked. Default 256. */
  batch?: number;
  /**
   * Called with errors it recovers from by retrying (a lost connection), and with the error that stopped it. Default:
   * `process.emitWarning`. A throw of it, or a rejection, is a process warning (`ERR_VELO_ON_ERROR`).
   */
  onError?: (error: unknown) => void;
  /**
   * The longest `close()` waits for the batch being written, ms, or `Infinity`; then it cuts its connection (the
   * batch stays pending to this consumer and is written again at its next start; the marks make that harmless).
   * Default 5000.
   */
  callTimeout?: number;
}

export type { MaterializeStats };

/** A running Redis materializer: a `Materializer`. */
export type RedisMaterializer = Materializer;

const BUFFERS = { typeMapping: { 36: Buffer, 37: Array } };
const MARK = '_velo:';
const RETRY_MS = 100;

// Applies a read's outputs to one hash (lua/apply.lua).
const APPLY = new Script('apply.lua');

async function runApply(client: RedisClientLike, hash: string, args: string[]): Promise<[number, number]> {
  return (await APPLY.run(client, [hash], args)) as [number, number];
}

/** Carries the error of a `key`/`fields` callback out of the retry loop: the materializer stops with it. */
class Stop extends Error {
  constructor(readonly reason: unknown) {
    super('stop');
  }
}

class RedisMaterializerImpl<O> implements Materializer {
  readonly done: Promise<void>;
  readonly #o: Resolved<O>;
  readonly #key: RedisMaterializeOptions<O>['key'];
  readonly #fields: RedisMaterializeOptions<O>['fields'];
  readonly #group: string;
  readonly #consumer: string;
  readonly #from: 'start' | 'end';
  readonly #batch: number;
  readonly #claimIdle: number | undefined;
  readonly #onError: (error: unknown) => void;
  readonly #callTimeout: number;
  readonly #stats: MaterializeStats = { applied: 0, skipped: 0, failures: 0, batches: 0 };
  readonly #what: string;
  #connection: RedisClientLike | null = null;
  #closing = false;
  /** Set while the loop waits in a blocking read: close() may cut it short. */
  #blocked = false;

  constructor(o: Resolved<O>, options: RedisMaterializeOptions<O>, what: string) {
    this.#what = what;
    const {
      key,
      fields,
      group = 'materialize',
      consumer = 'materializer',
      from = 'start',
      batch = 256,
      claimIdle,
      onError,
      callTimeout,
    } = options;
    if (typeof key !== 'function') throw invalidType(`${what}: options.key must be a function, not ${describe(key)}`);
    if (typeof fields !== 'function') throw invalidType(`${what}: options.fields must be a function, not ${describe(fields)}`);
    checkGroupName(what, 'group', group);
    checkGroupName(what, 'consumer', consumer);
    if (from !== 'start' && from !== 'end')
      throw invalidType(`${what}: options.from must be 'start' or 'end', not ${describe(from)}`);
    integerOption(what, 'batch', batch, 1, 10_000);
    checkClaimIdle(what, claimIdle);
    if (onError !== undefined && typeof onError !== 'function')
      throw invalidType(`${what}: options.onError must be a function, not ${describe(onError)}`);
    this.#callTimeout = callTimeoutOption(what, callTimeout);
    this.#o = o;
    this.#key = key;
    this.#fields = fields;
    this.#group = group;
    this.#consumer = consumer;
    this.#from = from;
    this.#batch = batch;
    this.#claimIdle = claimIdle;
    this.#onError = reporterOf(onError);
    this.done = this.#run();
    // The stopping error also goes to onError: a rejection nobody awaits must not pass unseen, nor crash the process.
    this.done.catch(() => {});
  }

  stats(): MaterializeStats {
    return { ...this.#stats };
  }

  async close(): Promise<void> {
    this.#closing = true;
    // A blocking read holds its connection for up to a second: cut it. Entries it had taken stay pending for
    // this consumer and come back at the next start.
    if (this.#blocked) this.#connection?.destroy();
    // A server that does not answer holds the batch being written: cut it after callTimeout. Its outputs stay
    // pending to this consumer, as after a crash.
    if (!(await settlesWithin(this.done, this.#callTimeout))) this.#connection?.destroy();
    await this.done.catch(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #run(): Promise<void> {
    const o = this.#o;
    const names = Array.from({ length: o.partitions }, (_, p) => o.keys.output(p));
    const partitionOf = new Map(names.map((name, p) => [name, p]));
    const connection = o.client.duplicate();
    this.#connection = connection;
    // Its commands report their own failures; without a listener an 'error' event would throw.
    connection.on('error', () => {});
    try {
      try {
        await connection.connect();
      } catch (error) {
        // Cut by close() while it connected: nothing went wrong.
        if (this.#closing) return;
        throw error;
      }
      let groupsMade = false;
      // This consumer's own pending entries first (read, not acked, before a restart or a failed write).
      let pending = true;
      const sweep = claimSweep(names, this.#group, this.#consumer, this.#claimIdle, this.#batch);
      while (!this.#closing) {
        try {
          if (!groupsMade) {
            await this.#makeGroups(connection, names);
            groupsMade = true;
          }
          if (!pending && sweep.due()) {
            // Other materializers' stale entries: now this one's, written and acked as its own.
            const claimed = await sweep.claim(connection);
            if (claimed.size > 0) await this.#write(connection, claimed, partitionOf);
          }
          const head = ['XREADGROUP', 'GROUP', this.#group, this.#consumer, 'COUNT', String(this.#batch)];
          this.#blocked = !pending;
          let read: Map<string, [Buffer, unknown][]>;
          try {
            read = pending
              ? await readStreams(
                  connection,
                  head,
                  names,
                  names.map(() => '0'),
                  BUFFERS,
                )
              : await readStreams(
                  connection,
                  head,
                  names,
                  names.map(() => '>'),
                  BUFFERS,
                  sweep.blockMs,
                );
          } finally {
            this.#blocked = false;
          }
          let got = 0;
          for (const entries of read.values()) got += entries.length;
          if (got === 0) {
            pending = false;
            continue;
          }
          await this.#write(connection, read, partitionOf);
        } catch (error) {
          if (error instanceof Stop) throw error.reason;
          if (this.#closing) break;
          this.#onError(error);
          // Whatever was read stays pending: read it again first.
          pending = true;
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        }
      }
    } catch (error) {
      this.#onError(error);
      throw error;
    } finally {
      connection.destroy();
    }
  }

  async #makeGroups(connection: RedisClientLike, names: string[]): Promise<void> {
    const at = this.#from === 'end' ? '$' : '0';
    await Promise.all(
      names.map((name) =>
        send(connection, name, ['XGROUP', 'CREATE', name, this.#group, at, 'MKSTREAM']).catch((error: unknown) => {
          if (!String((error as Error)?.message).startsWith('BUSYGROUP')) throw error;
        }),
      ),
    );
  }

  /** Writes a batch to its hashes (one script call per hash, pipelined), then acks it. */
  async #write(connection: RedisClientLike, read: Map<string, [Buffer, unknown][]>, partitionOf: Map<string, number>) {
    const byHash = new Map<string, { n: number; args: string[] }>();
    const acks = new Map<string, string[]>();
    let failures = 0;
    for (const [name, entries] of read) {
      // (A stream the read found nothing in has nothing to ack: XACK with no id is an error.)
      if (entries.length > 0)
        acks.set(
          name,
          entries.map(([id]) => id.toString()),
        );
      for (const [id, list] of entries) {
        const output = outputItem(this.#o.codec, partitionOf.get(name) as number, id, list);
        // Trimmed away while pending: nothing to write.
        if (output === null) continue;
        if (!('value' in output)) {
          failures++;
          continue;
        }
        const [hash, args] = this.#describe(output);
        let entry = byHash.get(hash);
        if (entry === undefined) byHash.set(hash, (entry = { n: 0, args: [] }));
        entry.n++;
        entry.args.push(...args);
      }
    }
    const results = await Promise.all([...byHash].map(([hash, { n, args }]) => runApply(connection, hash, [String(n), ...args])));
    await Promise.all([...acks].map(([name, ids]) => send(connection, name, ['XACK', name, this.#group, ...ids])));
    for (const [applied, skipped] of results) {
      this.#stats.applied += Number(applied);
      this.#stats.skipped += Number(skipped);
    }
    this.#stats.failures += failures;
    this.#stats.batches++;
  }

  /** The hash and the script arguments of one output; a Stop if a callback fails. */
  #describe(output: ValueOutput<O>): [string, string[]] {
    let hash: unknown;
    let fields: unknown;
    try {
      hash = this.#key(output);
      fields = this.#fields(output);
    } catch (error) {
      throw new Stop(error);
    }
    if (typeof hash !== 'string' || hash.length === 0)
      throw new Stop(invalidReturn(`${this.#what}: key() must return a non-empty string, not ${describe(hash)}`));
    if (fields === null || typeof fields !== 'object' || Array.isArray(fields))
      throw new Stop(invalidReturn(`${this.#what}: fields() must return an object, not ${describe(fields)}`));
    const args: string[] = [];
    for (const [field, value] of Object.entries(fields)) {
      if (field.startsWith(MARK))
        throw new Stop(invalidReturn(`${this.#what}: field names starting with '${MARK}' are reserved, got ${field}`));
      if (typeof value === 'number' && Number.isFinite(value)) args.push(field, String(value));
      else if (typeof value === 'string') args.push(field, value);
      else
        throw new Stop(
          invalidReturn(
            `${this.#what}: field ${JSON.stringify(field)} must be a string or a finite number, not ${describe(value)}`,
          ),
        );
    }
    if (args.length === 0) throw new Stop(invalidReturn(`${this.#what}: fields() must return at least one field`));
    // sid = `<key>@<first input entry id>`: the session's start orders the key's sessions.
    const start = output.sid.slice(output.sid.lastIndexOf('@') + 1);
    const dash = start.indexOf('-');
    return [
      hash,
      [MARK + output.key, start.slice(0, dash), start.slice(dash + 1), String(output.seq), String(args.length / 2), ...args],
    ];
  }
}

/**
 * Writes the outputs of the function `options.name` into Redis hashes as they come: `key(output)` names the
 * hash, `fields(output)` the fields to set. Reads with the consumer group `options.group` (one per view; more
 * materializers in one group share the work) and acks a batch once its writes are done, so a crash re-delivers
 * rather than loses. Re-delivered and out-of-date outputs are skipped by a mark per source key kept in the hash
 * (`_velo:<key>`): the hash holds the fields of the newest output of each key that wrote to it. Runs until
 * `close()`.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for a bad option.
 */
export function redisMaterialize<O = unknown>(options: RedisMaterializeOptions<O>): RedisMaterializer {
  return startMaterializer(options, 'redisMaterialize()');
}

/** `redisMaterialize` for the entry point `what` (named in its errors). */
export function startMaterializer<O>(options: RedisMaterializeOptions<O>, what: string): Materializer {
  return new RedisMaterializerImpl(
    resolveOptions(options, what, ['key', 'fields', 'group', 'consumer', 'from', 'batch', 'claimIdle', 'onError', 'callTimeout']),
    options,
    what,
  );
}
