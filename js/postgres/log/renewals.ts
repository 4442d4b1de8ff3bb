// A log's lease renewals: those asked for in one turn of the event loop (a worker renews all of its leases at once)
// go in one statement, so they take one connection of the pool, not one each.
import { NOW, type PgPoolLike, run, str } from './sql';

type Renewal = { p: number; token: string; ms: bigint; settle: (held: boolean | Error) => void };

export class Renewals {
  /** The renewals asked for in this turn of the event loop (null: none). */
  #turn: Renewal[] | null = null;

  constructor(
    readonly pool: PgPoolLike,
    readonly S: string,
    readonly fn: string,
  ) {}

  /** Whether partition `p`'s lease `token` held and now runs `ms` from the server's now. */
  renew(p: number, token: string, ms: bigint): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      if (this.#turn === null) {
        this.#turn = [];
        setImmediate(() => this.#flush());
      }
      this.#turn.push({ p, token, ms, settle: (held) => (held instanceof Error ? reject(held) : resolve(held)) });
    });
  }

  #flush(): void {
    const list = this.#turn ?? [];
    this.#turn = null;
    // (One statement per ttl, and per partition asked twice in a turn: never from one worker.)
    const groups: Renewal[][] = [];
    for (const r of list) {
      const group = groups.find((g) => g[0].ms === r.ms && !g.some((o) => o.p === r.p));
      if (group === undefined) groups.push([r]);
      else group.push(r);
    }
    for (const group of groups) {
      // No key column changes: FOR KEY SHARE (an owner's write in flight) does not block it.
      run(
        this.pool,
        `UPDATE ${this.S}.leases l SET until_ms = ${NOW} + $4::bigint
           FROM unnest($2::integer[], $3::text[]) AS w(p, token)
          WHERE l.fn = $1 AND l.p = w.p AND l.token = w.token AND l.until_ms >= ${NOW}
         RETURNING l.p`,
        [this.fn, group.map((r) => r.p), group.map((r) => r.token), str(group[0].ms)],
      ).then(
        ({ rows }) => {
          const held = new Set(rows.map((row) => Number(row.p)));
          for (const r of group) r.settle(held.has(r.p));
        },
        (error: unknown) => {
          for (const r of group) r.settle(error as Error);
        },
      );
    }
  }
}
