// What a fleet limiter (redisLimiter, postgresLimiter) keeps of THIS process: the permits it holds, its waiters and
// their tickets, the hints that came before their tickets, the undos not yet answered, its counters, the fleet's
// figures as of the last renewal, whether the store is down, and the 'local' fallback. Every one of these records
// is written here only; the driver (fleet-limiter.ts) drives the view with its store's calls (Lua on Redis, SQL on
// Postgres): it asks the view what to send, and tells it what the store answered. Nothing here talks to a store.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { AcquireOptions, KeyWait, LimitSettings, Limiter, LimiterStats } from '../../limits/types';
import { limiterClosedError } from '../../errors';
import { limiter } from '../../limits/local';
import type { LimiterDescription } from '../../limits/describe';
import { acquireSignal } from '../../limits/acquire-options';
import { IoDeadline } from '../../io-deadline';
import { integerOption } from '../../validate';
import { type FleetSettings, type Limits, checkLimits, costOf, localShare } from './limiter-rules';

/** Waits kept for `waitedMs` percentiles. */
const WAIT_WINDOW = 512;
/** Hints kept for tickets not (yet) known here: more than come between an acquire's call and its answer. */
const EARLY_KEPT = 1024;

/** What the 'local' fallback's in-process limiter is asked for: the key and cost, decided already. */
interface LocalItem {
  key: string;
  cost: number;
}
const localKey = (item: LocalItem): string => item.key;
const localCost = (item: LocalItem): number => item.cost;

/**
 * A permit of a fleet limiter, `S` naming its store. `lost` and `renewedAt` are the view's to write (a renewal, the
 * store's answer at release); the backend hands it out and gives it back through `giveBack`.
 */
export class HeldPermit<S extends string> {
  lost = false;
  #released: Promise<boolean> | undefined;
  constructor(
    readonly token: string,
    readonly key: string,
    readonly grantedAt: number,
    readonly source: S | 'open' | 'local',
    /** Local time of the call that last confirmed the lease (sent then: a conservative start). */
    public renewedAt: number,
    readonly giveBack: (permit: HeldPermit<S>) => Promise<boolean>,
  ) {}
  release(): void {
    this.#released ??= this.giveBack(this);
  }
  released(): Promise<boolean> {
    return this.#released ?? Promise.resolve(false);
  }
}

/** A waiter of this process: its ticket in the store's line, and the acquire it answers. */
export interface FleetWaiter<P> {
  ticket: string;
  /** The token its permit gets when granted (made before its acquire was sent). */
  token: string;
  key: string;
  cost: number;
  since: number;
  resolve: (permit: P) => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
  /** Its next poll (`retryIn`; cleared once the waiter is done). */
  timer?: NodeJS.Timeout;
  /** A poll is in flight; `again`: another was asked for meanwhile (the backend's to write). */
  polling: boolean;
  again: boolean;
  /** Out of this process' books (written by the view only). */
  done: boolean;
}

/** An acquire given up on without an answer: undone in the store by its token (`ticket`: its place in line, if any). */
export interface Undo {
  key: string;
  ticket: string | null;
}

/** What a renewal's answer says, in the view's terms. */
export interface Renewed {
  /** Tokens of permits whose lease had run out. */
  lostTokens: Iterable<string>;
  /** Tickets to ask again for (their turn may have come, or they expired). */
  tickets: Iterable<string>;
  processes: number;
  admitted: number;
  rejected: number;
  /** The limits in force in the store (concurrency, limit, period, burst; undefined: none). */
  limits: (number | undefined)[];
}

/** `stats()` of a fleet limiter without its store's `…Down` flag (the backend names it). */
export interface FleetStats extends LimiterStats {
  fleet: { processes: number; admitted: number; rejected: number };
  lost: number;
}

/** The process view of one fleet limiter; `S` names its store ('redis', 'postgres'), `T` is the item type, `W` its waiters. */
export class LimiterView<S extends string, T, W extends FleetWaiter<HeldPermit<S>> = FleetWaiter<HeldPermit<S>>> {
  readonly name: string;
  readonly pid = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  readonly #o: FleetSettings<T>;
  readonly #kind: S;
  readonly #keyOf: (item: T) => string;
  /** Tokens of permits: this object's random id and a counter (known before the acquire is sent, so it can be undone). */
  readonly #tokenPrefix = `${randomBytes(8).toString('hex')}-`;
  #tokens = 0;
  #limits: Limits;
  readonly #held = new Set<HeldPermit<S>>();
  readonly #waiters = new Map<string, W>();
  /** Hints for tickets not waiting here, the latest EARLY_KEPT (tickets are never reused). */
  readonly #early = new Map<string, string>();
  /** Undos by token; `sending`: a call is out for it. */
  readonly #undos = new Map<string, Undo & { sending: boolean }>();
  #closed = false;
  #down: Error | null = null;
  #renewing = false;
  #renewTimer: NodeJS.Timeout | undefined;
  #fallback: Limiter<LocalItem> | null = null;
  readonly #fleet = { processes: 1, admitted: 0, rejected: 0 };
  #admitted = 0;
  #rejected = 0;
  #lost = 0;
  readonly #waits: number[] = [];
  /** [local time, units] of recent grants, for `stats().rate`. */
  readonly #grants: [number, number][] = [];

  constructor(kind: S, settings: FleetSettings<T>, keyOf: (item: T) => string) {
    this.#kind = kind;
    this.#o = settings;
    this.name = settings.name;
    this.#keyOf = keyOf;
    this.#limits = settings.limits;
  }

  /**
   * Starts the renewals: `renew` is the backend's (one store call for all this process holds and waits for), run now
   * and every third of a lease, never two at once, never after close(). Unref'd: a limiter alone does not keep the
   * process alive.
   */
  start(renew: () => Promise<void>): void {
    const tick = async () => {
      if (this.#renewing || this.#closed) return;
      this.#renewing = true;
      try {
        await renew();
      } finally {
        this.#renewing = false;
      }
    };
    clearInterval(this.#renewTimer);
    this.#renewTimer = setInterval(() => void tick(), Math.floor(this.#o.leaseTtl / 3)).unref();
    void tick();
  }

  get limits(): Limits {
    return this.#limits;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Why the last store call failed, while acquires follow the failure policy (null: up). */
  get down(): Error | null {
    return this.#down;
  }

  get rejects(): boolean {
    return this.#o.mode === 'reject';
  }

  assertOpen(): void {
    if (this.#closed) throw limiterClosedError(this.name);
  }

  /** An acquire's checks, in the order every limiter makes them: its signal, open, not aborted, key, cost. */
  admission(item: T, options: AcquireOptions | undefined): { key: string; cost: number; signal?: AbortSignal } {
    const signal = acquireSignal(options, `Limiter "${this.name}": acquire()`);
    this.assertOpen();
    signal?.throwIfAborted();
    return { key: this.#keyOf(item), cost: costOf(this.name, this.#o.cost, item, this.#limits), signal };
  }

  /** tryAcquire's checks (no permit without a round trip to the store). */
  check(item: T): void {
    this.assertOpen();
    this.#keyOf(item);
    costOf(this.name, this.#o.cost, item, this.#limits);
  }

  newToken(): string {
    return this.#tokenPrefix + (++this.#tokens).toString(36);
  }

  markDown(error: Error): void {
    this.#down = error;
  }

  refused(): void {
    this.#rejected++;
  }

  #admit(cost: number, since: number): void {
    this.#admitted++;
    const now = performance.now();
    if (this.#waits.length === WAIT_WINDOW) this.#waits.shift();
    this.#waits.push(now - since);
    this.#grants.push([now, cost]);
    const window = this.#limits.rate?.period ?? 1000;
    while (this.#grants.length > 0 && this.#grants[0][0] < now - window) this.#grants.shift();
  }

  /**
   * A permit the store granted: held there (a lease) from its grant to its release whatever the limits are, a
   * rate-only one too, so a concurrency limit set later counts it; renewed and given back as every permit.
   */
  grant(
    key: string,
    token: string,
    grantedAt: number,
    cost: number,
    since: number,
    sent: number,
    giveBack: (p: HeldPermit<S>) => Promise<boolean>,
  ): HeldPermit<S> {
    this.#admit(cost, since);
    const permit = new HeldPermit<S>(token, key, grantedAt, this.#kind, sent, giveBack);
    this.#held.add(permit);
    return permit;
  }

  /**
   * Whether a permit's release goes to the store: one held here, or one this process counts lost (the store's
   * answer is the one that counts), or a `stray` (granted to an acquire that had stopped waiting).
   */
  returning(permit: HeldPermit<S>, stray: boolean): boolean {
    return this.#held.delete(permit) || permit.lost || stray;
  }

  /** The store freed nothing at release: the permit's lease had run out (fenced). */
  fenced(permit: HeldPermit<S>): void {
    if (permit.lost) return;
    permit.lost = true;
    this.#lost++;
  }

  #loseLocally(permit: HeldPermit<S>): void {
    if (permit.lost) return;
    permit.lost = true;
    this.#lost++;
    this.#held.delete(permit);
  }

  /** What acquire does while the store is unreachable: the failure policy (`error`: the store's failure). */
  degraded(key: string, cost: number, since: number, error: Error, signal?: AbortSignal): Promise<HeldPermit<S>> {
    // (Closed while the call was out: refused as an answered call is, and no local limiter made after close.)
    if (this.#closed) return Promise.reject(limiterClosedError(this.name));
    const policy = this.#o.whenFails;
    if (policy === 'fail-closed') return Promise.reject(error);
    if (policy === 'fail-open') {
      this.#admit(cost, since);
      return Promise.resolve(new HeldPermit<S>('', key, NaN, 'open', 0, () => Promise.resolve(true)));
    }
    this.#fallback ??= limiter<LocalItem>({
      name: this.name,
      ...localShare(this.#limits, this.#fleet.processes),
      key: this.#o.key === undefined ? undefined : localKey,
      cost: localCost,
      mode: this.#o.mode,
      maxWaiting: this.#o.maxWaiting,
    });
    return this.#fallback.acquire({ key, cost }, { signal }).then((local) => {
      this.#admit(cost, since);
      return new HeldPermit<S>('', key, NaN, 'local', 0, () => {
        local.release();
        return Promise.resolve(true);
      });
    });
  }

  /** A waiter in line here; `onAbort`: what its signal's abort does. Answers a hint that came before it, if any. */
  wait(waiter: W, onAbort: () => void): string | undefined {
    this.#waiters.set(waiter.ticket, waiter);
    if (waiter.signal !== undefined) {
      waiter.onAbort = onAbort;
      waiter.signal.addEventListener('abort', onAbort, { once: true });
    }
    return this.#early.get(waiter.ticket);
  }

  get waiters(): Iterable<W> {
    return this.#waiters.values();
  }

  /** The waiter a hint names, or undefined (the hint is kept for its ticket, whose acquire may not have its answer yet). */
  hinted(ticket: string, hint: string): W | undefined {
    const waiter = this.#waiters.get(ticket);
    if (waiter === undefined) {
      this.#early.set(ticket, hint);
      if (this.#early.size > EARLY_KEPT) this.#early.delete(this.#early.keys().next().value as string);
      return undefined;
    }
    this.#early.delete(ticket);
    return waiter;
  }

  /** Takes a waiter out of this process' books (it no longer waits here); false if it was out already. */
  finish(waiter: W): boolean {
    if (waiter.done) return false;
    waiter.done = true;
    clearTimeout(waiter.timer);
    this.#waiters.delete(waiter.ticket);
    if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
    return true;
  }

  /** Runs `poll` in `ms` (the one poll to come: an earlier one is called off). */
  retryIn(waiter: W, ms: number, poll: () => void): void {
    clearTimeout(waiter.timer);
    waiter.timer = setTimeout(poll, ms);
  }

  /** Calls off the poll to come (one is being made now). */
  stopRetry(waiter: W): void {
    clearTimeout(waiter.timer);
  }

  /**
   * An acquire (or a waiter's claim) given up on without an answer: whatever it took in the store (a permit of
   * `token`, the ticket in line, a permit handed to the ticket) is to be given back once the store answers the undo.
   */
  undo(key: string, ticket: string | null, token: string): void {
    this.#undos.set(token, { key, ticket, sending: false });
  }

  /** The undos to send now (each marked sent until `undoAnswered` or `undoFailed`). */
  undosToSend(): [token: string, undo: Undo][] {
    const out: [string, Undo][] = [];
    for (const [token, undo] of this.#undos) {
      if (undo.sending) continue;
      undo.sending = true;
      out.push([token, { key: undo.key, ticket: undo.ticket }]);
    }
    return out;
  }

  undoAnswered(token: string): void {
    this.#undos.delete(token);
  }

  /** Sent again with the next flush (before every renewal). */
  undoFailed(token: string): void {
    const undo = this.#undos.get(token);
    if (undo !== undefined) undo.sending = false;
  }

  /**
   * What a renewal sent at `sent` asks the store to renew: the permits still live (those whose lease must have run
   * out by this process' clock are lost first) and every waiter.
   */
  toRenew(sent: number): { permits: HeldPermit<S>[]; waiters: W[] } {
    const permits = [...this.#held];
    const waiters = [...this.#waiters.values()];
    for (const permit of permits) {
      if (sent - permit.renewedAt > this.#o.leaseTtl) this.#loseLocally(permit);
    }
    return { permits: permits.filter((p) => !p.lost), waiters };
  }

  /**
   * The store answered the renewal of `permits` sent at `sent`: leases renewed or lost, the fleet's figures, the
   * limits in force (setLimits from any process: the fallback's share and cost checks follow them), the store up.
   * Returns the waiters to ask again for.
   */
  renewed(sent: number, permits: HeldPermit<S>[], answer: Renewed): W[] {
    const lostTokens = new Set(answer.lostTokens);
    for (const p of permits) {
      if (lostTokens.has(p.token)) this.#loseLocally(p);
      else p.renewedAt = sent;
    }
    const ask: W[] = [];
    for (const ticket of answer.tickets) {
      const waiter = this.#waiters.get(ticket);
      if (waiter !== undefined) ask.push(waiter);
    }
    this.#fleet.processes = Math.max(1, answer.processes);
    this.#fleet.admitted = answer.admitted;
    this.#fleet.rejected = answer.rejected;
    const [c, l, p, b] = answer.limits;
    if (c !== undefined || l !== undefined) {
      this.#limits = {
        ...(c === undefined ? {} : { concurrency: c }),
        ...(l === undefined ? {} : { rate: { limit: l, period: p as number, burst: b as number } }),
      };
    }
    void this.#fallback?.setLimits(localShare(this.#limits, this.#fleet.processes));
    this.#down = null;
    return ask;
  }

  /** Checks and takes new limits (setLimits), before the backend stores them. */
  setLimits(settings: LimitSettings): Limits {
    this.assertOpen();
    const limits = checkLimits(settings, `Limiter "${this.name}": setLimits()`, true);
    this.#limits = limits;
    void this.#fallback?.setLimits(localShare(limits, this.#fleet.processes));
    return limits;
  }

  /** This process' view (`stats()` but the store's `…Down` flag). */
  stats(): FleetStats {
    const waits = [...this.#waits].sort((a, b) => a - b);
    const at = (q: number) => (waits.length === 0 ? 0 : waits[Math.min(waits.length - 1, Math.floor(q * waits.length))]);
    const keys = new Set<string>();
    for (const p of this.#held) keys.add(p.key);
    let oldest = Infinity;
    for (const w of this.#waiters.values()) {
      keys.add(w.key);
      if (w.since < oldest) oldest = w.since;
    }
    const now = performance.now();
    const window = this.#limits.rate?.period ?? 1000;
    let units = 0;
    for (const [time, cost] of this.#grants) if (time >= now - window) units += cost;
    return {
      name: this.name,
      inUse: this.#held.size + (this.#fallback?.stats().inUse ?? 0),
      waiting: this.#waiters.size + (this.#fallback?.stats().waiting ?? 0),
      admitted: this.#admitted,
      refunded: 0,
      rejected: this.#rejected,
      waitedMs: { p50: at(0.5), p99: at(0.99) },
      rate: this.#limits.rate === undefined ? undefined : (units * 1000) / window,
      keys: keys.size,
      oldestWaitMs: oldest === Infinity ? 0 : now - oldest,
      fleet: { ...this.#fleet },
      lost: this.#lost,
    };
  }

  /** This process's waiters per key, longest waiting first (the fleet's other processes' are theirs). */
  waitingKeys(limit = 10): KeyWait[] {
    const n = integerOption(`Limiter "${this.name}": waitingKeys()`, 'limit', limit, 1, 1000);
    const now = performance.now();
    const byKey = new Map<string, KeyWait>();
    for (const w of this.#waiters.values()) {
      const k = byKey.get(w.key);
      if (k === undefined) byKey.set(w.key, { key: w.key, waiting: 1, held: 0, oldestWaitMs: now - w.since });
      else {
        k.waiting++;
        k.oldestWaitMs = Math.max(k.oldestWaitMs, now - w.since);
      }
    }
    for (const p of this.#held) {
      const k = byKey.get(p.key);
      if (k !== undefined) k.held++;
    }
    return [...byKey.values()]
      .sort((a, b) => b.oldestWaitMs - a.oldestWaitMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .slice(0, n);
  }

  /** Its kind, the fleet's limits as this process last knew them, mode and keying (the dashboard's row). */
  describe(): LimiterDescription {
    const l = this.#limits;
    return {
      kind: this.#kind as LimiterDescription['kind'],
      ...(l.concurrency !== undefined && { concurrency: l.concurrency }),
      ...(l.rate !== undefined && { rate: { limit: l.rate.limit, period: l.rate.period, burst: l.rate.burst } }),
      mode: this.#o.mode === 'reject' ? 'reject' : 'throttle',
      keyed: this.#o.key !== undefined,
    };
  }

  /**
   * Closes the view: no renewal after this, every waiter out and refused. Returns false if closed already, else the
   * waiters that were in line (the backend takes their tickets out of the store's line) and the fallback's close.
   */
  close(): { left: W[]; fallback: Promise<void> } | false {
    if (this.#closed) return false;
    this.#closed = true;
    clearInterval(this.#renewTimer);
    const left = [...this.#waiters.values()];
    for (const waiter of left) {
      this.finish(waiter);
      waiter.reject(limiterClosedError(this.name));
    }
    return { left, fallback: this.#fallback?.close() ?? Promise.resolve() };
  }
}

/**
 * A store call bounded by `ms` (Infinity: unbounded, `IoDeadline`): refused with `timeoutError(ms, what)` past it; `onLate` is given
 * the answer that comes after the timeout (the call had failed).
 */
export function withTimeout<V>(
  call: Promise<V>,
  ms: number,
  what: string,
  timeoutError: (ms: number, what: string) => Error,
  onLate?: (value: V) => void,
): Promise<V> {
  if (ms === Infinity) return call;
  let timer: IoDeadline | undefined;
  let timedOut = false;
  const late = new Promise<never>((_, reject) => {
    timer = new IoDeadline(() => {
      timedOut = true;
      reject(timeoutError(ms, what));
    }, ms);
  });
  call.then(
    (value) => {
      if (timedOut) onLate?.(value);
    },
    () => {}, // a late failure after the timeout is already handled
  );
  return Promise.race([call, late]).finally(() => timer?.clear());
}
