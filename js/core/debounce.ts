// Debounce per key for in-process sessions (`fn.sessions({ debounce })`, docs/sessions.md#debounce).
//
// The rule is decided in one place, `arrive` and `due` below: pure functions of a key's state, the time and the
// settings. `Debouncer` only keeps each key's state and one timer per key with something pending, and calls back
// to deliver. The clock is `Date.now` (node:test's mock timers mock it together with `setTimeout`).
import { assertOptionsObject } from '../config';
import { describe, invalidType, invalidValue } from '../errors';
import { numberOption } from '../validate';

export interface Debounce {
  wait: number;
  leading: boolean;
  maxDelay: number;
}

/** A key's state while something is pending (a held event, or a quiet period after a leading one). */
export interface KeyState {
  /** Time of the first event of the current group (trailing), or of the last delivered one (leading). */
  since: number;
  /** Time of the last event for the key. */
  last: number;
}

/** What to do with an arrival: deliver it now, hold it (dropping any held one), or drop it. */
export type Action = 'deliver' | 'hold' | 'drop';

/** The arrival at `now` for a key in state `s` (undefined: quiet, nothing held): the action and the new state. */
export function arrive(s: KeyState | undefined, now: number, d: Debounce): { action: Action; state: KeyState } {
  if (d.leading) {
    if (s === undefined || now - s.since >= d.maxDelay) return { action: 'deliver', state: { since: now, last: now } };
    return { action: 'drop', state: { since: s.since, last: now } };
  }
  return { action: 'hold', state: { since: s?.since ?? now, last: now } };
}

/** When a key's pending state is due: trailing, its held event is delivered; leading, its quiet period ends. */
export function due(s: KeyState, d: Debounce): number {
  const quiet = s.last + d.wait;
  return d.leading ? quiet : Math.min(quiet, s.since + d.maxDelay);
}

const MAX_MS = 2 ** 31 - 1;
const KEYS = new Set(['wait', 'edge', 'maxDelay']);

/** Checks `debounce` (at `fn.sessions()`, or `fn`: `redisWorker()`, `testWorker()`). */
export function checkDebounce(value: unknown, fn = 'sessions'): Debounce {
  assertOptionsObject(value, 'debounce', '{ wait: 500 }');
  let keys: string[];
  let wait: unknown, edge: unknown, maxDelay: unknown;
  try {
    keys = Object.keys(value);
    ({ wait, edge, maxDelay } = value as Record<string, unknown>);
  } catch (error) {
    // A revoked Proxy, a getter that throws: not an options object this can use.
    throw invalidType(`The "debounce" option could not be read (${describe(error)})`, error);
  }
  for (const key of keys) {
    if (!KEYS.has(key)) throw invalidValue(`Unknown option "debounce.${key}". Known options: wait, edge, maxDelay`);
  }
  const what = `a number of milliseconds from 1 to ${MAX_MS}`;
  const w = numberOption(fn, 'debounce.wait', wait, 1, MAX_MS, what);
  if (edge !== undefined && edge !== 'trailing' && edge !== 'leading') {
    throw invalidValue(`The "debounce.edge" option must be 'trailing' or 'leading'. Received ${describe(edge)}`);
  }
  const m =
    maxDelay === undefined
      ? Infinity
      : numberOption(fn, 'debounce.maxDelay', maxDelay, w, MAX_MS, `a number of milliseconds from wait (${w}) to ${MAX_MS}`);
  return { wait: w, leading: edge === 'leading', maxDelay: m };
}

interface Pending<I> {
  state: KeyState;
  held: { event: I } | undefined;
  timer: ReturnType<typeof setTimeout>;
}

/** Each key's debounce state and timer; `deliver` sends an event on (to the key's session). */
export class Debouncer<K, I> {
  readonly #d: Debounce;
  readonly #deliver: (key: K, event: I) => Promise<void>;
  readonly #lost: (key: K, error: unknown) => void;
  readonly #pending = new Map<K, Pending<I>>();
  /** Events dropped: collapsed into a later one (trailing), or within a quiet period (leading). */
  dropped = 0;
  /** Trailing events held now. */
  held = 0;

  constructor(d: Debounce, deliver: (key: K, event: I) => Promise<void>, lost: (key: K, error: unknown) => void) {
    this.#d = d;
    this.#deliver = deliver;
    this.#lost = lost;
  }

  /** An event for `key`: delivered now (its send's promise), or held or dropped (resolved at once). */
  send(key: K, event: I): Promise<void> {
    const p = this.#pending.get(key);
    const { action, state } = arrive(p?.state, Date.now(), this.#d);
    if (p !== undefined) clearTimeout(p.timer);
    if (action === 'hold' && p?.held !== undefined) this.dropped++;
    if (action === 'drop') this.dropped++;
    let held = p?.held;
    if (action === 'hold') {
      if (held === undefined) this.held++;
      held = { event };
    }
    const timer = setTimeout(() => this.#due(key), Math.max(0, due(state, this.#d) - Date.now()));
    // A leading key's quiet period holds nothing to deliver: it keeps nothing alive. A held trailing event does
    // (it is accepted work, as a send waiting for room is), for at most `wait` (or `maxDelay`) ms.
    if (this.#d.leading) (timer as { unref?: () => void }).unref?.();
    this.#pending.set(key, { state, held, timer });
    return action === 'deliver' ? this.#deliver(key, event) : Promise.resolve();
  }

  #due(key: K): void {
    const p = this.#pending.get(key);
    if (p === undefined) return;
    this.#pending.delete(key);
    this.#send(key, p);
  }

  #send(key: K, p: Pending<I>): void {
    if (p.held === undefined) return;
    this.held--;
    // Its sender was answered at once: a failure to deliver (maxConcurrent, closed) goes to the merged output.
    this.#deliver(key, p.held.event).catch((error: unknown) => this.#lost(key, error));
  }

  /** `end(key)` / `close()`: a held trailing event is delivered now (before the end); a quiet period ends. */
  flush(key: K): void {
    const p = this.#pending.get(key);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.#pending.delete(key);
    this.#send(key, p);
  }

  /** Every key's, as `flush`. */
  flushAll(): void {
    for (const key of [...this.#pending.keys()]) this.flush(key);
  }

  /** The reader left (every session cancelled): held events are dropped, timers stopped. */
  dropAll(): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      if (p.held !== undefined) {
        this.held--;
        this.dropped++;
      }
    }
    this.#pending.clear();
  }
}
