// An owner's commits that `commit_9` takes (commit-one.ts), those asked for in one turn of the event loop applied
// together, a few partitions at a time: one statement, in one transaction with one call of the effects, on one
// connection of the pool. A worker commits the partitions a read of one turn served at about the same time, so under
// live load this is one transaction (BEGIN, the statement, the effects, COMMIT) for several partitions, not one each.
// Invariants: each partition's commit gives the result it gets alone (its outputs' ids, or FencedError when its lease
// is gone, which writes nothing); the effects get the outputs the transaction writes, in partition order and each
// partition's in its commit's order, in that transaction; if anything of the shared transaction fails (the effects
// throw, the statement or COMMIT fails) it is rolled back and each commit is applied alone, its effects called with
// its own outputs, so that a failure is its own partition's only.
import type { Commit, CommitResult, Lease } from '../../durable/common/transport';
import { FencedError } from '../../errors';
import type { CommitEffects, WrittenOutput } from './commit';
import { type OneAsk, type OneResult, commitInOne, commitManyInOne } from './commit-one';
import { runEffects } from './effects-client';
import { type PgClientLike, type PgPoolLike, bytes, transaction } from './sql';

/**
 * The most partitions one transaction commits: the turn's commits go in groups of this many, each on a connection
 * of its own, so that a partition's commit waits behind at most three others' effects.
 */
const GROUP = 4;

interface Asked extends OneAsk {
  readonly resolve: (result: CommitResult) => void;
  readonly reject: (error: Error) => void;
}

export class CommitTurn {
  /** The commits asked for in this turn of the event loop, by partition (null: none). */
  #turn: Map<number, Asked> | null = null;

  constructor(
    readonly pool: PgPoolLike,
    readonly S: string,
    readonly fn: string,
    readonly effects: CommitEffects | undefined,
    /** The idle limit of a transaction with effects from its locks on, ms (`commit_9`'s `a_idle`). */
    readonly idle: number,
    readonly fencedMessage: string,
    /** Told of a shared transaction's failure (the log's `onError`): each commit is then applied alone. */
    readonly report: (error: Error) => void,
  ) {}

  /** Applies `commit` (one `inOne` accepts) for `lease`, with the others asked for in this turn. */
  commit(lease: Lease, commit: Commit): Promise<CommitResult> {
    return new Promise<CommitResult>((resolve, reject) => {
      const ids = commit.serial !== undefined && commit.ids !== false;
      const asked: Asked = { lease, commit, ids, resolve, reject };
      if (this.#turn === null) {
        this.#turn = new Map();
        setImmediate(() => this.#flush());
      }
      // (A partition's outbox has one commit in flight: a second in one turn is never a worker's; alone then.)
      if (this.#turn.has(lease.partition)) this.#alone(asked);
      else this.#turn.set(lease.partition, asked);
    });
  }

  #flush(): void {
    const list = [...(this.#turn ?? new Map<number, Asked>()).values()].sort((a, b) => a.lease.partition - b.lease.partition);
    this.#turn = null;
    for (let at = 0; at < list.length; at += GROUP) {
      const group = list.slice(at, at + GROUP);
      if (group.length === 1) this.#alone(group[0]);
      else {
        this.#apply(group).then(
          (results) => group.forEach((asked, i) => this.#settle(asked, results[i])),
          (error: unknown) => {
            this.report(error as Error);
            group.forEach((asked) => this.#alone(asked));
          },
        );
      }
    }
  }

  #settle(asked: Asked, done: OneResult | null): void {
    if (done === null) asked.reject(new FencedError(asked.lease.partition, this.fencedMessage));
    else asked.resolve({ ids: asked.ids ? [...done.ids] : [], diverged: [] });
  }

  #alone(asked: Asked): void {
    this.#apply([asked]).then(
      ([done]) => this.#settle(asked, done),
      (error: unknown) => asked.reject(error as Error),
    );
  }

  /** `list`'s commits in one statement; with effects, in a transaction with each written partition's effects. */
  async #apply(list: readonly Asked[]): Promise<(OneResult | null)[]> {
    const effects = this.effects;
    const statement = (db: PgPoolLike | PgClientLike, idle: number) =>
      list.length === 1
        ? commitInOne(db, this.S, this.fn, list[0].lease, list[0].commit, list[0].ids || effects !== undefined, idle).then(
            (done) => [done],
          )
        : commitManyInOne(
            db,
            this.S,
            this.fn,
            list.map((asked) => ({ ...asked, ids: asked.ids || effects !== undefined })),
            idle,
          );
    if (effects === undefined) return statement(this.pool, 0);
    // (BEGIN sets no idle limit: nothing is held yet; the statement sets it once it holds its locks.)
    return transaction(
      this.pool,
      async (client) => {
        const results = await statement(client, this.idle);
        const written = results.flatMap((done, i) => (done === null ? [] : writtenOf(list[i], done)));
        if (written.length > 0) {
          // (Guarded: no transaction control, no call once the callback settled; see effects-client.ts.)
          await runEffects(client, effects, written);
        }
        return results;
      },
      this.idle,
      0,
    );
  }
}

/** The outputs `commit_9` wrote of `commit` (none for the retry of a commit applied before). */
function writtenOf({ lease, commit }: Asked, done: OneResult): WrittenOutput[] {
  const written: WrittenOutput[] = [];
  if (!done.wrote) return written;
  const partition = lease.partition;
  commit.outputs.forEach((o, i) => {
    const id = done.ids[i];
    if (id === null || id === undefined) return;
    const field = o.error !== undefined ? 'e' : 'v';
    const data = bytes(o.error ?? o.payload ?? '');
    written.push({ partition, id, sid: o.sid, seq: o.seq, key: o.key, field, data, traceparent: o.traceparent ?? null });
  });
  return written;
}
