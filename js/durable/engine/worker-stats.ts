// A worker's figures (`WorkerStats`) read from what it holds: its partitions' runs, its counters, its live
// sessions, its delivery, permits and slots, and its timings. One reading for every host of partition runs: the
// worker (worker.ts, `redisWorker` and `postgresWorker`) and the test worker's simulated processes
// (testing/sim-process.ts), so a figure means the same on both.
import type { PartitionHost } from './partition-host';
import type { PartitionRun } from './partition-run';
import type { RoundTrips } from './metrics';
import type { WorkerStats } from './worker-types';

/**
 * A renewal of `run`'s lease, sent at `sent`, was answered held at `now` (both on its host's clock, ms): records how
 * late it came (microseconds past a third of `ttl` after the last one) and moves the lease's times on.
 */
export function renewed<I, O>(run: PartitionRun<I, O>, renewals: RoundTrips, sent: number, now: number, ttl: number): void {
  renewals.record(Math.max(0, now - run.renewedAt - ttl / 3) * 1000);
  run.renewedAt = sent;
  run.validUntil = sent + ttl;
}

/** What the figures are read from: a host of partition runs, and whether it is superseded now. */
export type StatsHost<I, O> = PartitionHost<I, O> & { readonly superseded: boolean };

/**
 * The figures of `host` now: `runs` its partitions' runs (by partition), `trips` the round trips of its calls to
 * the log, `renewals` how late its lease renewals were (microseconds, each). Reconciles each run's buffered
 * events first (a handler's take is otherwise noticed at its next output or end).
 */
export function workerStats<I, O>(
  host: StatsHost<I, O>,
  runs: ReadonlyMap<number, PartitionRun<I, O>>,
  trips: RoundTrips,
  renewalLateness: RoundTrips,
): WorkerStats {
  let held = 0;
  let waitingKeys = 0;
  let lag = 0;
  let buffered = 0;
  const partitionLag: Record<number, number> = {};
  const partitionPinnedAge: Record<number, number> = {};
  let pinnedAge = 0;
  const partitionBuffered: Record<number, number> = {};
  const owned = [...runs.keys()].sort((a, b) => a - b);
  const byVersion = new Map<string, number>();
  for (const p of owned) {
    const run = runs.get(p) as PartitionRun<I, O>;
    for (const s of run.sessions.values()) byVersion.set(s.opening.version, (byVersion.get(s.opening.version) ?? 0) + 1);
    held += run.heldCount;
    waitingKeys += run.spilledKeys;
    lag += run.lag;
    partitionLag[p] = run.lag;
    partitionPinnedAge[p] = run.pinned;
    pinnedAge = Math.max(pinnedAge, run.pinned);
    run.reconcile();
    buffered += run.buffered;
    partitionBuffered[p] = run.buffered;
  }
  const roundTrip = { count: trips.totals().count, ...trips.percentiles() };
  const late = renewalLateness.percentiles();
  const renewals = { count: renewalLateness.totals().count, lateP50: late.p50, lateP99: late.p99, lateMax: late.max };
  const p = host.permits;
  const permits = {
    waitingSessions: p?.waitingSessions ?? 0,
    waitingSteps: p?.waitingSteps ?? 0,
    held: p?.held ?? 0,
    failures: p?.failures ?? 0,
  };
  return {
    owned,
    lag,
    partitionLag,
    pinnedAge,
    partitionPinnedAge,
    sessions: host.live,
    held,
    waitingKeys,
    buffered,
    partitionBuffered,
    ...host.counters,
    version: host.version,
    superseded: host.superseded,
    // (Own properties: a version may be named `__proto__`.)
    sessionsByVersion: Object.fromEntries(byVersion),
    delivered: host.delivery?.delivered ?? 0,
    undelivered: host.delivery?.undelivered ?? 0,
    roundTrip,
    renewals,
    permits,
    slots: {
      max: host.fn.config.maxConcurrent,
      waitingKeys: host.slots?.waiting ?? 0,
      waits: host.slots?.waits ?? 0,
    },
  };
}
