// A worker's upkeep of its partitions on Postgres, those asked for in one turn of the event loop in one statement: a
// worker measures the lag of every partition it holds at once (each balance) and trims them at once, so that these
// take one connection of the pool for a moment, not one each for a burst that live reads and commits queue behind.
// Each partition is answered as a statement of its own would answer it; a trim is fenced by its own lease.
import { FencedError } from '../../errors';
import { NOW, type PgPoolLike, run } from './sql';

/** How long a pinned age read with the lag stands in for `pinned`'s own read, ms. */
const MEASURED_MS = 100;

type Settle<T> = (value: T | Error) => void;

/** Gathers the calls of one turn of the event loop, by partition; `flush` gets them at the turn's end. */
class Turn<A, T> {
  #turn: Map<number, { ask: A; settles: Settle<T>[] }> | null = null;

  constructor(readonly flush: (asks: Map<number, A>) => Promise<Map<number, T | Error>>) {}

  ask(p: number, ask: A): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#turn === null) {
        this.#turn = new Map();
        setImmediate(() => this.#end());
      }
      const settle: Settle<T> = (value) => (value instanceof Error ? reject(value) : resolve(value));
      const same = this.#turn.get(p);
      if (same === undefined) this.#turn.set(p, { ask, settles: [settle] });
      else same.settles.push(settle);
    });
  }

  #end(): void {
    const turn = this.#turn ?? new Map<number, { ask: A; settles: Settle<T>[] }>();
    this.#turn = null;
    const asks = new Map([...turn].sort(([a], [b]) => a - b).map(([p, x]) => [p, x.ask]));
    this.flush(asks).then(
      (found) => {
        for (const [p, x] of turn) for (const settle of x.settles) settle(found.get(p) ?? new Error(`No answer for ${p}`));
      },
      (error: unknown) => {
        for (const x of turn.values()) for (const settle of x.settles) settle(error as Error);
      },
    );
  }
}

export class Upkeep {
  /** Pinned ages the lag read, by partition, for the `pinned` that follows it. */
  readonly #measured = new Map<number, { pinned: number; at: number }>();
  readonly #lags: Turn<null, number>;
  readonly #trims: Turn<string, number>;

  constructor(
    readonly pool: PgPoolLike,
    readonly S: string,
    readonly fn: string,
    readonly fencedMessage: string,
  ) {
    this.#lags = new Turn((asks) => this.#lag([...asks.keys()]));
    this.#trims = new Turn((asks) => this.#trim(asks));
  }

  /** Entries of partition `p` not yet delivered to its owner (with its pinned age, for `pinned`). */
  lag(p: number): Promise<number> {
    return this.#lags.ask(p, null);
  }

  /** The age of partition `p`'s oldest pending entry, ms (0: none): the lag's reading if just taken. */
  async pinned(p: number): Promise<number> {
    const measured = this.#measured.get(p);
    this.#measured.delete(p);
    if (measured !== undefined && performance.now() - measured.at < MEASURED_MS) return measured.pinned;
    const { rows } = await run(
      this.pool,
      `SELECT greatest(0, ${NOW} - ms) AS age FROM ${this.S}.pending WHERE fn = $1 AND p = $2 ORDER BY k LIMIT 1`,
      [this.fn, p],
    );
    return rows.length === 0 ? 0 : Number(rows[0].age);
  }

  /**
   * Removes partition `p`'s entries before its oldest pending one (with none pending, up to its last delivered:
   * nothing undelivered or pending goes) and the ends kept before them, if `token` still holds its lease: how many
   * entries went. FencedError if not.
   */
  trim(p: number, token: string): Promise<number> {
    return this.#trims.ask(p, token);
  }

  async #lag(ps: number[]): Promise<Map<number, number>> {
    const S = this.S;
    const { rows } = await run(
      this.pool,
      `SELECT w.p,
              (SELECT count(*) FROM ${S}.entries e, ${S}.cursors c
                WHERE c.fn = $1 AND c.p = w.p AND e.fn = $1 AND e.p = w.p
                  AND (e.ms, e.seq) > (c.delivered_ms, c.delivered_seq)) AS n,
              (SELECT greatest(0, ${NOW} - ms) FROM ${S}.pending WHERE fn = $1 AND p = w.p ORDER BY k LIMIT 1) AS age
         FROM unnest($2::integer[]) AS w(p)`,
      [this.fn, ps],
    );
    const found = new Map<number, number>();
    const at = performance.now();
    for (const r of rows) {
      const p = Number(r.p);
      this.#measured.set(p, { pinned: r.age === null ? 0 : Number(r.age), at });
      found.set(p, Number(r.n));
    }
    return found;
  }

  async #trim(asks: Map<number, string>): Promise<Map<number, number | Error>> {
    const S = this.S;
    // One statement (its own transaction): each lease row FOR KEY SHARE (a grant waits for it), in partition order.
    const { rows } = await run(
      this.pool,
      `WITH w AS (SELECT * FROM unnest($2::integer[], $3::text[]) AS w(p, token)),
            f AS (SELECT w.p, l.token = w.token AND l.until_ms >= ${NOW} AS ok
                    FROM w JOIN ${S}.leases l ON l.fn = $1 AND l.p = w.p ORDER BY w.p FOR KEY SHARE OF l),
            b AS (SELECT f.p, coalesce(o.ms, c.delivered_ms) AS ms, coalesce(o.seq, c.delivered_seq) AS seq
                    FROM f JOIN ${S}.cursors c ON c.fn = $1 AND c.p = f.p
                    LEFT JOIN LATERAL (SELECT ms, seq FROM ${S}.pending WHERE fn = $1 AND p = f.p ORDER BY k LIMIT 1) o ON true
                   WHERE f.ok),
            gone AS (DELETE FROM ${S}.ends x USING b WHERE x.fn = $1 AND x.p = b.p AND x.ms < b.ms),
            d AS (DELETE FROM ${S}.entries x USING b WHERE x.fn = $1 AND x.p = b.p AND (x.ms, x.seq) < (b.ms, b.seq)
                  RETURNING x.p)
       SELECT f.p, f.ok, (SELECT count(*) FROM d WHERE d.p = f.p) AS n FROM f`,
      [this.fn, [...asks.keys()], [...asks.values()]],
    );
    const found = new Map<number, number | Error>();
    for (const p of asks.keys()) found.set(p, new FencedError(p, this.fencedMessage));
    for (const r of rows) if (r.ok === true) found.set(Number(r.p), Number(r.n));
    return found;
  }
}
