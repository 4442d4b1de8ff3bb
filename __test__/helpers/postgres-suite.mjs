// The set-up every Postgres test file shares: one private postgres for the whole file (see postgres-server.mjs),
// started before its first test and stopped after its last, and pg.Pools on it (ended with the server).
import { after, before } from 'node:test';
import { startPostgres } from './postgres-server.mjs';

/** The file's postgres (see startPostgres), once `usePostgres()`'s hook has run. */
export let postgres;
let shared;

/** Starts the file's postgres before its first test and stops it after its last. */
export function usePostgres(options) {
  before(async () => {
    postgres = await startPostgres(options);
  });
  after(async () => {
    shared = undefined;
    await postgres?.stop();
  });
}

/** One pg.Pool on the file's postgres, shared by the file's tests. */
export function pool() {
  shared ??= postgres.pool({ max: 8 });
  return shared;
}

/**
 * A pool on the file's postgres that counts the statements run through it (`queries()`), for tests that check a
 * reader stopped reading. Ended with the server.
 */
export function countingPool(options = {}) {
  const p = postgres.pool({ max: 8, ...options });
  let n = 0;
  const query = p.query.bind(p);
  p.query = (...args) => {
    n++;
    return query(...args);
  };
  p.queries = () => n;
  return p;
}
