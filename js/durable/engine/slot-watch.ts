// Keys that need a new session while every session slot of the worker (`fn`'s `maxConcurrent`) is taken: their
// entries wait, in log order, until sessions end (held-entries.ts). Not an error, but a cliff when it lasts (a slot
// frees only when a session ends, after its idle time): the worker counts them (`stats().slots`, the Prometheus
// `velo_redis_slot_*` series) and says so through `onError` (`ERR_VELO_SESSION_SLOTS`), at most once a minute.
import { slotsFullError } from '../../errors';

/** Least time between two reports, ms on the worker's clock. */
export const SLOTS_REPORT_MS = 60_000;

/** A worker's count of keys waiting for a session slot, all partitions (one per worker; the partitions' `WaitingKeys` add to it). */
export class SlotReport {
  /** Keys waiting for a slot now. */
  waiting = 0;
  /** Keys that began to wait for a slot, since the start. */
  waits = 0;
  /** Reports made. */
  reports = 0;
  #reportedAt = -Infinity;

  constructor(
    /** The slots (`maxConcurrent`). */
    readonly slots: () => number,
    readonly now: () => number,
    readonly report: (error: unknown) => void,
  ) {}

  /** A key began to wait: counted, and reported unless a report was made within `SLOTS_REPORT_MS`. */
  began(): void {
    this.waiting++;
    this.waits++;
    const now = this.now();
    if (now - this.#reportedAt < SLOTS_REPORT_MS) return;
    this.#reportedAt = now;
    this.reports++;
    this.report(slotsFullError(this.slots(), this.waiting));
  }

  /** `n` keys stopped waiting (a session opened for each, or their partition stopped). */
  ended(n: number): void {
    this.waiting -= n;
  }
}

/** A partition's keys waiting for a session slot, as its deliveries show them (held-entries.ts). */
export class WaitingKeys {
  readonly #keys = new Set<string>();

  constructor(readonly report: SlotReport | undefined) {}

  /** An entry of `key` needed a new session and found no slot: the key waits (counted once until it goes on). */
  noSlot(key: string): void {
    if (this.report === undefined || this.#keys.has(key)) return;
    this.#keys.add(key);
    this.report.began();
  }

  /** An entry of `key` went to a session, or its key now waits for permits instead: its wait for a slot is over. */
  wentOn(key: string): void {
    if (this.#keys.size > 0 && this.#keys.delete(key)) this.report?.ended(1);
  }

  /** The partition stops: its keys wait no more here. */
  clear(): void {
    this.report?.ended(this.#keys.size);
    this.#keys.clear();
  }
}
