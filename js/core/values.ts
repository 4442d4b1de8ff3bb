// The value table: where the core's references to non-number values point.
//
// The core holds numbers itself and every other value as an index into this
// table (see crates/velo-node/src/slot.rs). An entry lives exactly as long as
// the core holds its index: JavaScript frees it when the core hands the value
// back (a take, or a send refused or handed straight to a waiting reader),
// and reaps the indices of values the core dropped (a cancel, a cleared
// buffer, a garbage-collected stream).
import { freeValues as free, ops, scratchU32, valueTable as table } from './addon';

// Shared by every copy of the module on this thread (see `ThreadState`).

/** Stores `value`; returns its index. */
export function put(value: unknown): number {
  const i = free.length > 0 ? (free.pop() as number) : table.length;
  table[i] = value;
  return i;
}

/** Removes and returns the value at `i`. */
export function take(i: number): unknown {
  const value = table[i];
  table[i] = undefined;
  free.push(i);
  return value;
}

/** Frees `i` without reading it. */
export function drop(i: number): void {
  table[i] = undefined;
  free.push(i);
}

/** Frees the entries of every value the core has dropped. */
export function reap(): void {
  for (;;) {
    const n = ops.released();
    for (let k = 0; k < n; k++) drop(scratchU32[k] as number);
    if (n < scratchU32.length) return;
  }
}

/** Entries in use (for tests: nothing may leak). */
export function tableSize(): number {
  return table.length - free.length;
}
