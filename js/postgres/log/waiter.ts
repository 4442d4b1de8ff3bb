// Waiting for input on Postgres: LISTEN on the function's channel is only a hint (a NOTIFY sent before the LISTEN
// began never arrives, and LISTEN does not work behind a transaction-mode pooler), so every wait also polls: it
// looks at once, at each notification for one of its partitions, and every `pollInterval` ms.
import { createHash } from 'node:crypto';
import type { PgClientLike, PgPoolLike } from './sql';

/** The NOTIFY channel of a function: a plain identifier made from a digest of its schema and name. */
export function channelOf(schema: string, fn: string): string {
  return `velo_${createHash('sha1').update(`${schema}\0${fn}`).digest('hex').slice(0, 32)}`;
}

/** One LISTEN connection per log, taken from the pool at its first wait, and the waits that listen on it. */
export class Waiter {
  readonly #pool: PgPoolLike;
  /** null: no LISTEN (waits only poll). */
  readonly #channel: string | null;
  readonly #onError: (error: Error) => void;
  #client: PgClientLike | null = null;
  #connecting: Promise<void> | null = null;
  #closed = false;
  /** Each pending wait's wake-up: called with the partition of a notification, or undefined (interrupt, close). */
  readonly #waits = new Set<(partition: number | undefined) => void>();

  constructor(pool: PgPoolLike, channel: string | null, onError: (error: Error) => void) {
    this.#pool = pool;
    this.#channel = channel;
    this.#onError = onError;
  }

  readonly #onNotification = (message: { channel: string; payload?: string }): void => {
    if (message.channel !== this.#channel) return;
    const p = Number(message.payload);
    for (const wake of [...this.#waits]) wake(p);
  };

  readonly #onClientError = (error: Error): void => {
    const client = this.#client;
    this.#client = null;
    this.#connecting = null;
    client?.release(error);
    if (!this.#closed) this.#onError(error);
  };

  /** LISTENs once (again after its connection failed); a failure leaves the waits to their polls. */
  #listen(): void {
    if (this.#channel === null || this.#client !== null || this.#connecting !== null || this.#closed) return;
    const channel = this.#channel;
    this.#connecting = (async () => {
      let client: PgClientLike | null = null;
      try {
        client = await this.#pool.connect();
        client.on('notification', this.#onNotification);
        client.on('error', this.#onClientError);
        // The channel is an identifier made by channelOf (velo_ and hex digits): safe to splice.
        await client.query(`LISTEN ${channel}`);
        if (this.#closed) throw new Error('closed');
        this.#client = client;
      } catch (error) {
        client?.removeListener('notification', this.#onNotification);
        client?.removeListener('error', this.#onClientError);
        client?.release(true);
        this.#connecting = null;
        if (!this.#closed) this.#onError(error as Error);
      }
    })();
  }

  /**
   * Resolves with what `check` finds (a non-empty list) or [] after `ms` (0: never), or at `interrupt()`. `check` runs
   * at once, at each notification for one of `partitions`, and every `pollInterval` ms.
   */
  wait(partitions: ReadonlySet<number>, ms: number, pollInterval: number, check: () => Promise<number[]>): Promise<number[]> {
    this.#listen();
    return new Promise<number[]>((resolve, reject) => {
      let done = false;
      let checking = false;
      let again = false;
      const finish = (found: number[] | Error) => {
        if (done) return;
        done = true;
        this.#waits.delete(wake);
        clearInterval(poll);
        if (deadline !== null) clearTimeout(deadline);
        if (found instanceof Error) reject(found);
        else resolve(found);
      };
      const look = () => {
        if (done) return;
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        check().then(
          (found) => {
            checking = false;
            if (found.length > 0) finish(found);
            else if (again) {
              again = false;
              look();
            }
          },
          (error: unknown) => {
            checking = false;
            finish(error as Error);
          },
        );
      };
      const wake = (p: number | undefined) => {
        if (p === undefined) finish([]);
        else if (partitions.has(p)) look();
      };
      this.#waits.add(wake);
      const poll = setInterval(look, pollInterval);
      const deadline = ms > 0 ? setTimeout(() => finish([]), ms) : null;
      look();
    });
  }

  /** Ends the pending waits as if their time had passed. */
  interrupt(): void {
    for (const wake of [...this.#waits]) wake(undefined);
  }

  /** Ends the waits and gives the LISTEN connection up (destroyed: it is in LISTEN state). */
  async close(): Promise<void> {
    this.#closed = true;
    this.interrupt();
    await this.#connecting?.catch(() => {});
    const client = this.#client;
    this.#client = null;
    if (client !== null) {
      client.removeListener('notification', this.#onNotification);
      client.removeListener('error', this.#onClientError);
      client.release(true);
    }
  }
}
