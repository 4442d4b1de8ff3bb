// A transaction's BEGIN sent with its first statement, in one round trip. node-postgres sends one statement per round
// trip (it waits for each answer before the next), but a `Query` of its own may send more messages before the Sync
// that ends one: `Begun` sends its lead statements (BEGIN, and SET LOCAL) parsed, bound and executed unnamed, then
// its statement as a `Query` does, then the one Sync. The server runs them in order and answers once; the client
// gets each statement's result, the last one the statement's. A client that is not node-postgres' (no `Query` of its
// own) sends BEGIN on its own, as before.
//
// node-postgres counts a named statement parsed on the first ParseComplete of its round trip (here BEGIN's): if that
// round trip fails, its count may name a statement the server never parsed, so the caller destroys the connection.

/** On a gated pool's client (gate.ts): the pool's own client behind it. */
export const RAW_CLIENT = Symbol('velo.rawClient');

/**
 * On a statement run as the user's are (gate.ts: not bounded by `callTimeout`, watched instead): an `effects`
 * statement, a migration's. Never folded into a BEGIN's round trip, where the gate would bound it as velo-stream's.
 */
export const USER_STATEMENT = Symbol('velo.userStatement');

/** A statement as velo-stream gives it: named (prepared once per connection), with its parameters. */
export interface NamedStatement {
  readonly name: string;
  readonly text: string;
  readonly values?: unknown[];
}

/** The messages of a node-postgres connection a `Begun` sends. */
interface PgConnection {
  parse(message: { text: string; name: string; types: unknown[] }): void;
  bind(message: { portal: string; statement: string; values: unknown[] }): void;
  execute(message: { portal: string; rows: number }): void;
}

/** node-postgres' `Query`, as `Begun` extends it. */
type PgQueryClass = new (config: NamedStatement) => {
  requiresPreparation(): boolean;
  prepare(connection: PgConnection): void;
};

/** A statement sent after its lead in one round trip; answers through `callback` (node-postgres' submittable). */
export interface BegunQuery {
  callback?: (error: Error | null, results: unknown) => void;
  /** It begins a transaction (for a pool's counts: the BEGIN it carries is no statement of its own). */
  readonly beginsTransaction: true;
}
type BegunClass = new (statement: NamedStatement, lead: readonly string[]) => BegunQuery;

/** `Begun` per node-postgres `Query` class (one per copy of pg in the process), or null for a client without one. */
const made = new WeakMap<object, BegunClass | null>();

/** The `Begun` of `client`'s own node-postgres, or null when it is not node-postgres' client. */
export function begunOf(client: object): BegunClass | null {
  const raw = (client as { [RAW_CLIENT]?: object })[RAW_CLIENT] ?? client;
  const Query: unknown = (raw as { constructor?: { Query?: unknown } }).constructor?.Query;
  if (typeof Query !== 'function') return null;
  let Begun = made.get(Query);
  if (Begun === undefined) {
    const proto = (Query as { prototype?: { prepare?: unknown; requiresPreparation?: unknown } }).prototype;
    Begun =
      typeof proto?.prepare === 'function' && typeof proto.requiresPreparation === 'function'
        ? begunFrom(Query as PgQueryClass)
        : null;
    made.set(Query, Begun);
  }
  return Begun;
}

function begunFrom(Query: PgQueryClass): BegunClass {
  return class Begun extends Query {
    readonly beginsTransaction = true as const;
    readonly #lead: readonly string[];
    constructor(statement: NamedStatement, lead: readonly string[]) {
      super(statement);
      this.#lead = lead;
    }
    /** Always the extended protocol: its lead goes before it in the same round trip. */
    override requiresPreparation(): boolean {
      return true;
    }
    override prepare(connection: PgConnection): void {
      for (const text of this.#lead) {
        connection.parse({ text, name: '', types: [] });
        connection.bind({ portal: '', statement: '', values: [] });
        connection.execute({ portal: '', rows: 0 });
      }
      super.prepare(connection);
    }
  };
}

/** `statement` run on `client` after `lead`, in one round trip (`Begun`: `begunOf(client)`): its result. */
export function runBegun<R>(client: object, Begun: BegunClass, lead: readonly string[], statement: NamedStatement): Promise<R> {
  const query = new Begun(statement, lead);
  return new Promise<R>((resolve, reject) => {
    query.callback = (error, results) => {
      if (error !== null && error !== undefined) reject(error);
      else resolve((Array.isArray(results) ? results[results.length - 1] : results) as R);
    };
    (client as { query(query: BegunQuery): unknown }).query(query);
  });
}
