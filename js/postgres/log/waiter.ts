// Waiting for input on Postgres: LISTEN on the function's channel is only a hint (a NOTIFY sent before the LISTEN
// began never arrives, and LISTEN does not work behind a transaction-mode pooler), so every wait also polls every
// `pollInterval` ms. A notification names the partition and its last entry: a wait ends with the partitions whose
// positions it is after (those of one turn together, so their reads go in one statement). A wait looks at once
// unless each of its partitions is `quiet`: read since a mark (`mark`) taken while the connection LISTENed, with
// every notification for it since on that connection naming its entry (an entry committed after the read's snapshot
// notifies after it); a quiet partition whose newest named entry is after its position is ready without a look.
import { createHash } from 'node:crypto';
import { CALL_TIMEOUT_MS, queryWithin } from './gate';
import { type PgClientLike, type PgPoolLike, connectWatched } from './sql';

/** The NOTIFY channel of a function: a plain identifier made from a digest of its schema and name. */
export function channelOf(schema: string, fn: string): string {
  return `velo_${createHash('sha1').update(`${schema}\0${fn}`).digest('hex').slice(0, 32)}`;
}

/** An entry id as numbers, or null if it is not one. */
type Id = readonly [bigint, bigint];
function idOf(id: string): Id | null {
  const m = /^(\d{1,20})-(\d{1,20})$/.exec(id);
  return m === null ? null : [BigInt(m[1]), BigInt(m[2])];
}
function idAfter(a: Id, b: Id): boolean {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

/** LISTEN connections taken in this process (a mark names the one it was taken on: notifications are per connection). */
let connections = 0;

/** A subscriber of a pool's LISTEN connection: its channel's notifications, and the connection's errors. */
export interface Listening {
  readonly channel: string;
  /** Its log's `callTimeout`, ms (Infinity: none): the connection's statements are bounded by the least. */
  readonly callTimeout: number;
  readonly notify: (payload: string | undefined) => void;
  readonly onError: (error: Error) => void;
}

/**
 * One LISTEN connection per pool in a process, shared by every log and reader on it (refcounted): taken from the
 * pool at the first subscription, LISTENing on the channels subscribed (added and removed as they come and go), and
 * destroyed when the last goes. So F functions on one pool hold one connection for their waits, not F.
 *
 * A connection gone silent for good (a host gone without a word) would hear nothing more while new connections
 * work: its statements are answered within the subscribers' least `callTimeout`, and one that heard nothing for that
 * long is asked a `SELECT 1` (once per such period: a pool's one statement); one not answered is destroyed, and its
 * subscribers told (ERR_VELO_POSTGRES_TIMEOUT) as of any failure of it: their next wait LISTENs on a new one.
 */
export class PoolListener {
  readonly #pool: PgPoolLike;
  readonly #subs = new Set<Listening>();
  #client: PgClientLike | null = null;
  /** The channels the connection LISTENs on. */
  readonly #listened = new Set<string>();
  /** The syncs, one at a time: the connection brought to the channels subscribed. */
  #chain: Promise<void> = Promise.resolve();
  /** A sync is queued and not started: another is not needed. */
  #queued = false;
  /** The connection LISTENing now, as a number no other connection of the process had (`connections`). */
  #connection = 0;
  /** When the connection last heard from the server (a notification, an answer), by performance.now(). */
  #heard = 0;
  /** Asks a connection quiet for `#ms()` whether it is still there, while one is held. */
  #liveness: NodeJS.Timeout | null = null;
  /** The connection's statement went unanswered: the failure its subscribers are told of. */
  #timedOut: Error | null = null;

  constructor(pool: PgPoolLike) {
    this.#pool = pool;
  }

  readonly #onNotification = (message: { channel: string; payload?: string }): void => {
    this.#heard = performance.now();
    for (const sub of [...this.#subs]) if (sub.channel === message.channel) sub.notify(message.payload);
  };

  readonly #onClientError = (error: Error): void => {
    const client = this.#client;
    if (client === null) return;
    const failure = this.#timedOut ?? error;
    this.#drop(client, failure);
    for (const sub of [...this.#subs]) sub.onError(failure);
  };

  /** The subscribers' least `callTimeout` (CALL_TIMEOUT_MS with none), ms. */
  #ms(): number {
    let ms = this.#subs.size === 0 ? CALL_TIMEOUT_MS : Infinity;
    for (const sub of this.#subs) ms = Math.min(ms, sub.callTimeout);
    return ms;
  }

  /** `text` on the connection, answered within `#ms()` or the connection destroyed. */
  async #query(client: PgClientLike, text: string): Promise<void> {
    const ms = this.#ms();
    if (ms === Infinity) await client.query(text);
    else await queryWithin(client, text, undefined, ms, (error) => (this.#timedOut = error));
    this.#heard = performance.now();
  }

  /** While a connection is held: a `SELECT 1` on it once it heard nothing for `#ms()`, then again as long. */
  #watch(): void {
    if (this.#liveness !== null) clearTimeout(this.#liveness);
    this.#liveness = null;
    const client = this.#client;
    const ms = this.#ms();
    if (client === null || ms === Infinity) return;
    this.#liveness = setTimeout(
      () => {
        this.#liveness = null;
        if (this.#client !== client) return;
        if (performance.now() - this.#heard < ms) return this.#watch();
        // (A failure is the connection's: its 'error' event drops it and tells the subscribers.)
        this.#query(client, 'SELECT 1').then(
          () => this.#watch(),
          () => {},
        );
      },
      Math.max(0, this.#heard + ms - performance.now()),
    );
    // (The watch alone does not keep the process alive.)
    this.#liveness.unref();
  }

  /** Connections given up: each is given back (destroyed) once. */
  readonly #dropped = new WeakSet<PgClientLike>();

  #drop(client: PgClientLike, error: Error | true): void {
    if (this.#dropped.has(client)) return;
    this.#dropped.add(client);
    if (this.#liveness !== null) clearTimeout(this.#liveness);
    this.#liveness = null;
    if (this.#client === client) this.#client = null;
    this.#listened.clear();
    client.removeListener('notification', this.#onNotification);
    client.removeListener('error', this.#onClientError);
    client.release(error);
  }

  /** The connection `channel` is LISTENed on now (a count of connections), or null while it is not. */
  listening(channel: string): number | null {
    return this.#client !== null && this.#listened.has(channel) ? this.#connection : null;
  }

  add(sub: Listening): void {
    this.#subs.add(sub);
    void this.sync();
  }

  remove(sub: Listening): Promise<void> {
    this.#subs.delete(sub);
    return this.sync();
  }

  /** Brings the connection to the channels subscribed (again after it failed); resolves once done. */
  sync(): Promise<void> {
    const wanted = new Set([...this.#subs].map((s) => s.channel));
    const same = this.#client !== null && wanted.size === this.#listened.size && [...wanted].every((c) => this.#listened.has(c));
    if (same || (wanted.size === 0 && this.#client === null)) return this.#chain;
    if (this.#queued) return this.#chain;
    this.#queued = true;
    this.#chain = this.#chain.then(() => {
      this.#queued = false;
      return this.#sync();
    });
    return this.#chain;
  }

  async #sync(): Promise<void> {
    let wanted = new Set([...this.#subs].map((s) => s.channel));
    if (wanted.size === 0) {
      if (listeners.get(this.#pool) === this) listeners.delete(this.#pool);
      // (Destroyed, not given back: it is in LISTEN state.)
      if (this.#client !== null) this.#drop(this.#client, true);
      return;
    }
    let client = this.#client;
    try {
      if (client === null) {
        // (Its wait for the pool reported as every call's is: sql.ts, connectWatched.)
        client = await connectWatched(this.#pool, this.#onClientError);
        this.#connection = ++connections;
        this.#timedOut = null;
        this.#heard = performance.now();
        client.on('notification', this.#onNotification);
        this.#client = client;
        this.#watch();
        // (Subscribers may have left while it opened: a closed log's channel is not LISTENed on.)
        wanted = new Set([...this.#subs].map((s) => s.channel));
      }
      // The channels are identifiers made by channelOf (velo_ and hex digits): safe to splice.
      for (const channel of wanted) {
        if (!this.#listened.has(channel)) {
          await this.#query(client, `LISTEN ${channel}`);
          this.#listened.add(channel);
        }
      }
      for (const channel of [...this.#listened]) {
        if (!wanted.has(channel)) {
          await this.#query(client, `UNLISTEN ${channel}`);
          this.#listened.delete(channel);
        }
      }
    } catch (error) {
      // (A connection that failed under its statement was dropped, and its subscribers told, by its 'error' event.)
      if (client === null || !this.#dropped.has(client)) {
        if (client !== null) this.#drop(client, true);
        for (const sub of [...this.#subs]) sub.onError(error as Error);
      }
    }
    // Everyone left while this ran: give the connection up.
    if (this.#subs.size === 0 && this.#client !== null) await this.#sync();
  }
}

const listeners = new WeakMap<PgPoolLike, PoolListener>();

/** The pool's shared LISTEN connection (made at its first subscription). */
export function listenerOf(pool: PgPoolLike): PoolListener {
  let listener = listeners.get(pool);
  if (listener === undefined) {
    listener = new PoolListener(pool);
    listeners.set(pool, listener);
  }
  return listener;
}

/** A log's waits, with its channel on its pool's shared LISTEN connection from the first wait to `close()`. */
export class Waiter {
  readonly #pool: PgPoolLike;
  /** null: no LISTEN (waits only poll). */
  readonly #channel: string | null;
  readonly #onError: (error: Error) => void;
  #sub: Listening | null = null;
  #listener: PoolListener | null = null;
  #closed = false;
  /** Each pending wait's wake-up: called with the partition of a notification, or undefined (interrupt, close). */
  readonly #waits = new Set<(partition: number | undefined, last?: Id | null) => void>();
  /** Notifications heard per partition that named no entry (a release before, or a payload not ours). */
  readonly #blind = new Map<number, number>();
  /** The newest entry a notification named, per partition. */
  readonly #newest = new Map<number, Id>();

  readonly #callTimeout: number;

  /** `callTimeout`: its log's, ms (Infinity: none), for the LISTEN connection's statements. */
  constructor(pool: PgPoolLike, channel: string | null, onError: (error: Error) => void, callTimeout = CALL_TIMEOUT_MS) {
    this.#pool = pool;
    this.#channel = channel;
    this.#onError = onError;
    this.#callTimeout = callTimeout;
  }

  /** Subscribes once (and brings the shared connection back after it failed); a failure leaves the waits to their polls. */
  #listen(): void {
    if (this.#channel === null || this.#closed) return;
    if (this.#sub === null) {
      this.#sub = {
        channel: this.#channel,
        callTimeout: this.#callTimeout,
        notify: (payload) => {
          // `<p> <ms>-<seq>`: the partition and the last entry added; `<p>` alone from a release before.
          const text = payload ?? '';
          const space = text.indexOf(' ');
          const p = Number(space < 0 ? text : text.slice(0, space));
          const last = space < 0 ? null : idOf(text.slice(space + 1));
          const newest = this.#newest.get(p);
          if (last === null) this.#blind.set(p, (this.#blind.get(p) ?? 0) + 1);
          else if (newest === undefined || idAfter(last, newest)) this.#newest.set(p, last);
          for (const wake of [...this.#waits]) wake(p, last);
        },
        onError: (error) => {
          if (!this.#closed) this.#onError(error);
        },
      };
      this.#listener = listenerOf(this.#pool);
      this.#listener.add(this.#sub);
    } else {
      // (A new listener when the pool's was given up meanwhile: never, while this one is subscribed.)
      void this.#listener?.sync();
    }
  }

  /**
   * Taken before a read of `partition`'s new entries is sent: `quiet(partition, mark)` later says whether every
   * notification for it since named its entry (null: none can be told, the connection does not LISTEN now).
   */
  mark(partition: number): string | null {
    const connection = this.#channel === null || this.#closed ? null : (this.#listener?.listening(this.#channel) ?? null);
    return connection === null ? null : `${connection}/${this.#blind.get(partition) ?? 0}`;
  }

  /**
   * Every entry committed in `partition` after the read that took `mark` was named by a notification heard since,
   * or will be by one still to come (see the file's head): its newest named (`heardAfter`) tells the rest.
   */
  quiet(partition: number, mark: string | null | undefined): boolean {
    return mark != null && mark === this.mark(partition);
  }

  /** A notification named an entry of `partition` after `position` (so it has one: entries go only once delivered). */
  heardAfter(partition: number, position: string): boolean {
    const newest = this.#newest.get(partition);
    const at = idOf(position);
    return newest !== undefined && at !== null && idAfter(newest, at);
  }

  /**
   * Resolves with the partitions of `positions` that have entries after their positions: those a notification
   * names an entry after it for (the notifications of one turn together), or what `check` finds (a non-empty list);
   * or with [] after `ms` (0: never) or at `interrupt()`. `check` runs every `pollInterval` ms, at once if `now`, and
   * at a notification that names no entry.
   */
  wait(
    positions: ReadonlyMap<number, string>,
    ms: number,
    pollInterval: number,
    now: boolean,
    check: () => Promise<number[]>,
  ): Promise<number[]> {
    const after = new Map([...positions].map(([p, id]) => [p, idOf(id)]));
    this.#listen();
    return new Promise<number[]>((resolve, reject) => {
      let done = false;
      let checking = false;
      let again = false;
      const finish = (found: number[] | Error) => {
        if (done) return;
        done = true;
        this.#waits.delete(wake);
        clearInterval(poll);
        if (deadline !== null) clearTimeout(deadline);
        if (found instanceof Error) reject(found);
        else resolve(found);
      };
      const look = () => {
        if (done) return;
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        check().then(
          (found) => {
            checking = false;
            if (found.length > 0) finish(found);
            else if (again) {
              again = false;
              look();
            }
          },
          (error: unknown) => {
            checking = false;
            finish(error as Error);
          },
        );
      };
      // The partitions a notification showed an entry after their positions in this turn of the event loop, ended
      // with together (a burst of sends wakes them at once, and their reads go in one statement).
      let heard: number[] | null = null;
      const wake = (p: number | undefined, last?: Id | null) => {
        if (p === undefined) return finish([]);
        const position = after.get(p);
        if (position === undefined) return;
        // (No id, or one that cannot be read: a release before, or not ours: look.)
        if (last == null || position === null) return look();
        if (!idAfter(last, position)) return;
        if (heard === null) {
          heard = [];
          setImmediate(() => finish(heard ?? []));
        }
        if (!heard.includes(p)) heard.push(p);
      };
      this.#waits.add(wake);
      const poll = setInterval(look, pollInterval);
      const deadline = ms > 0 ? setTimeout(() => finish([]), ms) : null;
      if (now) look();
    });
  }

  /** Ends the pending waits as if their time had passed. */
  interrupt(): void {
    for (const wake of [...this.#waits]) wake(undefined);
  }

  /** Ends the waits and unsubscribes (the pool's LISTEN connection is destroyed with its last subscriber). */
  async close(): Promise<void> {
    this.#closed = true;
    this.interrupt();
    const sub = this.#sub;
    this.#sub = null;
    if (sub !== null) await this.#listener?.remove(sub);
  }
}
