// `keyState`: a new session starts from its key's state as the log has it, read before it opens. Read one key at a
// time, each opening of a read's batch waited for its own round trip (and the pump with it, so the outbox committed
// once per opening too). Here the states of the keys a batch will open are read together first, their calls sent at
// once (one round trip on a pipelining client); each is used by its key's first opening after the read, and only if
// nothing of the key was live then (no session of it has ended since, so the log's state is still the one to start
// from). Any other opening reads its key's state as before.
import type { InputEntry, StoredKeyState } from '../common/transport';
import type { PartitionHost } from './partition-host';
import { type HeldEntries, isEvent } from './held-entries';

/** The partition's run, as the reads look at it. */
export interface KeyStateReadsRun {
  readonly worker: Pick<PartitionHost<never, unknown>, 'log' | 'live' | 'fn'>;
  readonly partition: number;
  readonly sessions: ReadonlyMap<string, unknown>;
  readonly finishing: ReadonlyMap<string, unknown>;
}

export class KeyStateReads {
  /** States read ahead, by key, until the key's first opening takes its own (or the batch is done). */
  readonly #ahead = new Map<string, StoredKeyState | null>();

  constructor(
    readonly run: KeyStateReadsRun,
    /** Ended sessions' states not committed yet, by key (`keyState`). */
    readonly ending: ReadonlyMap<string, unknown>,
    /** Checkpoints waiting to be restored, by key. */
    readonly snapshots: ReadonlyMap<string, unknown>,
    readonly entries: Pick<HeldEntries, 'held' | 'spilled'>,
  ) {}

  /**
   * Reads at once the states of the keys whose events in `entries` would open sessions (as many keys as slots are
   * free). A failed read leaves the key to its opening's own read (which retries and reports).
   */
  async readAhead(entries: readonly InputEntry[]): Promise<void> {
    this.#ahead.clear();
    const { worker, partition, sessions, finishing } = this.run;
    let free = worker.fn.config.maxConcurrent - worker.live;
    const keys: string[] = [];
    const seen = new Set<string>();
    for (const entry of entries) {
      if (free <= 0) break;
      if (!isEvent(entry) || seen.has(entry.key)) continue;
      seen.add(entry.key);
      // Nothing of the key live or waiting: its next event opens a session from the log's state, and none of its sessions can end before.
      const k = entry.key;
      if (sessions.has(k) || finishing.has(k) || this.ending.has(k) || this.snapshots.has(k)) continue;
      if (this.entries.held.has(k) || this.entries.spilled.has(k)) continue;
      keys.push(entry.key);
      free--;
    }
    if (keys.length < 2) return;
    const read = await Promise.allSettled(keys.map((key) => worker.log.keyState(partition, key)));
    for (let i = 0; i < keys.length; i++) {
      const r = read[i];
      if (r.status === 'fulfilled') this.#ahead.set(keys[i], r.value);
    }
  }

  /** The state read ahead for `key`, once (undefined: none; its opening reads it). */
  take(key: string): StoredKeyState | null | undefined {
    const state = this.#ahead.get(key);
    if (state !== undefined || this.#ahead.has(key)) this.#ahead.delete(key);
    return state;
  }

  /** The batch is dispatched: what no opening took is dropped (a later opening reads its own). */
  done(): void {
    this.#ahead.clear();
  }
}
