// The figures a dashboard shows, sampled: one `Sampler.sample()` per interval
// reads every function's counters and totals (from the core), a bounded
// number of its open streams' metrics, and every worker's stats(), and
// turns the counters into rates since the previous sample. Nothing here runs
// per event; the cost is per sample, bounded by `scan`.
import { kTotals, type Totals } from '../core/function';
import { kWatch, type StreamList, tagOf } from '../core/stream-list';
import { fnv1a } from '../durable/common/keys';
import { kServes } from '../durable/engine/metrics';
import { cutText } from '../text';
import { invalidReturn } from '../errors';
import { kThreads, type ThreadLoads } from '../worker/index';
import type { StreamFn, StreamMetrics, StreamState } from '../types';
import type { Worker } from '../durable/engine/worker';
import type { KeyWait, Limiter, LimiterStats } from '../limits/types';
import { kDescribe, type LimiterDescription } from '../limits/describe';

/** Any stream function, whatever its event and output types. */
export type AnyFn = StreamFn<never, unknown>;

/** Queue-wait bounds, µs: two per power of two, 1 µs to about 67 s. */
const WAIT_BOUNDS_US = Array.from({ length: 53 }, (_, i) => Math.round(2 ** (i / 2)));
/** Streams shown per list (longest-lived, most buffered). */
const TOP = 5;
/** Errors shown, the latest. */
const ERRORS = 20;
/** The longest label shown, UTF-16 code units (a longer one is cut, with `…`). */
export const MAX_LABEL = 200;
/**
 * The longest function name shown, UTF-16 code units: a longer one is cut, with `…`, in samples, error rows and the
 * drill-down alike, which finds the function by the name shown (no longer than a drill-down may name).
 */
export const MAX_NAME = 200;

/** A function's name as a dashboard shows it (and a drill-down names it). */
export const shownName = (name: string): string => cutText(name, MAX_NAME);

/** One stream as the dashboard lists it: figures only, never events, outputs or keys (unless `showKeys`). */
export interface StreamRow {
  /** The stream's id (`stream.id`). */
  id: string;
  /**
   * What it is: the `label` given to `open()` or `run()`, or for a `redisWorker` session its sid, whose key is
   * shown only with `showKeys` (else `…@<first entry id> · p<partition>`). 200 characters at most.
   */
  label?: string;
  /** Its state: `open` or `ending` while listed. */
  state: StreamState;
  /** ms since it opened. */
  ageMs: number;
  /** Events accepted so far. */
  eventsIn: number;
  /** Outputs yielded so far. */
  eventsOut: number;
  /** Events in its input buffer now. */
  bufferedIn: number;
  /** Outputs in its output buffer now. */
  bufferedOut: number;
  /** Sends that found its input buffer full. */
  backpressureWaits: number;
  /** Median queue wait of its events, µs. */
  queueWaitP50Us: number;
  /** 99th percentile of the same, µs. */
  queueWaitP99Us: number;
}

/** One function's figures in a sample; rates are per second since the previous sample (0 in a page's first). */
export interface FnSample {
  /** The function's name, 200 characters at most (a longer one is cut, its last character `…`). */
  name: string;
  /** Streams open now. */
  open: number;
  /** Streams opened per second. */
  opened: number;
  /** Streams completed per second. */
  completed: number;
  /** Streams failed per second. */
  failed: number;
  /** Streams cancelled per second. */
  cancelled: number;
  /** Opens refused at `maxConcurrent` per second. */
  rejected: number;
  /** Events accepted per second. */
  eventsIn: number;
  /** Outputs yielded per second. */
  eventsOut: number;
  /** Median queue wait of the events taken since the previous sample (an upper bound within √2), µs; null: none taken. */
  queueWaitP50Us: number | null;
  /** 99th percentile of the same, µs; null: none taken. */
  queueWaitP99Us: number | null;
  /** Backpressure waits so far of the streams read in this sample (`scanned` of them: open, or finished with outputs unread). */
  backpressureWaits: number;
  /** Listed streams whose figures this sample read (at most `scan`). */
  scanned: number;
  /** Task and batch stages only. */
  task?: TaskSample;
  /** `workerFn`: its threads. */
  threads?: ThreadLoads;
  /** The longest-lived listed streams (five at most). */
  oldest: StreamRow[];
  /** The most buffered streams found (five at most; only streams holding something). */
  mostBuffered: StreamRow[];
}

/** A task or batch stage's figures in a sample. */
export interface TaskSample {
  /** Calls in flight now (running or waiting for a retry). */
  inFlight: number;
  /** Retries scheduled per second. */
  retries: number;
  /** Items (or batches) skipped by `onError: 'skip'` so far. */
  skipped: number;
}

/** One worker's figures in a sample (its `stats()`, see `WorkerStats`). */
export interface WorkerSample {
  /** The function's name, 200 characters at most (cut as in `functions`). */
  name: string;
  /** The worker's id. */
  id: string;
  /** The backend it runs on (`worker.backend`). */
  backend: 'redis' | 'postgres' | 'memory';
  /** Partitions owned now. */
  owned: number[];
  /** Entries of the owned partitions not yet read, at the last lease renewal. */
  lag: number;
  /** `lag` per owned partition. */
  partitionLag: Record<number, number>;
  /** Live sessions. */
  sessions: number;
  /** Events held in memory waiting for a session slot. */
  held: number;
  /** Keys whose events wait for a slot in the log. */
  waitingKeys: number;
  /** Events read that sessions' handlers have not taken yet. */
  buffered: number;
  /** Entries replayed after takeovers. */
  replayed: number;
  /** Sessions rebuilt by those replays. */
  replayedSessions: number;
  /** Reads and writes the backend refused because the lease was gone. */
  fenced: number;
  /** Partitions lost to another worker. */
  lost: number;
  /** Errors passed to `onError`. */
  errors: number;
  /** 99th percentile round trip of its last 1024 calls to its backend, ms. */
  roundTripP99Ms: number;
  /** Its `version` (`''`: none set). */
  version: string;
  /** Superseded by a live worker of a newer version: it takes no partition, and hands over those it has. */
  superseded: boolean;
  /** Its live sessions per version they run on (`''`: opened with no version). */
  sessionsByVersion: Record<string, number>;
}

/**
 * A worker's figures in a sample, under their old name.
 * @deprecated Use `WorkerSample`; `RedisSample` goes in the next major release.
 */
export type RedisSample = WorkerSample;

/** One limiter's figures in a sample (its `stats()`); per-second rates are since the previous sample (0 in a page's first). */
export interface LimiterSample {
  /** The limiter's name, 200 characters at most (cut as a function's). */
  name: string;
  /**
   * `limiter()` ('in-process'), `redisLimiter()` ('redis'), `postgresLimiter()` ('postgres'), or another object with
   * the limiter's methods ('other').
   */
  kind: LimiterKind;
  /** Its limits now (for 'redis', as of its last renewal), mode and keying; absent for 'other'. */
  limits?: LimiterLimits;
  /** Permits held now (all keys; for 'redis', by this process). */
  inUse: number;
  /** Acquires waiting now (for 'redis', this process'). */
  waiting: number;
  /** Permits granted since creation. */
  admitted: number;
  /** Acquires refused since creation ('reject' mode, a full line). */
  rejected: number;
  /** Permits granted per second. */
  admittedPerSec: number;
  /** Acquires refused per second. */
  rejectedPerSec: number;
  /** Units admitted per second over about the last period (`stats().rate`); null for a limiter without a rate. */
  rate: number | null;
  /** Median wait before a grant (recent window), ms. */
  waitP50Ms: number;
  /** 99th percentile of the same, ms. */
  waitP99Ms: number;
  /** Keys holding a permit or a waiter now. */
  keys: number;
  /** How long the acquire waiting longest has waited so far, ms (0: none waits; null: the limiter does not say). */
  oldestWaitMs: number | null;
  /**
   * Per-key waits: the (at most 5) keys whose acquires have waited longest (`waitingKeys()`; for 'redis', this
   * process's), each key's name shown only with `showKeys` (else `…`).
   */
  waitingKeys: KeyWait[];
  /** A Redis limiter's own figures (`RedisLimiterStats`): whether Redis was away at its last call, and the fleet's counters as of its last renewal. */
  redis?: FleetFigures;
  /** A Postgres limiter's own figures (`PostgresLimiterStats`), as `redis` is a Redis limiter's. */
  postgres?: FleetFigures;
}

/** A fleet limiter's figures in a sample: whether its store was away at its last call, and the fleet's counters. */
export interface FleetFigures {
  /** The last call to its store failed (acquires follow `whenRedisFails` / `whenPostgresFails`). */
  down: boolean;
  /** Processes sharing it. */
  processes: number;
  /** Permits the fleet granted. */
  fleetAdmitted: number;
  /** Acquires the fleet refused. */
  fleetRejected: number;
  /** Permits of this process whose lease ran out before their release. */
  lost: number;
}

/** The kinds of limiter a sample names. */
export type LimiterKind = 'in-process' | 'redis' | 'postgres' | 'other';

/** A limiter whose `stats()` threw (or answered something that is not figures): the rest of the sample is sent. */
export interface LimiterFailure {
  /** The limiter's name, 200 characters at most (cut as a function's). */
  name: string;
  /** As in LimiterSample. */
  kind: LimiterKind;
  /** The error's code (or class name); an invalid return value's code when the answer was not figures. */
  error: string;
}

/** A failed stream: its function, id, time and error code (its message only when values are shown). */
export interface ErrorRow {
  /** When its handler threw, ms since the Unix epoch. */
  at: number;
  /** Its function's name, as `FnSample.name` shows it. */
  fn: string;
  /** The stream's id. */
  id: string;
  /** The error's `code` when it is a string, else its class name. */
  code: string;
  /** The error's message (500 characters at most), with `showValues` only. */
  message?: string;
}

/** What the feed sends each interval. */
export interface Sample {
  /** When it was taken, ms since the Unix epoch. */
  at: number;
  /** Each function shown. */
  functions: FnSample[];
  /** Each worker shown (of either backend: see its `backend`). */
  workers: WorkerSample[];
  /**
   * The same rows as `workers` (the same objects), under their old name: a dashboard of the release before reads
   * a fleet member's sample from it.
   * @deprecated Read `workers`; `redis` goes in the next major release.
   */
  redis: WorkerSample[];
  /** Each limiter shown. */
  limiters: (LimiterSample | LimiterFailure)[];
  /** The latest failures, newest first (twenty at most). */
  errors: ErrorRow[];
  /** With the `fleet` option: the fleet's name (the page then shows the `fleet` route's view). */
  fleet?: string;
}

type Counters = { opened: number; completed: number; failed: number; cancelled: number; rejected: number };
type Previous = {
  at: number;
  counts: Counters;
  eventsIn: number;
  eventsOut: number;
  waits: number[];
  waitCount: number;
  retries: number;
};

/** How a sample names listed streams: `showKeys`, and the partition count of a function's Redis workers. */
interface Labels {
  readonly showKeys: boolean;
  /** Partitions of the Redis function a listed stream's session belongs to (of a worker shown), if known. */
  readonly partitions: number | undefined;
}

/** A listed stream's label: the one given at its open, or its Redis session's sid (its key shown only if allowed). */
function labelOf(stream: object, labels: Labels): string | undefined {
  const tag = tagOf(stream);
  if (tag === undefined) return undefined;
  if (tag.label !== undefined) return cutText(tag.label, MAX_LABEL);
  const session = tag.session;
  if (session === undefined) return undefined;
  if (labels.showKeys) return cutText(session.sid, MAX_LABEL);
  // sid = `<key>@<first entry id>`: the entry id (and the partition) find the session in Redis, the key stays hidden.
  const at = `…${session.sid.slice(session.key.length)}`;
  return labels.partitions === undefined ? at : `${at} · p${fnv1a(session.key) % labels.partitions}`;
}

/** A stream's metrics as a row. */
function row(stream: { id: string; state: StreamState; metrics: StreamMetrics }, now: number, labels: Labels): StreamRow {
  const m = stream.metrics;
  const label = labelOf(stream, labels);
  return {
    id: stream.id,
    ...(label !== undefined && { label }),
    state: stream.state,
    ageMs: Math.max(0, Math.round(now - m.openedAt)),
    eventsIn: m.eventsIn,
    eventsOut: m.eventsOut,
    bufferedIn: m.bufferedIn,
    bufferedOut: m.bufferedOut,
    backpressureWaits: m.backpressureWaits,
    queueWaitP50Us: m.queueWaitP50Us,
    queueWaitP99Us: m.queueWaitP99Us,
  };
}

/** The bound at which the cumulative counts `now - before` reach `q` of their total; null when nothing was counted. */
function percentile(now: number[], before: number[], total: number, q: number): number | null {
  if (total <= 0) return null;
  const rank = Math.ceil(q * total);
  for (let i = 0; i < now.length; i++) if (now[i] - (before[i] ?? 0) >= rank) return WAIT_BOUNDS_US[i];
  return WAIT_BOUNDS_US[WAIT_BOUNDS_US.length - 1];
}

/** An error's code: its `code` when a string, else its class name. */
function codeOf(error: unknown): string {
  try {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string') return code.slice(0, 100);
    const name = (error as { name?: unknown } | null)?.name;
    return typeof name === 'string' ? name.slice(0, 100) : typeof error;
  } catch {
    // A getter that throws (a proxy, a hostile object): the kind of value is all there is to show.
    return typeof error;
  }
}

/** One function's state across samples. */
class FnWatch {
  readonly fn: AnyFn;
  /** Its name as shown (`shownName`), read once. */
  readonly name: string;
  readonly list: StreamList;
  readonly labels: Labels;
  /** Where the scan of the open streams goes on next sample (round robin). */
  #cursor: Generator<{ id: string; state: StreamState; metrics: StreamMetrics }> | undefined;
  #previous: Previous | undefined;
  #mostBuffered: string[] = [];

  constructor(fn: AnyFn, labels: Labels) {
    this.fn = fn;
    this.name = shownName(fn.name);
    this.list = (fn as unknown as { [kWatch](): StreamList })[kWatch]();
    this.labels = labels;
  }

  sample(now: number, scan: number): FnSample {
    const fn = this.fn;
    const stats = fn.stats();
    const totals = (fn as unknown as { [kTotals](b: number[]): Totals })[kTotals](WAIT_BOUNDS_US);
    const waits = totals.queueWait.buckets.map(([, n]) => n);
    const prev = this.#previous;
    const seconds = prev === undefined ? 0 : Math.max(1e-3, (now - prev.at) / 1000);
    const rate = (value: number, before: number | undefined) =>
      prev === undefined || before === undefined ? 0 : Math.max(0, value - before) / seconds;
    // Events taken since the previous sample (all of them at the first).
    const taken = totals.queueWait.count - (prev?.waitCount ?? 0);
    const before = prev?.waits ?? [];

    // Longest-lived: the list is in open order.
    const oldest: StreamRow[] = [];
    for (const s of this.list.streams()) {
      if (oldest.length === TOP) break;
      oldest.push(row(s, now, this.labels));
    }
    // Most buffered: the last sample's leaders read again, and the next `scan` streams of the round robin.
    const seen = new Map<string, StreamRow>();
    for (const id of this.#mostBuffered) {
      const s = this.list.get(id);
      if (s !== undefined) seen.set(id, row(s, now, this.labels));
    }
    let scanned = 0;
    let backpressureWaits = 0;
    const scannedIds = new Set<string>();
    let restarted = false;
    while (scanned < scan) {
      this.#cursor ??= this.list.streams();
      const next = this.#cursor.next();
      if (next.done) {
        // The end of the list: once per sample, go on from its start.
        this.#cursor = undefined;
        if (restarted) break;
        restarted = true;
        continue;
      }
      const r = row(next.value, now, this.labels);
      // Back at a stream read in this sample: every listed stream was read.
      if (scannedIds.has(r.id)) break;
      scannedIds.add(r.id);
      scanned++;
      backpressureWaits += r.backpressureWaits;
      seen.set(r.id, r);
    }
    const mostBuffered = [...seen.values()]
      .filter((r) => r.bufferedIn + r.bufferedOut > 0)
      .sort((a, b) => b.bufferedIn + b.bufferedOut - (a.bufferedIn + a.bufferedOut))
      .slice(0, TOP);
    this.#mostBuffered = mostBuffered.map((r) => r.id);

    const task = totals.task;
    const threads = (fn as { [kThreads]?: () => ThreadLoads })[kThreads]?.();
    const counts: Counters = {
      opened: stats.opened,
      completed: stats.completed,
      failed: stats.failed,
      cancelled: stats.cancelled,
      rejected: stats.rejected,
    };
    this.#previous = {
      at: now,
      counts,
      eventsIn: totals.eventsIn,
      eventsOut: totals.eventsOut,
      waits,
      waitCount: totals.queueWait.count,
      retries: task?.retries ?? 0,
    };
    return {
      name: this.name,
      open: stats.open,
      opened: rate(counts.opened, prev?.counts.opened),
      completed: rate(counts.completed, prev?.counts.completed),
      failed: rate(counts.failed, prev?.counts.failed),
      cancelled: rate(counts.cancelled, prev?.counts.cancelled),
      rejected: rate(counts.rejected, prev?.counts.rejected),
      eventsIn: rate(totals.eventsIn, prev?.eventsIn),
      eventsOut: rate(totals.eventsOut, prev?.eventsOut),
      queueWaitP50Us: percentile(waits, before, taken, 0.5),
      queueWaitP99Us: percentile(waits, before, taken, 0.99),
      backpressureWaits,
      scanned,
      ...(task && { task: { inFlight: task.inFlight, retries: rate(task.retries, prev?.retries), skipped: task.skipped } }),
      ...(threads && { threads }),
      oldest,
      mostBuffered,
    };
  }
}

/** A limiter's limits, mode and keying, as a row shows them. */
export type LimiterLimits = Omit<LimiterDescription, 'kind'>;

/** The description without its kind (the row has its own). */
function limitsOf(d: LimiterDescription): LimiterLimits {
  return {
    ...(d.concurrency !== undefined && { concurrency: d.concurrency }),
    ...(d.rate !== undefined && { rate: d.rate }),
    mode: d.mode,
    keyed: d.keyed,
  };
}

/** A finite number, or NaN (an answer that is not figures). */
const figure = (value: unknown): number => (typeof value === 'number' && Number.isFinite(value) ? value : NaN);

/** Keys a limiter's row lists (`waitingKeys`). */
const WAITING_KEYS = 5;

/** One limiter's state across samples: its name and description (read once), and its totals at the previous sample. */
class LimiterWatch {
  readonly name: string;
  readonly kind: LimiterKind;
  readonly #limiter: Limiter<unknown>;
  readonly #describe: (() => LimiterDescription) | undefined;
  #previous: { at: number; admitted: number; rejected: number } | undefined;

  readonly #showKeys: boolean;

  constructor(limiter: Limiter<unknown>, name: string, showKeys: boolean) {
    this.#limiter = limiter;
    this.#showKeys = showKeys;
    // (Another make's limiter may have any name: shown cut, as a function's.)
    this.name = shownName(name);
    // The package's limiters describe themselves; any other object is 'other' (so is one whose description cannot
    // be read: only the package's own answers are trusted to be one).
    let kind: LimiterKind = 'other';
    let describe: (() => LimiterDescription) | undefined;
    try {
      const method = (limiter as { [kDescribe]?: unknown })[kDescribe];
      if (typeof method === 'function') {
        const own = method.bind(limiter) as () => LimiterDescription;
        const k = own().kind;
        if (k === 'in-process' || k === 'redis' || k === 'postgres') [kind, describe] = [k, own];
      }
    } catch {
      // (A hostile getter or method: shown as 'other', its figures only.)
    }
    this.kind = kind;
    this.#describe = describe;
  }

  /**
   * Its row now. `stats()` is synchronous on both limiters of the package (a Redis limiter's reads what this
   * process knows, as of its last call to Redis: it never waits for Redis); one that throws, or answers something
   * that is not figures, is a row saying so, and the rest of the sample goes on.
   */
  /** The keys waiting longest, if the limiter says (`waitingKeys`), their names hidden unless `showKeys`. */
  #waitingKeys(): LimiterSample['waitingKeys'] {
    const method = (this.#limiter as { waitingKeys?: unknown }).waitingKeys;
    if (typeof method !== 'function') return [];
    const listed: unknown = method.call(this.#limiter, WAITING_KEYS);
    if (!Array.isArray(listed)) return [];
    return listed
      .slice(0, WAITING_KEYS)
      .map((k: { key?: unknown; waiting?: unknown; held?: unknown; oldestWaitMs?: unknown }) => ({
        key: this.#showKeys ? cutText(String(k.key), MAX_LABEL) : '…',
        waiting: figure(k.waiting),
        held: figure(k.held),
        oldestWaitMs: figure(k.oldestWaitMs),
      }));
  }

  sample(now: number): LimiterSample | LimiterFailure {
    let row: LimiterSample;
    try {
      const s = this.#limiter.stats() as LimiterStats & {
        fleet?: { processes: number; admitted: number; rejected: number };
        lost?: number;
        redisDown?: boolean;
        postgresDown?: boolean;
      };
      const prev = this.#previous;
      const seconds = prev === undefined ? 0 : Math.max(1e-3, (now - prev.at) / 1000);
      const rate = (value: number, before: number | undefined) =>
        prev === undefined || before === undefined ? 0 : Math.max(0, value - before) / seconds;
      const admitted = figure(s.admitted);
      const rejected = figure(s.rejected);
      row = {
        name: this.name,
        kind: this.kind,
        ...(this.#describe !== undefined && { limits: limitsOf(this.#describe()) }),
        inUse: figure(s.inUse),
        waiting: figure(s.waiting),
        admitted,
        rejected,
        admittedPerSec: rate(admitted, prev?.admitted),
        rejectedPerSec: rate(rejected, prev?.rejected),
        rate: s.rate === undefined ? null : figure(s.rate),
        waitP50Ms: figure(s.waitedMs.p50),
        waitP99Ms: figure(s.waitedMs.p99),
        keys: figure(s.keys),
        oldestWaitMs: s.oldestWaitMs === undefined ? null : figure(s.oldestWaitMs),
        waitingKeys: this.#waitingKeys(),
        ...((this.kind === 'redis' || this.kind === 'postgres') && {
          [this.kind]: {
            down: (this.kind === 'redis' ? s.redisDown : s.postgresDown) === true,
            processes: figure(s.fleet?.processes),
            fleetAdmitted: figure(s.fleet?.admitted),
            fleetRejected: figure(s.fleet?.rejected),
            lost: figure(s.lost),
          },
        }),
      };
    } catch (error) {
      return { name: this.name, kind: this.kind, error: codeOf(error) };
    }
    const figures = [row.inUse, row.waiting, row.admitted, row.rejected, row.waitP50Ms, row.waitP99Ms, row.keys, row.rate ?? 0];
    if (figures.some(Number.isNaN))
      return { name: this.name, kind: this.kind, error: invalidReturn(`${this.name}: stats() did not answer figures`).code };
    this.#previous = { at: now, admitted: row.admitted, rejected: row.rejected };
    return row;
  }
}

/** Samples functions and workers; `sample()` once per interval (a dashboard's feed, while a page is open). */
export class Sampler {
  readonly #fns: FnWatch[];
  readonly #workers: Worker[];
  readonly #limiters: LimiterWatch[];
  readonly #scan: number;
  readonly #showValues: boolean;

  readonly #fleet: string | undefined;

  /** Starts listing the functions' open streams (from now on). */
  constructor(
    fns: readonly AnyFn[],
    workers: readonly Worker[],
    scan: number,
    showValues: boolean,
    showKeys: boolean,
    fleet?: string,
    limiters: readonly { limiter: Limiter<unknown>; name: string }[] = [],
  ) {
    const partitionsOf = new Map<unknown, number>();
    for (const w of workers) {
      const serves = (w as unknown as { [kServes](): { fn: unknown; partitions: number } })[kServes]();
      partitionsOf.set(serves.fn, serves.partitions);
    }
    this.#fns = fns.map((fn) => new FnWatch(fn, { showKeys, partitions: partitionsOf.get(fn) }));
    this.#fleet = fleet;
    this.#workers = [...workers];
    this.#limiters = limiters.map(({ limiter, name }) => new LimiterWatch(limiter, name, showKeys));
    this.#scan = scan;
    this.#showValues = showValues;
  }

  /** The functions' lists, for `releaseLists` once the dashboard is done with them. */
  get lists(): StreamList[] {
    return this.#fns.map((w) => w.list);
  }

  sample(now = Date.now()): Sample {
    const functions = this.#fns.map((w) => w.sample(now, this.#scan));
    const workers = this.#workers.map((w): WorkerSample => {
      const s = w.stats();
      return {
        name: shownName(w.name),
        id: w.id,
        backend: w.backend,
        owned: s.owned,
        lag: s.lag,
        partitionLag: s.partitionLag,
        sessions: s.sessions,
        held: s.held,
        waitingKeys: s.waitingKeys,
        buffered: s.buffered,
        replayed: s.replayed,
        replayedSessions: s.replayedSessions,
        fenced: s.fenced,
        lost: s.lost,
        errors: s.errors,
        roundTripP99Ms: s.roundTrip.p99,
        version: s.version,
        superseded: s.superseded,
        sessionsByVersion: s.sessionsByVersion,
      };
    });
    const errors = this.#fns
      .flatMap((w) =>
        w.list.failures.map((f): ErrorRow => ({
          at: f.at,
          fn: w.name,
          id: f.id,
          code: codeOf(f.error),
          ...(this.#showValues && { message: messageOf(f.error) }),
        })),
      )
      .sort((a, b) => b.at - a.at)
      .slice(0, ERRORS);
    const limiters = this.#limiters.map((l) => l.sample(now));
    return {
      at: now,
      functions,
      workers,
      redis: workers,
      limiters,
      errors,
      ...(this.#fleet !== undefined && { fleet: this.#fleet }),
    };
  }

  /** One listed stream of the function shown as `fn`, now; undefined when it is not listed (finished, collected, unknown). */
  stream(fn: string, id: string): (StreamRow & { fn: string }) | undefined {
    for (const w of this.#fns) {
      if (w.name !== fn) continue;
      const s = w.list.get(id);
      if (s !== undefined) return { fn, ...row(s, Date.now(), w.labels) };
    }
    return undefined;
  }
}

/**
 * Gives back lists a dashboard took (`kWatch`): a function no other dashboard shows then lists no new stream. Each
 * list is given back once per dashboard (`close()`, or the dashboard's collection if it was never closed).
 */
export function releaseLists(lists: readonly StreamList[]): void {
  for (const list of lists) {
    // A function of an older copy of the package has lists without `release`: they stay, as they did there.
    const release = (list as { release?: unknown }).release;
    if (typeof release === 'function') release.call(list);
  }
}

/** An error's message, bounded (it may hold values: shown only with `showValues`). */
function messageOf(error: unknown): string {
  let message: string;
  try {
    message = error instanceof Error ? String(error.message) : String(error);
  } catch {
    message = `(${typeof error} that cannot be shown as text)`;
  }
  return message.length > 500 ? `${message.slice(0, 500)}…` : message;
}
