// A log's door to the user's pool: every call of the log goes through it, counted while in flight (a statement until
// it settles, a checked-out connection until its release), and none starts once the log is closing (ERR_VELO_CLOSED,
// without touching the pool). `close()` resolves once nothing is in flight: the user may end the pool right after a
// worker's close() resolved, and no call of velo-stream meets the ended pool.
import { workerClosedError } from '../../errors';
import { RAW_CLIENT } from './begun';
import { type ConnectionErrors, type PgClientLike, type PgPoolLike, type PgResult, RAW_POOL, connectListening } from './sql';

export class PoolGate {
  /** The pool the log calls: the user's, behind the door. */
  readonly pool: PgPoolLike;
  readonly #inflight = new Set<Promise<void>>();
  #closed = false;

  constructor(raw: PgPoolLike) {
    this.pool = {
      [RAW_POOL]: raw,
      query: (config: { name?: string; text: string; values?: unknown[] } | string, values?: unknown[]): Promise<PgResult> => {
        if (this.#closed) return Promise.reject(workerClosedError());
        return this.#track(raw.query(typeof config === 'string' ? { text: config, values } : config));
      },
      // (`onError` on the user's client as its pool hands it over: sql.ts, connectListening.)
      connect: async (onError?: ConnectionErrors): Promise<PgClientLike> => {
        if (this.#closed) throw workerClosedError();
        let done = () => {};
        const held = new Promise<void>((resolve) => (done = resolve));
        this.#add(held);
        let client: PgClientLike;
        try {
          client = onError === undefined ? await raw.connect() : await connectListening(raw, onError);
        } catch (error) {
          done();
          throw error;
        }
        // (What velo-stream uses of a client: its release ends the checkout's count. The client itself, for begun.ts.)
        const gated: PgClientLike & { [RAW_CLIENT]: PgClientLike } = {
          [RAW_CLIENT]: client,
          query: (config: never, values?: unknown[]) => client.query(config, values),
          release: (destroy?: boolean | Error) => {
            done();
            client.release(destroy);
          },
          on: (event: never, listener: never) => client.on(event, listener),
          removeListener: (event: never, listener: never) => client.removeListener(event, listener),
        };
        return gated;
      },
      get options() {
        return raw.options;
      },
      get totalCount() {
        return raw.totalCount;
      },
      get idleCount() {
        return raw.idleCount;
      },
      get waitingCount() {
        return raw.waitingCount;
      },
    } as PgPoolLike;
  }

  #add(settled: Promise<void>): void {
    this.#inflight.add(settled);
    void settled.then(() => this.#inflight.delete(settled));
  }

  #track<T>(call: Promise<T>): Promise<T> {
    this.#add(
      call.then(
        () => {},
        () => {},
      ),
    );
    return call;
  }

  /** No call starts from here on; resolves once none is in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#inflight.size > 0) await Promise.all(this.#inflight);
  }
}
