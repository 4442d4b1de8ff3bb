// Round-trip times of the calls a worker makes to its log, for its metrics:
// a cumulative histogram (for Prometheus) and the most recent calls (for
// exact percentiles in stats()). Timed around the PartitionLog, so any
// transport gets them; the time includes the worker's own event-loop delay,
// as a handler waiting on the call would see it.
import type { Commit, CommitResult, Lease, PartitionLog, ReadResult, SessionOpening } from '../common/transport';
import type { WorkerAdvert } from '../rules/versions';
import { FencedError } from '../../errors';

/** A worker's round-trip totals, for the Prometheus export (a registered symbol: any copy of the package finds it). */
export const kRoundTrips = Symbol.for('velo-stream.redis.roundTrips');
/** `worker[kServes]()`: the stream function a worker runs and its partition count (a dashboard labels its sessions). */
export const kServes = Symbol.for('velo-stream.redis.serves');
/** A worker's renewal lateness totals, in the same shape (microseconds late). */
export const kRenewalLateness = Symbol.for('velo-stream.redis.renewalLateness');

/** Histogram bounds, microseconds: 50 us to 10 s. */
export const ROUND_TRIP_BOUNDS_US = [
  50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000,
];
/** Calls kept for the percentiles: enough for a p99 that is not just the maximum. */
const RECENT = 1024;

/** Round trips so far, as the Prometheus export reads them (internal). */
export interface RoundTripTotals {
  /** Cumulative counts at `ROUND_TRIP_BOUNDS_US`, in order. */
  readonly buckets: readonly number[];
  readonly count: number;
  readonly sumUs: number;
}

export class RoundTrips {
  readonly #buckets = new Array<number>(ROUND_TRIP_BOUNDS_US.length).fill(0);
  #count = 0;
  #sumUs = 0;
  readonly #recent = new Float64Array(RECENT);

  record(us: number): void {
    this.#recent[this.#count % RECENT] = us;
    this.#count++;
    this.#sumUs += us;
    for (let i = ROUND_TRIP_BOUNDS_US.length - 1; i >= 0 && us <= ROUND_TRIP_BOUNDS_US[i]; i--) this.#buckets[i]++;
  }

  totals(): RoundTripTotals {
    return { buckets: [...this.#buckets], count: this.#count, sumUs: this.#sumUs };
  }

  /** Nearest-rank percentiles of the last 1024 calls, ms (0 before the first). */
  percentiles(): { p50: number; p99: number; max: number } {
    const n = Math.min(this.#count, RECENT);
    if (n === 0) return { p50: 0, p99: 0, max: 0 };
    const sorted = this.#recent.slice(0, n).sort();
    const at = (q: number) => sorted[Math.max(0, Math.ceil(q * n) - 1)] / 1000;
    return { p50: at(0.5), p99: at(0.99), max: sorted[n - 1] / 1000 };
  }
}

/**
 * `log` with every call that is one request and its reply timed into `trips`: the blocking wake-up (`wait`,
 * whose time is waiting for entries), `interrupt` (often no request at all) and `close` are not. A call that failed without a reply from the server
 * (a lost connection, a timeout) is not a round trip either; a refusal by the lease check is. `reached` is told of
 * each round trip: the server could be reached (an outage's end, `Outage`).
 */
export function timedLog(log: PartitionLog, trips: RoundTrips, reached: () => void = () => {}): PartitionLog {
  async function timed<T>(call: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      const result = await call();
      trips.record((performance.now() - start) * 1000);
      reached();
      return result;
    } catch (error) {
      if (error instanceof FencedError) {
        trips.record((performance.now() - start) * 1000);
        reached();
      }
      throw error;
    }
  }
  return {
    partitions: log.partitions,
    heartbeat: (worker: string, ttl: number, extend?: boolean, advert?: WorkerAdvert) =>
      timed(() => log.heartbeat(worker, ttl, extend, advert)),
    leave: (worker: string) => timed(() => log.leave(worker)),
    acquire: (partition: number, worker: string, ttl: number, runs?: readonly string[], rescue?: boolean) =>
      timed(() => log.acquire(partition, worker, ttl, runs, rescue)),
    renew: (lease: Lease, ttl: number) => timed(() => log.renew(lease, ttl)),
    release: (lease: Lease) => timed(() => log.release(lease)),
    read: (lease: Lease, from: string, count: number): Promise<ReadResult> => timed(() => log.read(lease, from, count)),
    entries: (lease: Lease, ids: readonly string[]) => timed(() => log.entries(lease, ids)),
    markClose: (lease: Lease, key: string, sid: string, reason?: string) => timed(() => log.markClose(lease, key, sid, reason)),
    trim: (lease: Lease) => timed(() => log.trim(lease)),
    trimOutputs: (lease: Lease, acked: boolean, maxLen: number) => timed(() => log.trimOutputs(lease, acked, maxLen)),
    snapshots: (lease: Lease) => timed(() => log.snapshots(lease)),
    journal: (lease: Lease) => timed(() => log.journal(lease)),
    openings: (lease: Lease) => timed(() => log.openings(lease)),
    marks: (lease: Lease, sids: readonly string[]) => timed(() => log.marks(lease, sids)),
    keyState: (partition: number, key: string) => timed(() => log.keyState(partition, key)),
    wake: (
      lease: Lease,
      key: string,
      sid: string,
      id: number,
      time: number,
      payload: Buffer | string,
      opening?: SessionOpening,
    ) => timed(() => log.wake(lease, key, sid, id, time, payload, opening)),
    commit: (lease: Lease, commit: Commit): Promise<CommitResult> => timed(() => log.commit(lease, commit)),
    lag: (partition: number) => timed(() => log.lag(partition)),
    pinned: (partition: number) => timed(() => log.pinned(partition)),
    wait: (positions: ReadonlyMap<number, string>, ms: number) => log.wait(positions, ms),
    interrupt: () => log.interrupt(),
    close: (wait) => log.close(wait),
  };
}
