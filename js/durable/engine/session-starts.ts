// The permits of the worker's `limiter.session` asked for the next session of each key of a partition, from the
// ask until the session opens (it then holds them to its end) or the partition stops: one owner for those records.
import type { InputEntry } from '../common/transport';
import { Delivery } from './held-entries';
import { type Codec, decodeStored } from '../common/codec';
import { type Grant, GrantState, PermitItem, type WorkerPermits } from './session-permits';

/** What the permits' asks need of the worker: its limiters, its live sessions and slots, its codec (for `cost`). */
export interface StartsHost {
  readonly permits: WorkerPermits | null;
  readonly live: number;
  readonly fn: { readonly config: { readonly maxConcurrent: number } };
  readonly codec: Codec<unknown>;
}

export class SessionStarts {
  /** Asked for, by key: waiting, or granted and not yet taken by a session. */
  readonly #grants = new Map<string, Grant>();
  /** Keys granted and not yet opened: while there are some, a key refused a place to wait does not stop a drain. */
  readonly ready = new Set<string>();

  constructor(readonly worker: StartsHost) {}

  /**
   * The permits of the worker's `limiter.session` a new session of `key` needs: null when there are none to take,
   * its grant once held; else `Waits` (the key waits for them while other keys go on: also one refused a place to
   * wait, past `maxWaiting`, whose permits are not free now) or `NoSlot` (no session slot is free: the key waits
   * without asking). `entry`: the session's first entry (undefined: a session restored from its checkpoint).
   */
  admit(key: string, sid: string, entry: InputEntry | undefined): Grant | null | Delivery {
    const w = this.worker;
    const permits = w.permits;
    if (permits === null || permits.session.length === 0) return null;
    let grant = this.#grants.get(key);
    if (grant === undefined) {
      // Asked only with a slot free: a permit granted to a key that cannot open would be held for nothing.
      if (!this.#slotFree()) return Delivery.NoSlot;
      const payload = entry?.payload;
      const codec = w.codec;
      const item = new PermitItem(
        key,
        sid,
        entry === undefined ? 'restored' : 'event',
        payload === undefined ? undefined : () => decodeStored(codec, payload),
      );
      grant = permits.start('session', item);
      // No place to wait, its permits not free now: the key waits without asking (until a wait ends), and the drain
      // goes on: the keys behind it may find theirs free (another tenant's, say).
      if (grant === undefined) return Delivery.Waits;
      this.#grants.set(key, grant);
      if (grant.state === GrantState.Waiting) {
        const waiting = grant;
        waiting.onGranted = () => {
          // Granted while the slots filled: it goes back, and the key asks again once one is free.
          if (this.#slotFree()) this.ready.add(key);
          else if (this.#grants.get(key) === waiting) {
            this.#grants.delete(key);
            waiting.release();
          }
        };
      }
    }
    if (grant.state !== GrantState.Granted) return Delivery.Waits;
    this.ready.add(key);
    return grant;
  }

  /** Whether a session slot is free now. */
  #slotFree(): boolean {
    return this.worker.live < this.worker.fn.config.maxConcurrent;
  }

  /** The key waits for its permits. */
  waits(key: string): boolean {
    return this.#grants.get(key)?.state === GrantState.Waiting;
  }

  /** The key's session opened with its grant: the session holds it from now on. */
  opened(key: string): void {
    this.#grants.delete(key);
    this.ready.delete(key);
  }

  /** The partition stops: keys stop waiting, and permits granted meanwhile go back. */
  stop(): void {
    for (const grant of this.#grants.values()) grant.release();
    this.#grants.clear();
    this.ready.clear();
  }
}
