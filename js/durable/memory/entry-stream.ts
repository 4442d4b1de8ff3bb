// A Redis stream as the in-memory log keeps one: entries in id order, each id `<ms>-<seq>` above the last, found
// by id, read after or from an id, trimmed before one.
/** An entry id as numbers: `[ms, seq]`. */
export type Id = readonly [number, number];

/** `'0'`, `'<ms>'` and `'<ms>-<seq>'` as Redis reads an id (a seq past 2^53 loses precision: only order matters). */
export function parseId(id: string): Id {
  const dash = id.indexOf('-');
  return dash < 0 ? [Number(id), 0] : [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

export function compare(a: Id, b: Id): number {
  return a[0] - b[0] || a[1] - b[1];
}

/**
 * A stream entry: its fields as Redis returns them with Buffer replies, `[name, value, name, value, ...]`. Kept as
 * one buffer and where each field ends, the list made at each read: a simulated run keeps every output it wrote,
 * and a Buffer per field made an output cost about 1.2 KB (a handler yielding without end at one time ran out of
 * memory before its bound of steps).
 */
class Entry {
  readonly #data: Buffer;
  readonly #ends: number[];
  constructor(
    readonly id: string,
    readonly at: Id,
    fields: ReadonlyArray<readonly [string, Buffer | string]>,
  ) {
    const parts: Buffer[] = [];
    this.#ends = [];
    let end = 0;
    for (const [name, value] of fields) {
      for (const part of [Buffer.from(name), Buffer.from(value)]) {
        parts.push(part);
        this.#ends.push((end += part.length));
      }
    }
    this.#data = Buffer.concat(parts, end);
  }

  /** Its fields, each a fresh view (a reader may keep it). */
  get list(): Buffer[] {
    const list: Buffer[] = [];
    let start = 0;
    for (const end of this.#ends) {
      list.push(this.#data.subarray(start, end));
      start = end;
    }
    return list;
  }
}

/** A stream: entries in id order, and the last id it gave (kept after a trim, as Redis keeps it). */
export class Stream {
  entries: Entry[] = [];
  last: Id = [0, 0];

  /**
   * XADD `*`: the clock's ms, or the last id's ms with the next seq when the clock has not passed it. With `given`,
   * XADD `<given>`: that id (a replay's recorded one), refused unless after the last (as Redis refuses it).
   */
  add(now: number, fields: ReadonlyArray<readonly [string, Buffer | string]>, given?: string): string {
    const at: Id = given !== undefined ? parseId(given) : now > this.last[0] ? [now, 0] : [this.last[0], this.last[1] + 1];
    if (compare(at, this.last) <= 0)
      throw new Error(`XADD ${given}: the id must be after the stream's last, ${this.last.join('-')}`);
    this.last = at;
    const id = given ?? `${at[0]}-${at[1]}`;
    this.entries.push(new Entry(id, at, fields));
    return id;
  }

  /** Index of the first entry after `id`. */
  after(id: Id): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(this.entries[mid].at, id) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the first entry at or after `id`. */
  from(id: Id): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(this.entries[mid].at, id) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  find(id: string): Entry | undefined {
    const at = parseId(id);
    const e = this.entries[this.from(at)];
    return e !== undefined && compare(e.at, at) === 0 ? e : undefined;
  }

  /** XTRIM MINID: removes the entries before `min`; how many. */
  trimBefore(min: Id): number {
    let n = 0;
    while (n < this.entries.length && compare(this.entries[n].at, min) < 0) n++;
    this.entries.splice(0, n);
    return n;
  }
}

/** The consumer group `velo` of an input, with its one consumer: the last id delivered, and the pending ids in order. */
