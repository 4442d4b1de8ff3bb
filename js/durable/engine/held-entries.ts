// A partition's entries that cannot go to a session yet: held in memory, per key in log order, while their key
// waits for a session slot (or behind entries an ended session left); past a bound, left in Redis' pending list
// and read again by id (`reread`). Keys go on in log order; the partition is never stopped being read for them.
import type { EventBudget } from './budget';
import { idBefore, logOrder } from '../common/log-ids';
import type { PartitionHost, RunFlags } from './partition-host';
import type { InputEntry, Lease } from '../common/transport';
import { WaitingKeys } from './slot-watch';

/**
 * Entries held in memory for a session slot per partition, in reads (readCount): past it, they are left in the
 * pending list and read again by id (`reread`). A field, so that the library's own tests can make the simulator's
 * small runs go past it.
 */
export const heldBounds = { batches: 64 };
/** Held entries delivered between two turns of the event loop given by `drainHeld`. */
const DRAIN_STEPS_PER_TURN = 256;
/** Entries per read of the pending list again (`reread`), at least: bounded by the partition's share. */
const REREAD_COUNT = 1024;

/** What became of an entry given to `HeldHost.deliver`. */
export const enum Delivery {
  /** Sent to its session (or consumed: a marker, a trimmed entry). */
  Done,
  /** It needs a new session, and `maxConcurrent` sessions are open. */
  NoSlot,
  /** An earlier entry of its key must be delivered first. */
  Behind,
  /**
   * Its key waits for a limiter's permits (its next session's, or its live session's step's): held; the key is
   * drained again once they are granted, and other keys go on meanwhile.
   */
  Waits,
}

/** How `HeldEntries.#drainKey` left a key's held entries. */
const enum KeyDrain {
  /** None left, or (only keys with a live session) its session is gone. */
  Done,
  /** One needs a session slot, and none is free. */
  NoSlot,
  /** The partition stops. */
  Stopped,
  /** Its key waits for a limiter's permits (`Delivery.Waits`): the next key goes on. */
  Waits,
}

/** What became of an entry read again from the pending list (`HeldEntries.#redeliver`). */
const enum Redelivery {
  /** Delivered or held. */
  Done,
  /** Held entries are at their bound: it waits on in the pending list. */
  NoRoom,
  /** As NoRoom, and it needed a new session while `maxConcurrent` sessions are open. */
  NoRoomNoSlot,
}

/**
 * A key whose entries were read past the bound of held entries and not kept: they wait in the pending list,
 * and every entry of the key read after them joins them (its later entries must not pass them). `after` is
 * the last of the key's entries handled; those after it, up to `last`, are read again by id (`reread`).
 */
interface Spilled {
  after: string;
  last: string;
  /**
   * The ids of the key's entries after `after`, in log order, while there are at most SPILLED_IDS: they are read
   * again exactly, by id. Null past that: the key's entries are found by a pass over the pending list.
   */
  ids: string[] | null;
  /** Those of `ids` that are not events (markers, wake-ups): never the key's next input. */
  readonly notEvents: Set<string>;
}

/** An event of its key (not a close marker, a wake-up, or an entry trimmed away while pending). */
export function isEvent(entry: InputEntry): boolean {
  return entry.close === undefined && entry.wake === undefined && entry.payload !== undefined;
}

/** Ids kept per key whose entries wait in the pending list (a small record per key; past it, passes find them). */
const SPILLED_IDS = 64;

/** What the held entries use of their partition's run. */
export interface HeldHost {
  readonly worker: Pick<
    PartitionHost<never, unknown>,
    'readCount' | 'log' | 'clock' | 'report' | 'retryWait' | 'live' | 'fn' | 'slots'
  >;
  readonly lease: Lease;
  /** The live sessions, by key. */
  readonly sessions: ReadonlyMap<string, unknown>;
  /** The run's state (written by the run alone). */
  readonly flags: Readonly<RunFlags>;
  /** The partition's part of `maxBufferedEvents` (its owner: the run). */
  readonly budget: EventBudget;
  deliver(entry: InputEntry): Delivery | Promise<Delivery>;
  /** True if the error ended the partition's ownership; otherwise it was reported and the caller retries. */
  failed(error: unknown): boolean;
  /** Sessions waiting to be restored from their snapshots take free slots (before a drain: they were live before). */
  restoreWaiting(): void;
  /** Applies the session rule again once entries went to sessions. */
  redecide(caller: 'drain' | 'reread'): void;
  /**
   * With the worker's `limiter.session`: the keys whose next session's permits are granted (they open as soon as
   * their entries come), and whether a key's are being waited for (its entries would only wait again).
   */
  readonly admitted?: { readonly ready: ReadonlySet<string>; waits(key: string): boolean };
}

export class HeldEntries {
  /** Entries of keys waiting for a session slot (`maxConcurrent`), per key in log order. */
  readonly held = new Map<string, InputEntry[]>();
  #count = 0;
  /** Keys whose entries wait in the pending list only (read past the held bound), in the order they were left. */
  readonly spilled = new Map<string, Spilled>();
  #rereading = false;
  #rereadAgain = false;
  #draining = false;
  /** Entries `#drainKey` handled, for its yields to the event loop. */
  #drainSteps = 0;
  #drainAgain = false;
  /** The held entry drainHeld is delivering (out of its list meanwhile). */
  draining: InputEntry | null = null;
  readonly #host: HeldHost;
  /** Keys waiting for a session slot (counted for the worker: `stats().slots`). */
  readonly #waiting: WaitingKeys;

  constructor(host: HeldHost) {
    this.#host = host;
    this.#waiting = new WaitingKeys(host.worker.slots);
  }

  /** A delivery's answer for `key`, seen first by the keys waiting for a session slot. */
  #seen(key: string, delivered: Delivery): Delivery {
    if (delivered === Delivery.NoSlot) this.#waiting.noSlot(key);
    else if (delivered !== Delivery.Behind) this.#waiting.wentOn(key);
    return delivered;
  }

  /**
   * Delivers the entry (counted in the budget), or holds it behind the key's held entries, or, past the bound
   * of held entries, leaves it in the pending list. Never waits for a session to end, so the partition goes on
   * being read: close markers behind held entries are reached, and sessions end. True if the entry joined
   * entries of a key with a live session that wait in the pending list (a `reread` can deliver them now).
   */
  dispatch(entry: InputEntry): boolean | Promise<boolean> {
    const spilled = this.spilled.get(entry.key);
    if (spilled !== undefined) {
      this.#host.budget.release();
      spilled.last = entry.id;
      if (spilled.ids !== null) {
        if (spilled.ids.length < SPILLED_IDS) spilled.ids.push(entry.id);
        else spilled.ids = null;
      }
      if (spilled.ids !== null && !isEvent(entry)) spilled.notEvents.add(entry.id);
      return this.#host.sessions.has(entry.key);
    }
    if (this.held.has(entry.key)) {
      this.#host.budget.release();
      this.#holdOrSpill(entry);
      return false;
    }
    const delivered = this.#host.deliver(entry);
    if (typeof delivered === 'number') return this.#undelivered(entry, this.#seen(entry.key, delivered));
    return delivered.then((d) => this.#undelivered(entry, this.#seen(entry.key, d)));
  }

  /** After `#deliver`: an entry it could not deliver is held (or left in the pending list). False: nothing to read again. */
  #undelivered(entry: InputEntry, delivered: Delivery): false {
    if (delivered === Delivery.Done) return false;
    this.#host.budget.release();
    this.#holdOrSpill(entry);
    if (delivered === Delivery.Behind) this.drainHeld().catch((error: unknown) => this.#host.worker.report(error));
    return false;
  }

  /** Holds the entry, or past the bound of held entries leaves it (and its key's later entries) in the pending list. */
  #holdOrSpill(entry: InputEntry): void {
    if (this.#count < this.#host.worker.readCount * heldBounds.batches) this.hold(entry);
    else {
      const notEvents = new Set<string>(isEvent(entry) ? [] : [entry.id]);
      this.spilled.set(entry.key, { after: idBefore(entry.id), last: entry.id, ids: [entry.id], notEvents });
    }
  }

  /**
   * Reads the entries left in the pending list again, by id, from the earliest, and hands each key's on in log
   * order while sessions can open and held entries have room; a key that cannot go on keeps the rest of its
   * entries there until the next pass. Runs when a session ends, after held entries were delivered, and when
   * entries of a live session were left there.
   */
  async reread(): Promise<void> {
    if (this.#rereading) {
      this.#rereadAgain = true;
      return;
    }
    this.#rereading = true;
    try {
      do {
        this.#rereadAgain = false;
        await this.#rereadPass();
      } while (this.#rereadAgain && !this.#host.flags.stopping);
    } finally {
      this.#rereading = false;
      // Sessions given entries read again may be past their ends by the log's clock already.
      this.#host.redecide('reread');
    }
  }

  async #rereadPass(): Promise<void> {
    if (this.spilled.size === 0) return;
    await this.#rereadByIds();
    const w = this.#host.worker;
    // The keys whose ids were not all kept: a pass over the pending list from the earliest finds their entries.
    let from: string | null = null;
    let scanned = 0;
    for (const { after, ids } of this.spilled.values()) {
      if (ids !== null) continue;
      scanned++;
      if (from === null || logOrder(after, from) < 0) from = after;
    }
    // Keys that could not go on in this pass: their later entries wait for the next.
    const stuck = new Set<string>();
    while (from !== null && !this.#host.flags.stopping && stuck.size < scanned) {
      // Reads of the pending list go further than the pump's: most of what they find is passed over at once
      // (entries of other keys, handled already), so a pass that looks for a few keys' entries scattered over a
      // long backlog takes fewer round trips (at readCount 4, a pass was a round trip per 4 entries of the log).
      const count = await this.#host.budget.reserve(Math.max(w.readCount, REREAD_COUNT));
      if (count === 0) return;
      let read;
      try {
        read = await w.log.read(this.#host.lease, from, count);
      } catch (error) {
        this.#host.budget.release(count);
        if (this.#host.failed(error)) return;
        await this.#host.worker.retryWait();
        continue;
      }
      this.#host.budget.release(count - read.entries.length);
      if (read.entries.length === 0) return;
      from = read.entries[read.entries.length - 1].id;
      for (const entry of read.entries) {
        const spilled = this.spilled.get(entry.key);
        // Handled already (delivered, held, or a marker read), read by id instead, or behind an entry of its key
        // that cannot go on.
        if (
          spilled === undefined ||
          spilled.ids !== null ||
          logOrder(entry.id, spilled.after) <= 0 ||
          stuck.has(entry.key) ||
          this.#host.flags.stopping
        ) {
          this.#host.budget.release();
          continue;
        }
        const redelivered = await this.#redeliver(entry);
        if (redelivered !== Redelivery.Done) {
          stuck.add(entry.key);
          // Held entries are at their bound and no session slot is free: of the keys read again, only those
          // with a live session could go on. With none, stop here rather than read the rest of the log (a pass
          // per ended session would otherwise read it all each time).
          if (redelivered === Redelivery.NoRoomNoSlot && !this.#spilledLive()) return;
          continue;
        }
        if (this.spilled.get(entry.key) !== spilled) continue;
        if (spilled.last === entry.id) this.spilled.delete(entry.key);
        else spilled.after = entry.id;
      }
    }
  }

  /**
   * Reads again, by id, the entries of keys whose ids are known: first keys with a live session (they need no
   * slot), then as many more keys as there are free session slots (keys whose permits are granted first, none
   * whose permits are being waited for), all their reads sent at once; each key's entries go on in log order until
   * one cannot (no slot, no room, no permit), and the rest wait for the next pass.
   */
  async #rereadByIds(): Promise<void> {
    const w = this.#host.worker;
    const live = this.#keysBoth(this.spilled, this.#host.sessions).filter((key) => this.spilled.get(key)?.ids != null);
    const chosen = new Set(live);
    let free = w.fn.config.maxConcurrent - w.live;
    const admitted = this.#host.admitted;
    // (A key granted its permits holds them until its session opens: it goes first, or other keys wait on it.)
    if (admitted !== undefined) {
      for (const key of admitted.ready) {
        if (free <= 0) break;
        if (this.spilled.get(key)?.ids == null || chosen.has(key)) continue;
        chosen.add(key);
        free--;
      }
    }
    for (const [key, spilled] of this.spilled) {
      if (free <= 0) break;
      if (spilled.ids === null || chosen.has(key) || admitted?.waits(key) === true) continue;
      chosen.add(key);
      free--;
    }
    if (chosen.size === 0) return;
    // Room in the share for what is read, key by key while it lasts.
    const want = [...chosen].map((key) => [key, [...(this.spilled.get(key)?.ids ?? [])]] as const);
    const total = want.reduce((n, [, ids]) => n + ids.length, 0);
    let room = await this.#host.budget.reserve(total);
    if (room === 0) return;
    const batch: (readonly [string, string[]])[] = [];
    for (const [key, ids] of want) {
      if (room === 0) break;
      const take = ids.slice(0, room);
      room -= take.length;
      batch.push([key, take]);
    }
    let read: InputEntry[];
    try {
      read = await w.log.entries(
        this.#host.lease,
        batch.flatMap(([, ids]) => ids),
      );
    } catch (error) {
      this.#host.budget.release(batch.reduce((n, [, ids]) => n + ids.length, 0));
      if (this.#host.failed(error)) return;
      await this.#host.worker.retryWait();
      this.#rereadAgain = true;
      return;
    }
    let at = 0;
    let wentOn = false;
    for (const [key, ids] of batch) {
      const entries = read.slice(at, at + ids.length);
      at += ids.length;
      let stuck = false;
      for (const got of entries) {
        const spilled = this.spilled.get(key);
        // (An entry gone from the log comes back without its key: it is this key's, and is only acked.)
        const entry: InputEntry = got.key === '' ? { id: got.id, key } : got;
        if (stuck || this.#host.flags.stopping || spilled === undefined || logOrder(entry.id, spilled.after) <= 0) {
          this.#host.budget.release();
          continue;
        }
        const redelivered = await this.#redeliver(entry);
        if (redelivered !== Redelivery.Done) {
          stuck = true;
          continue;
        }
        wentOn = true;
        if (this.spilled.get(key) !== spilled) continue;
        if (spilled.last === entry.id) this.spilled.delete(key);
        else {
          spilled.after = entry.id;
          if (spilled.ids !== null) {
            let drop = 0;
            while (drop < spilled.ids.length && logOrder(spilled.ids[drop], entry.id) <= 0) drop++;
            spilled.ids.splice(0, drop);
          }
        }
      }
    }
    // The share had no room for all the ids chosen: another pass reads the rest. Nothing else would start one: at
    // the end of a backlog the pump reads nothing more, no session ends (one waits for these very entries), and no
    // tick is written for a session whose end the log's clock has passed. (Only once an entry went on: else the
    // pass would read the same stuck entries again and again; the slot or held room they wait for starts a pass.)
    // And while a slot is free with entries left in the pending list: keys left out for want of a slot when a key
    // chosen opened no session (its entries were markers or wake-ups of a session gone, or joined its entries
    // held), or a key chosen whose later entries came meanwhile (the pump passes no key without a live session on
    // to a pass): no session may end to start another. (Again only once an entry went on.)
    if (wentOn && (at < total || (w.live < w.fn.config.maxConcurrent && this.spilled.size > 0))) this.#rereadAgain = true;
  }

  /** Whether a key whose entries wait in the pending list has a live session (its entries can go to it). */
  #spilledLive(): boolean {
    const [small, large] =
      this.spilled.size <= this.#host.sessions.size ? [this.spilled, this.#host.sessions] : [this.#host.sessions, this.spilled];
    for (const key of small.keys()) if (large.has(key)) return true;
    return false;
  }

  /** A spilled entry (counted in the budget) delivered or held; else (no longer counted) it must wait on. */
  async #redeliver(entry: InputEntry): Promise<Redelivery> {
    const room = () => this.#count < this.#host.worker.readCount * heldBounds.batches;
    if (this.held.has(entry.key)) {
      this.#host.budget.release();
      if (!room()) return Redelivery.NoRoom;
      this.hold(entry);
      return Redelivery.Done;
    }
    const delivered = this.#seen(entry.key, await this.#host.deliver(entry));
    if (delivered === Delivery.Done) return Redelivery.Done;
    this.#host.budget.release();
    if (!room()) return delivered === Delivery.NoSlot ? Redelivery.NoRoomNoSlot : Redelivery.NoRoom;
    this.hold(entry);
    if (delivered === Delivery.Behind) this.drainHeld().catch((error: unknown) => this.#host.worker.report(error));
    return Redelivery.Done;
  }

  /**
   * Holds an entry (not counted in the budget) in its key's list, in log order: entries wait there for a
   * session slot, and entries a session's handler never took wait there for the key's next session.
   */
  hold(entry: InputEntry): void {
    let list = this.held.get(entry.key);
    if (list === undefined) this.held.set(entry.key, (list = []));
    let i = list.length;
    while (i > 0 && logOrder(entry.id, list[i - 1].id) < 0) i--;
    list.splice(i, 0, entry);
    this.#count++;
  }

  /** Whether the key has a held entry earlier in the log than `id` (it must be delivered first). */
  heldBefore(key: string, id: string): boolean {
    const list = this.held.get(key);
    if (list !== undefined && list.length > 0 && logOrder(list[0].id, id) < 0) return true;
    const draining = this.draining;
    return draining !== null && draining.key === key && logOrder(draining.id, id) < 0;
  }

  /**
   * Delivers held entries, key by key in the order they were first held, each key's in log order, while
   * sessions can open and the partition's share has room; past the first key that finds no session slot, only
   * keys with a live session. Runs when a session of this worker has ended.
   */
  async drainHeld(): Promise<void> {
    if (this.#draining) {
      this.#drainAgain = true;
      return;
    }
    this.#draining = true;
    // Sessions waiting to be restored from their snapshots take free slots first (they were live before).
    this.#host.restoreWaiting();
    try {
      do {
        this.#drainAgain = false;
        // Once a key found no session slot, only keys with a live session go on (their entries need none).
        let noSlot = false;
        for (const [key, list] of this.held) {
          const drained = await this.#drainKey(key, list, false);
          if (drained === KeyDrain.Stopped) return;
          // No session slot: this key waits for a session to end.
          if (drained === KeyDrain.NoSlot) {
            noSlot = true;
            break;
          }
        }
        if (noSlot && !(await this.#drainHeldOfLive())) return;
      } while (this.#drainAgain);
    } finally {
      this.#draining = false;
      // Sessions opened for held entries may be past their ends by the log's clock already: ending them now
      // frees their slots for the next held keys (on a backlog, at the pace of reading).
      this.#host.redecide('drain');
    }
    // Held entries went to sessions: entries left in the pending list may now fit.
    if (this.spilled.size > 0 && !this.#host.flags.stopping) await this.reread();
  }

  /**
   * `drainHeld` once no session slot is free: the held entries of keys with a live session (they need no slot),
   * found through the smaller of the two maps (a backlog holds entries of far more keys than live sessions).
   * False once the partition stops.
   */
  async #drainHeldOfLive(): Promise<boolean> {
    for (const key of this.#keysBoth(this.held, this.#host.sessions)) {
      const list = this.held.get(key);
      if (list === undefined) continue;
      if ((await this.#drainKey(key, list, true)) === KeyDrain.Stopped) return false;
    }
    return true;
  }

  /**
   * Delivers a key's held entries in log order, each back into the share first, until none is left, one finds
   * no session slot, or (`whileLive`) the key's session is gone. A list it leaves empty is out of `held` in the turn
   * it found it empty: while it is listed, an entry of the key read meanwhile (the pump's, a `reread`'s) joins it
   * instead of going to the key's session, and past the last look at it nothing would deliver that entry.
   */
  async #drainKey(key: string, list: InputEntry[], whileLive: boolean): Promise<KeyDrain> {
    while (list.length > 0 && (!whileLive || this.#host.sessions.has(key))) {
      // A long drain runs in microtasks: it gives the event loop (timers, renewals, replies) a turn now and then.
      if (++this.#drainSteps % DRAIN_STEPS_PER_TURN === 0)
        await new Promise<void>((resolve) => this.#host.worker.clock.setImmediate(resolve));
      if ((await this.#host.budget.reserve(1)) === 0) return KeyDrain.Stopped;
      if (this.#host.flags.stopping) {
        this.#host.budget.release();
        return KeyDrain.Stopped;
      }
      // Taken out first: a session ending meanwhile may put earlier entries of the key in front of it.
      const entry = list.shift() as InputEntry;
      this.#count--;
      this.draining = entry;
      let delivered: Delivery;
      try {
        delivered = this.#seen(entry.key, await this.#host.deliver(entry));
      } finally {
        this.draining = null;
      }
      if (delivered === Delivery.Done) continue;
      this.#host.budget.release();
      this.hold(entry);
      // (Behind: an earlier entry of the key came in front; it goes next.)
      if (delivered === Delivery.NoSlot) return KeyDrain.NoSlot;
      if (delivered === Delivery.Waits) return KeyDrain.Waits;
    }
    if (list.length === 0 && this.held.get(key) === list) this.held.delete(key);
    return KeyDrain.Done;
  }

  /** The keys in both maps, in the order of the smaller one (a copy: delivering changes both). */
  #keysBoth(a: ReadonlyMap<string, unknown>, b: ReadonlyMap<string, unknown>): string[] {
    const [small, large] = a.size <= b.size ? [a, b] : [b, a];
    const keys: string[] = [];
    for (const key of small.keys()) if (large.has(key)) keys.push(key);
    return keys;
  }

  /** Entries held in memory. */
  get count(): number {
    return this.#count;
  }

  /** The partition stops: entries held are dropped (never acked: the next owner replays them). */
  clear(): void {
    this.held.clear();
    this.#count = 0;
    this.spilled.clear();
    this.#waiting.clear();
  }
}
