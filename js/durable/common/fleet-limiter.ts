// The one driver of a fleet limiter (redisLimiter, postgresLimiter): it moves between the store's calls and the
// process view (limiter-view.ts). The store decides (the rules are its scripts' or functions': GCRA for rate, leases
// with fencing tokens for concurrency, a FIFO line of tickets per key); this driver makes the calls, bounds each by
// `callTimeout`, tells the view what the store answered, and follows the failure policy when a call fails. It is
// written against `LimiterStore` alone, the few calls both stores answer: a backend is its store and its options.
// One renewal call per third of a lease covers every permit held and ticket waiting here.
import type { AcquireOptions, KeyWait, LimitSettings, Limiter, Permit } from '../../limits/types';
import { limitQueueFullError, limiterClosedError, limitCostError, rateLimitedError } from '../../errors';
import { kDescribe, type LimiterDescription } from '../../limits/describe';
import type { FleetSettings, Limits } from './limiter-rules';
import { type FleetStats, type FleetWaiter, HeldPermit, LimiterView, type Renewed, withTimeout } from './limiter-view';

/** A waiter's first poll when its store polls, ms (then twice as long each time, up to the store's `pollInterval`). */
const FIRST_POLL_MS = 50;

/**
 * What a store answers to an acquire (no ticket) or a waiting ticket's claim, as its scripts reply:
 * 'g' granted (the permit's token, the store's clock when granted); 'w' in line (the ticket; the ms to wait before
 * asking again, when the ticket heads its line and waits for the rate, else 0); 'r' refused in reject mode (the ms
 * until it would conform; `at`: the store's clock, if it says); 'f' the line is full; 'l' the ticket had left the
 * line (it expired); 'x' the cost can never conform (above the burst); 'c' the acquire was undone before it ran.
 */
export type AcquireAnswer =
  | { kind: 'g'; token: string; grantedAt: number }
  | { kind: 'w'; ticket: string; retry: number }
  | { kind: 'r'; retryAfter: number; at?: number }
  | { kind: 'f' | 'l' | 'x' | 'c' };

/** An acquire's or a claim's arguments (`reject`: refuse rather than line up; a claim never refuses). */
export interface AcquireCall {
  key: string;
  ticket: string | null;
  cost: number;
  reject: boolean;
  limits: Limits;
  token: string;
}

/**
 * The calls a fleet limiter makes to its store (Redis: lua/limiter-*.lua; Postgres: sql/limiter-5.sql), and how it
 * hears from it. Each call is one decision on the store's clock; `limits` are the caller's (the store's own, once
 * setLimits stored them, win); a ticket or token of null is none. The driver bounds every call by `callTimeout`.
 */
export interface LimiterStore<S extends string> {
  /** The store's name: a permit's `source`, the dashboard's kind. */
  readonly kind: S;
  /**
   * Whether a grant whose answer is read a lease or more after its call was sent is given back (fenced by its
   * token: its lease may be over) and asked for again, at the back of the line, rather than handed over.
   */
  readonly refusesLateGrants: boolean;
  /**
   * The longest a waiter goes without asking whether its turn came, ms: it asks at 50 ms, then twice as long each
   * time up to this. undefined: a waiter asks when a hint or the renewal says so, or when its rate wait is over.
   */
  readonly pollInterval: number | undefined;
  /** The error of a call that took longer than `callTimeout`. */
  timeoutError(ms: number, what: string): Error;
  /** Whether a call's failure means the store could not be reached or did not answer (else it refused the call). */
  unreachable(error: unknown): boolean;
  /** The error the limiter is down with after such a failure (what an acquire is refused with under 'fail-closed'). */
  downError(error: unknown): Error;
  /** An acquire of `cost` units of `key` under `token` (`ticket` null), or the claim of a waiting ticket. */
  acquire(call: AcquireCall): Promise<AcquireAnswer>;
  /** Gives a permit back: true if its lease still held (freed), false if it had run out (a stale token frees nothing). */
  release(key: string, token: string, limits: Limits): Promise<boolean>;
  /**
   * A ticket out of the line (a permit handed to it goes back), and the permit of `token`; `undo`: the token is
   * marked so that its acquire, if it runs later, takes nothing.
   */
  cancel(key: string, ticket: string | null, token: string | null, undo: boolean, limits: Limits): Promise<unknown>;
  /** One call for every permit held and every ticket waiting in process `pid`: leases extended or lost, the fleet's figures. */
  renew(
    pid: string,
    limits: Limits,
    permits: readonly { key: string; token: string }[],
    waiters: readonly { key: string; ticket: string }[],
  ): Promise<Renewed>;
  /** Stores the fleet's limits (and re-decides the lines). */
  set(limits: Limits): Promise<unknown>;
  /** Process `pid` stops counting in the fleet's processes. */
  leave(pid: string): Promise<unknown>;
  /**
   * Hints while waiters wait, each `<ticket>` (ask now) or `<ticket> <ms>` (ask then), to `onHint`; `onListening`
   * once they flow (what was hinted before is not heard: the driver asks for every waiter then). Called at every
   * new wait: a store that listens already keeps to it. A hint only: a lost one delays a waiter, never strands it.
   */
  listen(onHint: (hint: string) => void, onListening: () => void): void;
  /** No waiter waited at a renewal (a store may give its listening connection back). */
  idle(): void;
  /** After the limiter's last call: stops listening for good. */
  close(): Promise<void>;
}

type Held<S extends string> = HeldPermit<S>;
interface Waiter<S extends string> extends FleetWaiter<Held<S>> {
  /** The next poll's delay without a hint, ms (a store that polls). */
  backoff: number;
}

/** A fleet limiter's `stats()`: the view's, and the store's down flag as `backendDown` and under the backend's name (`D`). */
export type DriverStats<D extends string> = FleetStats & { backendDown: boolean } & { [K in D]: boolean };

/**
 * A fleet limiter on `store`: `S` names the store, `T` is the item type, `D` the name of its stats' down flag
 * ('redisDown', 'postgresDown').
 */
export class FleetLimiterDriver<S extends string, T, D extends string> implements Limiter<T> {
  readonly name: string;
  readonly #store: LimiterStore<S>;
  readonly #o: FleetSettings<T>;
  readonly #downFlag: D;
  /** This process' permits, waiters, counters and fallback (the renewal's cadence too). */
  readonly #view: LimiterView<S, T, Waiter<S>>;

  constructor(store: LimiterStore<S>, settings: FleetSettings<T>, keyOf: (item: T) => string, downFlag: D) {
    this.#store = store;
    this.#o = settings;
    this.name = settings.name;
    this.#downFlag = downFlag;
    // The renewal also tells whether the store is back after a failure and how many processes share the limits.
    this.#view = new LimiterView<S, T, Waiter<S>>(store.kind, settings, keyOf);
    this.#view.start(() => this.#renew());
  }

  #call<V>(call: Promise<V>, what: string, onLate?: (answer: V) => void): Promise<V> {
    const store = this.#store;
    return withTimeout(
      call,
      this.#o.callTimeout,
      `Limiter "${this.name}": ${what}`,
      (ms, w) => store.timeoutError(ms, w),
      onLate,
    );
  }

  /** Whether a grant to a call sent at `sent` may have outlived its lease by the time its answer is read. */
  #outlived(sent: number): boolean {
    return this.#store.refusesLateGrants && performance.now() - sent >= this.#o.leaseTtl;
  }

  #grant(key: string, token: string, grantedAt: number, cost: number, since: number, sent: number): Held<S> {
    return this.#view.grant(key, token, grantedAt, cost, since, sent, (p) => this.#giveBack(p));
  }

  /** `stray`: a permit granted to an acquire that had stopped waiting (never handed out, never held here). */
  async #giveBack(permit: Held<S>, stray = false): Promise<boolean> {
    if (!this.#view.returning(permit, stray)) return false;
    try {
      const freed = await this.#call(this.#store.release(permit.key, permit.token, this.#view.limits), 'release');
      if (!freed) this.#view.fenced(permit);
      return freed;
    } catch (error) {
      // Not given back: the store frees it when its lease runs out.
      if (this.#store.unreachable(error)) this.#view.markDown(this.#store.downError(error));
      return false;
    }
  }

  /** Gives back at once a permit granted after its acquire stopped waiting, or read too late (fenced by its token). */
  #stray(key: string, token: string, sent: number): void {
    new HeldPermit<S>(token, key, 0, this.#store.kind, sent, (p) => this.#giveBack(p, true)).release();
  }

  async acquire(item: T, options?: AcquireOptions): Promise<Held<S>> {
    const { key, cost, signal } = this.#view.admission(item, options);
    return this.#enter(key, cost, performance.now(), signal);
  }

  /** An acquire of `cost` units of `key`: granted, refused, or in line. */
  async #enter(key: string, cost: number, since: number, signal?: AbortSignal): Promise<Held<S>> {
    const view = this.#view;
    const store = this.#store;
    view.assertOpen();
    if (view.down !== null) return view.degraded(key, cost, since, view.down, signal);
    const token = view.newToken();
    const sent = performance.now();
    let answer: AcquireAnswer;
    try {
      answer = await this.#call(
        store.acquire({ key, ticket: null, cost, reject: view.rejects, limits: view.limits, token }),
        'acquire',
        // Answered after all (once the undo was sent): a ticket it took leaves the line now, not at its turn.
        (late) => {
          if (late.kind === 'w') void this.#cancel(key, late.ticket);
        },
      );
    } catch (error) {
      if (!store.unreachable(error)) throw error;
      // No answer: the store may still run it (or have run it). What it took is given back, fenced by its token.
      this.#undo(key, null, token);
      view.markDown(store.downError(error));
      return view.degraded(key, cost, since, view.down as unknown as Error, signal);
    }
    if (view.closed) {
      // Closed while the call was out: what it got goes back.
      if (answer.kind === 'g') this.#stray(key, answer.token, since);
      if (answer.kind === 'w') void this.#cancel(key, answer.ticket);
      throw limiterClosedError(this.name);
    }
    if (answer.kind === 'g') {
      // An answer read a lease after the call (this process paused): the permit's lease may be over. Never handed
      // over dead: given back (fenced: it frees nothing of a new holder), and asked for again, at the back.
      if (this.#outlived(sent)) {
        this.#stray(key, answer.token, 0);
        return this.#enter(key, cost, since, signal);
      }
      const permit = this.#grant(key, answer.token, answer.grantedAt, cost, since, sent);
      if (signal?.aborted) {
        // Aborted while the call was out: the acquire holds nothing.
        permit.release();
        throw signal.reason;
      }
      return permit;
    }
    if (answer.kind === 'r') {
      view.refused();
      // A wait only when the rate held it back: a full `concurrency` knows none (a release frees it), and says so.
      const { retryAfter, at } = answer;
      const wait = retryAfter > 0 ? { retryAfter } : {};
      throw Object.assign(rateLimitedError(this.name, 'acquire'), at === undefined ? wait : { ...wait, at });
    }
    if (answer.kind === 'f') {
      view.refused();
      throw limitQueueFullError(this.name, this.#o.maxWaiting);
    }
    if (answer.kind === 'x') throw this.#costError(cost);
    if (answer.kind !== 'w') throw new Error(`Limiter "${this.name}": an acquire undone before it ran was answered`);
    // In line. Woken by a hint (ask now, or retry in ms), its poll if the store polls, or the renewal's.
    const { ticket, retry } = answer;
    return new Promise<Held<S>>((resolve, reject) => {
      const waiter: Waiter<S> = {
        ticket,
        token,
        key,
        cost,
        since,
        resolve,
        reject,
        signal,
        backoff: FIRST_POLL_MS,
        polling: false,
        again: false,
        done: false,
      };
      const early = view.wait(waiter, () => this.#leave(waiter, signal?.reason));
      this.#listen();
      // Hinted before this answer came (sent after it was made: the newer word).
      if (early !== undefined) this.#onHint(early);
      else this.#waitFor(waiter, retry);
      // A signal aborted between the call and here.
      if (signal?.aborted) waiter.onAbort?.();
    });
  }

  #costError(cost: number): Error {
    return limitCostError(`Limiter "${this.name}": cost ${cost} is above the fleet's burst: it could never be admitted`);
  }

  /** Whether it refuses the excess ('reject' mode) rather than queueing it (a worker's sessions refuse it). */
  get rejects(): boolean {
    return this.#view.rejects;
  }

  /** No permit without a round trip to the store: a fleet limiter's tryAcquire answers undefined (after its checks). */
  tryAcquire(item: T): Permit | undefined {
    this.#view.check(item);
    return undefined;
  }

  /** A waiter while the store is unreachable: follows the failure policy now. */
  #degradeWaiter(waiter: Waiter<S>): void {
    if (!this.#view.finish(waiter)) return;
    // Its ticket leaves the line once the store answers (a permit handed to it meanwhile goes back), not a lease later.
    this.#undo(waiter.key, waiter.ticket, waiter.token);
    this.#view
      .degraded(waiter.key, waiter.cost, waiter.since, this.#view.down as Error, waiter.signal)
      .then(waiter.resolve, waiter.reject);
  }

  /** A waiter told to wait: asks again after `retry` ms (its rate wait), else at its next poll if the store polls. */
  #waitFor(waiter: Waiter<S>, retry: number): void {
    const poll = this.#store.pollInterval;
    if (retry > 0) this.#retryIn(waiter, retry);
    else if (poll !== undefined) {
      const ms = waiter.backoff;
      waiter.backoff = Math.min(waiter.backoff * 2, poll);
      this.#retryIn(waiter, ms);
    }
  }

  #retryIn(waiter: Waiter<S>, ms: number): void {
    this.#view.retryIn(waiter, ms, () => void this.#poll(waiter));
  }

  /** Asks the store again for a waiter's ticket (after a hint, a retry, its poll, or the renewal). */
  async #poll(waiter: Waiter<S>): Promise<void> {
    if (waiter.done) return;
    if (waiter.polling) {
      waiter.again = true;
      return;
    }
    waiter.polling = true;
    this.#view.stopRetry(waiter);
    const store = this.#store;
    const sent = performance.now();
    let answer: AcquireAnswer;
    try {
      const { key, ticket, cost, token } = waiter;
      answer = await this.#call(store.acquire({ key, ticket, cost, reject: false, limits: this.#view.limits, token }), 'acquire');
    } catch (error) {
      waiter.polling = false;
      // Aborted or closed while its claim had no answer: the store may still run it, so it is undone by its token.
      if (waiter.done) return this.#undo(waiter.key, waiter.ticket, waiter.token);
      if (!store.unreachable(error)) return this.#leave(waiter, error);
      this.#view.markDown(store.downError(error));
      return this.#degradeWaiter(waiter);
    }
    waiter.polling = false;
    if (waiter.done) {
      // Aborted or closed meanwhile: a permit it got goes back at once.
      if (answer.kind === 'g') this.#stray(waiter.key, answer.token, sent);
      return;
    }
    if (answer.kind === 'g' && this.#outlived(sent)) {
      // (As in #enter: a grant read a lease after the call is given back, and the waiter lines up again.)
      this.#stray(waiter.key, answer.token, 0);
      void this.#requeue(waiter);
    } else if (answer.kind === 'g') {
      this.#view.finish(waiter);
      waiter.resolve(this.#grant(waiter.key, answer.token, answer.grantedAt, waiter.cost, waiter.since, sent));
    } else if (answer.kind === 'l') {
      // Its ticket expired (this process did not renew it in time: paused, or the store was away): in line again,
      // at the back, as a new acquire would be.
      void this.#requeue(waiter);
    } else if (answer.kind === 'x') {
      this.#leave(waiter, this.#costError(waiter.cost));
    } else if (waiter.again) {
      // Hinted while this claim was out: the hint may be newer than this answer.
      waiter.again = false;
      void this.#poll(waiter);
    } else if (answer.kind === 'w') {
      this.#waitFor(waiter, answer.retry);
    }
  }

  async #requeue(waiter: Waiter<S>): Promise<void> {
    this.#view.finish(waiter);
    try {
      waiter.resolve(await this.#enter(waiter.key, waiter.cost, waiter.since, waiter.signal));
    } catch (error) {
      waiter.reject(error);
    }
  }

  /** A waiter that stops waiting: out of the store's line (a permit handed to it meanwhile goes back). */
  #leave(waiter: Waiter<S>, reason: unknown): void {
    if (!this.#view.finish(waiter)) return;
    waiter.reject(reason);
    void this.#cancel(waiter.key, waiter.ticket, waiter.token);
  }

  /**
   * A ticket out of the line (a permit handed to it meanwhile goes back, and one its claim under `token` took: a
   * claim in flight may reach the store first).
   */
  #cancel(key: string, ticket: string | null, token: string | null = null): Promise<unknown> {
    return this.#call(this.#store.cancel(key, ticket, token, false, this.#view.limits), 'cancel').catch(() => {
      // Unreachable: the ticket expires by itself after a lease.
    });
  }

  /**
   * An acquire (or a waiter's claim) given up on without an answer: whatever it took in the store (a permit of
   * `token`, the ticket in line, a permit handed to the ticket) is given back once the store answers the undo, and
   * the acquire, if the store runs it only after the undo, takes nothing there. Rate units it spent stay spent.
   */
  #undo(key: string, ticket: string | null, token: string): void {
    this.#view.undo(key, ticket, token);
    void this.#flushUndos();
  }

  /** Sends the undos not yet answered (each one call); one that fails is sent again before the next renewal. */
  #flushUndos(): Promise<unknown> {
    const view = this.#view;
    return Promise.allSettled(
      view.undosToSend().map(([token, undo]) =>
        this.#call(this.#store.cancel(undo.key, undo.ticket, token, true, view.limits), 'undo').then(
          () => view.undoAnswered(token),
          () => view.undoFailed(token),
        ),
      ),
    );
  }

  /** Hints while waiters wait (a failure leaves them to their polls and the renewal's). */
  #listen(): void {
    if (this.#view.closed) return;
    this.#store.listen(
      (hint) => this.#onHint(hint),
      // What was hinted before the store listened: ask once for every waiter.
      () => {
        for (const waiter of this.#view.waiters) void this.#poll(waiter);
      },
    );
  }

  /** A hint: `<ticket>` (ask now) or `<ticket> <ms>` (retry then). */
  #onHint(hint: string): void {
    const space = hint.indexOf(' ');
    const waiter = this.#view.hinted(space < 0 ? hint : hint.slice(0, space), hint);
    if (waiter === undefined) return;
    if (space < 0) void this.#poll(waiter);
    else this.#retryIn(waiter, Number(hint.slice(space + 1)));
  }

  /** One call for every permit held and every ticket waiting. */
  async #renew(): Promise<void> {
    const view = this.#view;
    const store = this.#store;
    const sent = performance.now();
    const { permits, waiters } = view.toRenew(sent);
    if (waiters.length === 0) store.idle();
    // (Sent first: on Redis, on the same connection, so that they run before the renewal.)
    void this.#flushUndos();
    try {
      const answer = await this.#call(store.renew(view.pid, view.limits, permits, waiters), 'renewal');
      for (const waiter of view.renewed(sent, permits, answer)) void this.#poll(waiter);
    } catch (error) {
      if (store.unreachable(error)) {
        view.markDown(store.downError(error));
        // Waiters are not left waiting for hints that cannot come: each follows the failure policy now (their
        // tickets leave the line once the store answers the undo).
        for (const waiter of waiters) this.#degradeWaiter(waiter);
      }
    }
  }

  async setLimits(settings: LimitSettings): Promise<void> {
    const limits = this.#view.setLimits(settings);
    await this.#call(this.#store.set(limits), 'setLimits');
  }

  stats(): DriverStats<D> {
    const down = this.#view.down !== null;
    return { ...this.#view.stats(), backendDown: down, [this.#downFlag]: down } as DriverStats<D>;
  }

  /** This process's waiters per key, longest waiting first (the fleet's other processes' are theirs). */
  waitingKeys(limit = 10): KeyWait[] {
    return this.#view.waitingKeys(limit);
  }

  /** Its kind, the fleet's limits as this process last knew them, mode and keying (the dashboard's row). */
  [kDescribe](): LimiterDescription {
    return this.#view.describe();
  }

  async close(): Promise<void> {
    const closing = this.#view.close();
    if (closing === false) return;
    const leaving: Promise<unknown>[] = closing.left.map((w) => this.#cancel(w.key, w.ticket, w.token));
    leaving.push(closing.fallback, this.#flushUndos(), this.#call(this.#store.leave(this.#view.pid), 'close'));
    await Promise.allSettled(leaving);
    await this.#store.close();
  }
}
