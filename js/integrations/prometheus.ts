// velo-stream/prometheus: collectors for a prom-client registry.
//
// prom-client is an optional peer dependency: only this subpath needs it, and
// it is handed in (the registry), never imported by the core package.
import type { Registry } from 'prom-client';
import { describe, invalidReturn, invalidType, invalidValue } from '../errors';
import { readingOptions } from '../config';
import { kTotals, type Totals } from '../core/function';
import type { StreamFn } from '../types';
import { ROUND_TRIP_BOUNDS_US, type RoundTripTotals, kRenewalLateness, kRoundTrips } from '../durable/engine/metrics';
import type { Worker, WorkerStats } from '../durable/engine/worker';
import { type Collector, checkBuckets, checkLabelName, registerAll } from './prometheus-register';

/** Options of `registerStreamMetrics` (and `prefix` of `registerWorkerMetrics`). */
export interface PrometheusOptions {
  /** Prefix of every metric name. Default `velo_`. */
  prefix?: string;
  /** Queue-wait histogram bounds, seconds. Default 1 µs to 10 s. */
  buckets?: number[];
}

/** Any stream function, whatever its event and output types. */
export type AnyFn = StreamFn<never, unknown>;
type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

/** A Prometheus metric name: the prefix makes every name, so it must be one (or empty). */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/**
 * Checks the options of a register function: an options object with only `known` keys (a misspelt one would
 * be ignored), a prefix that makes valid metric names, and buckets that are finite, positive and strictly
 * increasing. Returns the prefix and the buckets (undefined when not given).
 */
function checkedOptions(opts: unknown, what: string, known: readonly string[]): { prefix: string; buckets?: number[] } {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw invalidType(`${what}: the "opts" argument must be an object. Received ${describe(opts)}`);
  }
  for (const key of Object.keys(opts)) {
    if (!known.includes(key)) throw invalidValue(`${what}: unknown option "${key}". Known options: ${known.join(', ')}`);
  }
  const { prefix = 'velo_', buckets } = opts as PrometheusOptions;
  if (typeof prefix !== 'string') throw invalidType(`${what}: opts.prefix must be a string. Received ${describe(prefix)}`);
  if (prefix !== '' && !METRIC_NAME.test(prefix)) {
    throw invalidValue(
      `${what}: opts.prefix must make valid Prometheus metric names ([a-zA-Z_:][a-zA-Z0-9_:]*). Received ${describe(prefix)}`,
    );
  }
  if (buckets === undefined) return { prefix };
  if (!Array.isArray(buckets) || buckets.length === 0) {
    throw invalidType(`${what}: opts.buckets must be a non-empty array of seconds. Received ${describe(buckets)}`);
  }
  checkBuckets(buckets, what);
  return { prefix, buckets: [...buckets] };
}

const DEFAULT_BUCKETS = [1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1, 5, 10];

/**
 * The functions of a list, each once. Refused: anything that is not a stream
 * function, and two different functions with one name (their series would
 * collide; the same function listed twice is one series). Errors are the
 * argument's (`TypeError` `ERR_INVALID_ARG_TYPE`/`ERR_INVALID_ARG_VALUE`) at
 * registration, and `ERR_INVALID_RETURN_VALUE` at a scrape.
 */
function distinct(fns: Iterable<unknown>, atScrape: boolean): AnyFn[] {
  const byName = new Map<string, AnyFn>();
  for (const f of fns) {
    if (typeof (f as { [kTotals]?: unknown } | null)?.[kTotals] !== 'function') {
      const message = `Every item of "fns" must be a stream function (from streamFn, pipe or sessions().fn). Received ${describe(f)}`;
      throw atScrape ? invalidReturn(message) : invalidType(message);
    }
    const fn = f as AnyFn;
    checkLabelName(fn.name, 'The stream function name', atScrape);
    const seen = byName.get(fn.name);
    if (seen === undefined) byName.set(fn.name, fn);
    else if (seen !== fn) {
      const message =
        `Two different stream functions are named "${fn.name}": their metric series would collide. ` +
        `Give each its own name (streamFn(handler, { name }), fn.sessions({ name }))`;
      throw atScrape ? invalidReturn(message) : invalidValue(message);
    }
  }
  return [...byName.values()];
}

/**
 * Registers, on `registry`, metrics of the stream functions that `fns` lists,
 * labelled `fn` by function name:
 * - `velo_streams_open` (gauge)
 * - `velo_streams_{opened,completed,failed,cancelled,rejected}_total`
 * - `velo_events_in_total`, `velo_events_out_total`
 * - `velo_queue_wait_seconds` (histogram: how long events waited from their send until the handler took them)
 * - task and batch stages: `velo_task_in_flight` (gauge), `velo_task_retries_total`,
 *   `velo_task_skipped_total` (counters), `velo_task_duration_seconds` (histogram of calls)
 *
 * `fns` is a list (any iterable), read once, now; or a function returning
 * one, called at every scrape (for functions made later). Names must be
 * distinct: two different functions with one name are refused with a
 * `TypeError`, `ERR_INVALID_ARG_VALUE` here, or `ERR_INVALID_RETURN_VALUE`
 * rejecting the scrape when the function returned them; they are never
 * exported as duplicate series. The same function listed twice is one series.
 *
 * A pipe's figures are its own streams' (events into its first stage, outputs
 * of its last, its first stage's queue waits), whatever else its stage
 * functions serve; each stage function's figures count all its streams.
 *
 * Values are read at scrape time from the core; nothing is added to the
 * per-event path.
 */
export function registerStreamMetrics(
  registry: Registry,
  fns: Iterable<AnyFn> | (() => Iterable<AnyFn>),
  opts: PrometheusOptions = {},
): void {
  // (Each argument read here, within a check that refuses one that cannot be read: a Proxy whose trap throws.)
  if (readingOptions('registry', () => registry === null || typeof registry?.registerMetric !== 'function')) {
    throw invalidType(`The "registry" argument must be a prom-client Registry. Received ${describe(registry)}`);
  }
  let list: () => AnyFn[];
  if (typeof fns === 'function') {
    list = () => {
      const listed: unknown = fns();
      if (listed === null || typeof (listed as Iterable<unknown>)?.[Symbol.iterator] !== 'function') {
        throw invalidReturn(`The "fns" function must return an iterable of stream functions. Received ${describe(listed)}`);
      }
      return distinct(listed as Iterable<unknown>, true);
    };
  } else if (readingOptions('fns', () => fns !== null && typeof fns?.[Symbol.iterator] === 'function')) {
    // (An iterator that throws is refused as an unreadable argument, ERR_INVALID_ARG_TYPE.)
    const fixed = readingOptions('fns', () => distinct(fns, false));
    list = () => fixed;
  } else {
    throw invalidType(
      `The "fns" argument must be an iterable of stream functions or a function returning one. Received ${describe(fns)}`,
    );
  }
  const checked = readingOptions('opts', () => checkedOptions(opts, 'registerStreamMetrics()', ['prefix', 'buckets']));
  const prefix = checked.prefix;
  const bounds = checked.buckets ?? DEFAULT_BUCKETS;
  const boundsUs = bounds.map((s) => Math.round(s * 1e6));

  // Registered together at the end: all of them, or none when the registry holds one of their names.
  const metrics: Collector[] = [];
  const metric = (name: string, help: string, type: 'gauge' | 'counter' | 'histogram', collect: () => Sample[]): void => {
    const full = prefix + name;
    metrics.push({
      name: full,
      help,
      type,
      aggregator: 'sum',
      // A throwing collect() becomes a rejected scrape, not a throw.
      get: () => new Promise((resolve) => resolve({ name: full, help, type, aggregator: 'sum', values: collect() })),
      reset: () => {},
    });
  };

  const perFn = (value: (f: AnyFn) => number) => () => list().map((f) => ({ labels: { fn: f.name }, value: value(f) }));
  metric(
    'streams_open',
    'Streams open now.',
    'gauge',
    perFn((f) => f.stats().open),
  );
  for (const key of ['opened', 'completed', 'failed', 'cancelled', 'rejected'] as const) {
    metric(
      `streams_${key}_total`,
      `Streams ${key}.`,
      'counter',
      perFn((f) => f.stats()[key]),
    );
  }
  const totals = (f: AnyFn): Totals => (f as unknown as { [kTotals](b: number[]): Totals })[kTotals](boundsUs);
  metric(
    'events_in_total',
    'Events accepted into input buffers.',
    'counter',
    perFn((f) => totals(f).eventsIn),
  );
  metric(
    'events_out_total',
    'Outputs yielded by handlers.',
    'counter',
    perFn((f) => totals(f).eventsOut),
  );
  const histogram = (f: AnyFn, name: string, h: Totals['queueWait']): Sample[] => [
    ...h.buckets.map(([, n], i) => ({
      labels: { fn: f.name, le: bounds[i] },
      value: n,
      metricName: `${prefix}${name}_bucket`,
    })),
    { labels: { fn: f.name, le: '+Inf' }, value: h.count, metricName: `${prefix}${name}_bucket` },
    { labels: { fn: f.name }, value: h.sumUs / 1e6, metricName: `${prefix}${name}_sum` },
    { labels: { fn: f.name }, value: h.count, metricName: `${prefix}${name}_count` },
  ];
  metric('queue_wait_seconds', 'Time events waited from their send until the handler took them.', 'histogram', () =>
    list().flatMap((f) => histogram(f, 'queue_wait_seconds', totals(f).queueWait)),
  );
  // Task and batch stages only: functions without task totals have no samples here.
  type TaskTotals = NonNullable<Totals['task']>;
  const perTask = (value: (t: TaskTotals) => number) => () =>
    list().flatMap((f) => {
      const task = totals(f).task;
      return task ? [{ labels: { fn: f.name }, value: value(task) }] : [];
    });
  metric(
    'task_in_flight',
    'Task stage calls in flight now (running or waiting for a retry).',
    'gauge',
    perTask((t) => t.inFlight),
  );
  metric(
    'task_retries_total',
    'Task stage retries scheduled.',
    'counter',
    perTask((t) => t.retries),
  );
  metric(
    'task_skipped_total',
    "Task stage items (or batches) dropped by onError: 'skip'.",
    'counter',
    perTask((t) => t.skipped),
  );
  metric('task_duration_seconds', 'Duration of task stage calls (each attempt).', 'histogram', () =>
    list().flatMap((f) => {
      const task = totals(f).task;
      return task ? histogram(f, 'task_duration_seconds', task.duration) : [];
    }),
  );
  registerAll(registry, metrics, 'registerStreamMetrics()');
}

/**
 * Registers, on `registry`, metrics of the workers that `workers` lists (Redis or Postgres ones, mixed as needed),
 * labelled `backend` (`worker.backend`: `redis` or `postgres`), `fn` (the function's name) and `worker` (its id):
 * - `velo_worker_partitions_owned`, `velo_worker_sessions`, `velo_worker_held_events`, `velo_worker_waiting_keys`,
 *   `velo_worker_buffered_events`, `velo_worker_undelivered_outputs` (gauges)
 * - `velo_worker_lag` (gauge, also labelled `partition`: entries of an owned partition not yet read, as measured at
 *   the last lease renewal) and `velo_worker_pinned_age_seconds` (gauge, also labelled `partition`: age of its
 *   oldest pending input entry, which trimming keeps; measured with `lag`)
 * - `velo_worker_session_slots`, `velo_worker_slot_waiting_keys` (gauges), `velo_worker_slot_waits_total`
 * - `velo_worker_permit_waiting_sessions`, `velo_worker_permit_waiting_steps`, `velo_worker_permits_held` (gauges),
 *   `velo_worker_permit_failures_total`
 * - `velo_worker_sessions_by_version` (gauge, also labelled `version`), `velo_worker_superseded` (gauge),
 *   `velo_worker_refused_versions_total`, `velo_worker_migrated_sessions_total`
 * - counters `velo_worker_replayed_sessions_total`, `velo_worker_replayed_entries_total`, `velo_worker_fenced_total`,
 *   `velo_worker_leases_{acquired,lost,released}_total`, `velo_worker_outputs_total`, `velo_worker_trimmed_total`,
 *   `velo_worker_trimmed_outputs_total`, `velo_worker_errors_total`, `velo_worker_capped_sessions_total`,
 *   `velo_worker_handed_on_total`, `velo_worker_outputs_delivered_total`, `velo_worker_replay_diverged_total`,
 *   `velo_worker_checkpoints_total`, `velo_worker_restored_sessions_total`, `velo_worker_wakeups_total`,
 *   `velo_worker_debounced_total`, `velo_worker_kept_states_total`, `velo_worker_key_state_starts_total`
 * - histograms `velo_worker_round_trip_seconds` (the worker's calls to its backend, wake-up waits excluded) and
 *   `velo_worker_renewal_lateness_seconds` (how late each lease renewal succeeded)
 *
 * `workers` is a list read once, now, or a function returning one, called at every scrape. A worker listed
 * twice is one series; two workers with one `(name, id)` are refused like two functions with one name
 * (`ERR_INVALID_ARG_VALUE` here, `ERR_INVALID_RETURN_VALUE` at a scrape). Figures are read from the workers at
 * scrape time: a scrape sends nothing to the backend.
 */
export function registerWorkerMetrics(
  registry: Registry,
  workers: Iterable<Worker> | (() => Iterable<Worker>),
  opts: Pick<PrometheusOptions, 'prefix'> = {},
): void {
  registerWorkers(registry, workers, opts, 'registerWorkerMetrics()', false);
}

/**
 * `registerWorkerMetrics`, and each of its series again under its name before the tier had one name: `velo_redis_*`
 * for `velo_worker_*`, labelled `fn` and `worker` only (no `backend`: a Postgres worker's included, as before), their
 * help text starting `Deprecated`. `velo_worker_migrated_sessions_total` has no old name.
 * @deprecated Use `registerWorkerMetrics`, and `velo_worker_*` in queries; the `velo_redis_*` names and this
 * function go in the next major release.
 */
export function registerRedisWorkerMetrics(
  registry: Registry,
  workers: Iterable<Worker> | (() => Iterable<Worker>),
  opts: Pick<PrometheusOptions, 'prefix'> = {},
): void {
  registerWorkers(registry, workers, opts, 'registerRedisWorkerMetrics()', true);
}

/** A worker's labels: `backend`, `fn`, `worker` (the old series: `fn` and `worker` only). */
type Labels = Record<string, string>;

/** One worker series: its name after `<prefix>worker_`, its help and type, and a worker's samples. */
interface WorkerSeries {
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter' | 'histogram';
  /** One worker's samples, with its `labels`; `full` is the series' full name (a histogram's samples are named by it). */
  readonly samples: (w: Worker, labels: Labels, full: string) => Sample[];
  /** It had a `<prefix>redis_` name before: `registerRedisWorkerMetrics` emits it under that one too. */
  readonly old: boolean;
}

function registerWorkers(registry: Registry, workers: unknown, opts: unknown, what: string, withOldNames: boolean): void {
  if (registry === null || typeof registry?.registerMetric !== 'function') {
    throw invalidType(`The "registry" argument must be a prom-client Registry. Received ${describe(registry)}`);
  }
  const check = (listed: unknown, atScrape: boolean): Worker[] => {
    if (listed === null || typeof (listed as Iterable<unknown>)?.[Symbol.iterator] !== 'function') {
      const message = `The "workers" argument must be an iterable of workers or a function returning one. Received ${describe(listed)}`;
      throw atScrape ? invalidReturn(message) : invalidType(message);
    }
    const byId = new Map<string, Worker>();
    for (const w of listed as Iterable<unknown>) {
      if (typeof (w as { [kRoundTrips]?: unknown } | null)?.[kRoundTrips] !== 'function') {
        const message = `Every item of "workers" must be a worker (from sessionWorker). Received ${describe(w)}`;
        throw atScrape ? invalidReturn(message) : invalidType(message);
      }
      const worker = w as Worker;
      const id = `${worker.name}\n${worker.id}`;
      const seen = byId.get(id);
      if (seen === undefined) byId.set(id, worker);
      else if (seen !== worker) {
        const message = `Two different workers of "${worker.name}" have the id "${worker.id}": their metric series would collide`;
        throw atScrape ? invalidReturn(message) : invalidValue(message);
      }
    }
    return [...byId.values()];
  };
  let list: () => Worker[];
  if (typeof workers === 'function') list = () => check((workers as () => unknown)(), true);
  else {
    const fixed = check(workers, false);
    list = () => fixed;
  }
  const { prefix } = checkedOptions(opts, what, ['prefix']);
  const metrics: Collector[] = [];
  const register = (full: string, help: string, series: WorkerSeries, labels: (w: Worker) => Labels): void => {
    const { type } = series;
    const values = () => list().flatMap((w) => series.samples(w, labels(w), full));
    const get = () => new Promise((resolve) => resolve({ name: full, help, type, aggregator: 'sum', values: values() }));
    metrics.push({ name: full, help, type, aggregator: 'sum', get, reset: () => {} });
  };
  for (const series of WORKER_SERIES) {
    const full = `${prefix}worker_${series.name}`;
    register(full, series.help, series, (w) => ({ backend: w.backend, fn: w.name, worker: w.id }));
    if (withOldNames && series.old) {
      const help = `Deprecated (removed in the next major release): use ${full}, labelled backend. ${series.help}`;
      register(`${prefix}redis_${series.name}`, help, series, (w) => ({ fn: w.name, worker: w.id }));
    }
  }
  registerAll(registry, metrics, what);
}

/** A series of one figure per worker, read from `stats()` (one call per worker per series: no I/O). */
const perWorker = (
  name: string,
  help: string,
  type: 'gauge' | 'counter',
  value: (s: WorkerStats) => number,
  old = true,
): WorkerSeries => ({ name, help, type, old, samples: (w, labels) => [{ labels, value: value(w.stats()) }] });

/** A gauge per worker and partition (or version): `label` names the key of the record `values` reads. */
const perKey = (name: string, help: string, label: string, values: (s: WorkerStats) => Record<string, number>): WorkerSeries => ({
  name,
  help,
  type: 'gauge',
  old: true,
  samples: (w, labels) => Object.entries(values(w.stats())).map(([k, value]) => ({ labels: { ...labels, [label]: k }, value })),
});

type Timed = Worker & { [kRoundTrips](): RoundTripTotals; [kRenewalLateness](): RoundTripTotals };
/** A histogram per worker, of fixed bounds (`ROUND_TRIP_BOUNDS_US`). */
const histogram = (name: string, help: string, totals: (w: Timed) => RoundTripTotals): WorkerSeries => ({
  name,
  help,
  type: 'histogram',
  old: true,
  samples: (w, labels, full) => {
    const t = totals(w as Timed);
    return [
      ...t.buckets.map((n, i) => ({
        labels: { ...labels, le: ROUND_TRIP_BOUNDS_US[i] / 1e6 },
        value: n,
        metricName: `${full}_bucket`,
      })),
      { labels: { ...labels, le: '+Inf' }, value: t.count, metricName: `${full}_bucket` },
      { labels, value: t.sumUs / 1e6, metricName: `${full}_sum` },
      { labels, value: t.count, metricName: `${full}_count` },
    ];
  },
});

/** Every worker series, in the order they are registered. Help texts name no backend: they serve both. */
const WORKER_SERIES: readonly WorkerSeries[] = [
  perWorker('partitions_owned', 'Partitions this worker holds the lease of.', 'gauge', (s) => s.owned.length),
  perWorker('sessions', 'Live sessions on this worker.', 'gauge', (s) => s.sessions),
  perWorker('held_events', 'Events read but waiting for a session slot (maxConcurrent).', 'gauge', (s) => s.held),
  perWorker(
    'waiting_keys',
    'Keys whose events wait for a session slot in the log (past the bound of held events), read again once sessions end.',
    'gauge',
    (s) => s.waitingKeys,
  ),
  perWorker(
    'permit_waiting_sessions',
    "Keys whose next session waits for its limiter permits (the worker's limiter.session).",
    'gauge',
    (s) => s.permits.waitingSessions,
  ),
  perWorker(
    'permit_waiting_steps',
    "Sessions whose handler waits for a step's limiter permits (the worker's limiter.step).",
    'gauge',
    (s) => s.permits.waitingSteps,
  ),
  perWorker(
    'permits_held',
    "Limiter grants held by this worker's sessions and their handlers' steps.",
    'gauge',
    (s) => s.permits.held,
  ),
  perWorker(
    'buffered_events',
    "Events read from the log that sessions' handlers have not taken yet (bounded by maxBufferedEvents).",
    'gauge',
    (s) => s.buffered,
  ),
  perWorker(
    'undelivered_outputs',
    'Outputs committed and not yet delivered to the local onOutput (bounded by maxUndelivered).',
    'gauge',
    (s) => s.undelivered,
  ),
  perWorker('session_slots', "Live sessions this worker runs at most (fn's maxConcurrent).", 'gauge', (s) => s.slots.max),
  perWorker(
    'slot_waiting_keys',
    'Keys that need a new session and wait for a session slot (maxConcurrent): their events are late until sessions end.',
    'gauge',
    (s) => s.slots.waitingKeys,
  ),
  perKey(
    'sessions_by_version',
    "Live sessions of this worker per handler version they run on (the worker's version; '' for sessions opened with none).",
    'version',
    (s) => s.sessionsByVersion,
  ),
  perWorker(
    'superseded',
    'Whether this worker is superseded by a live worker of a newer version (1: it hands its partitions over).',
    'gauge',
    (s) => (s.superseded ? 1 : 0),
  ),
  perKey(
    'lag',
    'Entries of an owned partition not yet read by its owner (at the last lease renewal).',
    'partition',
    (s) => s.partitionLag,
  ),
  perKey(
    'pinned_age_seconds',
    'Age of the oldest pending input entry of an owned partition (a live session needs it: the log is not trimmed past it), at the last lease renewal.',
    'partition',
    (s) => Object.fromEntries(Object.entries(s.partitionPinnedAge).map(([p, ms]) => [p, ms / 1000])),
  ),
  ...(
    [
      ['replayed_sessions_total', 'Sessions rebuilt by replaying pending entries after a takeover.', (s) => s.replayedSessions],
      ['replayed_entries_total', 'Pending entries replayed after a takeover.', (s) => s.replayed],
      ['fenced_total', 'Reads and writes the backend refused because the lease was gone (a zombie owner).', (s) => s.fenced],
      ['leases_acquired_total', 'Partition leases taken.', (s) => s.acquired],
      ['leases_lost_total', 'Partitions lost to another worker (fenced, or the lease ran out).', (s) => s.lost],
      ['leases_released_total', 'Partitions handed back (fair share, close()).', (s) => s.released],
      ['outputs_total', 'Outputs committed (before deduplication).', (s) => s.outputs],
      ['trimmed_total', 'Input entries trimmed away.', (s) => s.trimmed],
      ['trimmed_outputs_total', 'Outputs trimmed away (outputRetention, outputMaxLen).', (s) => s.trimmedOutputs],
      [
        'checkpoints_total',
        'Session checkpoints committed (ctx.checkpoint; the latest of a session per commit).',
        (s) => s.checkpoints,
      ],
      ['restored_sessions_total', 'Sessions started again from their checkpoint after a takeover.', (s) => s.restored],
      ['wakeups_total', "Timers' wake-ups written into the input (ctx.wakeAt).", (s) => s.wakeups],
      ['debounced_total', 'Events debounce dropped (collapsed into a later one, or within a quiet period).', (s) => s.debounced],
      ['kept_states_total', "Keys' states kept by the commits that ended their sessions (keyState).", (s) => s.keptStates],
      ['key_state_starts_total', "Sessions that started from their key's kept state (keyState).", (s) => s.keyStateStarts],
      ['errors_total', 'Errors the worker recovered from (passed to onError).', (s) => s.errors],
      [
        'slot_waits_total',
        'Keys that began to wait for a session slot (maxConcurrent taken; ERR_VELO_SESSION_SLOTS).',
        (s) => s.slots.waits,
      ],
      [
        'refused_versions_total',
        'Partitions not taken because a live session there runs a version this worker does not run (each attempt).',
        (s) => s.refusedVersions,
      ],
      ['capped_sessions_total', 'Sessions ended by maxSessionEvents or maxSessionAge.', (s) => s.capped],
      ['handed_on_total', "Events a session's handler never took, given to the key's next session.", (s) => s.handedOn],
      ['outputs_delivered_total', 'Outputs passed to the local onOutput.', (s) => s.delivered],
      ['replay_diverged_total', 'Replayed outputs that differ from those committed before (checkReplay).', (s) => s.diverged],
      [
        'permit_failures_total',
        'Limiter acquires for sessions or steps that failed (each made again later; ERR_VELO_SESSION_PERMIT).',
        (s) => s.permits.failures,
      ],
    ] as [string, string, (s: WorkerStats) => number][]
  ).map(([name, help, value]) => perWorker(name, help, 'counter', value)),
  perWorker(
    'migrated_sessions_total',
    "Sessions adopted from another version's checkpoint (the worker's migrate); a replay that adopts one again counts it again.",
    'counter',
    (s) => s.migrated,
    false,
  ),
  histogram('round_trip_seconds', "Round-trip time of the worker's calls to its backend (wake-up waits excluded).", (w) =>
    w[kRoundTrips](),
  ),
  histogram(
    'renewal_lateness_seconds',
    'How late lease renewals succeeded, past leaseTtl/3 after the previous one (a lease is lost at two thirds of leaseTtl).',
    (w) => w[kRenewalLateness](),
  ),
];
export { registerLimiterMetrics, type LimiterMetricsOptions } from './prometheus-limiters';
