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

/**
 * A private postgres of its own (beside the file's) that a test restarts: `restart({ down })` stops it by PID
 * (SIGINT: fast shutdown, which ends every session), waits `down` ms, and starts it again on the same port and
 * data directory. `stop()` ends its pools, stops it and removes its folder. Durable (fsync on): what a commit
 * acknowledged survives the restart.
 */
export async function restartablePostgres() {
  const { bin, initCluster, serverVersion } = await import('./postgres-server.mjs');
  const { freePort } = await import('./free-port.mjs');
  const { spawn } = await import('node:child_process');
  const { rmSync } = await import('node:fs');
  const { default: pg } = await import('pg');
  serverVersion();
  const { who, dir, data } = initCluster('velo-pg-restart-');
  const port = await freePort();
  const config = { host: '127.0.0.1', port, user: 'velo', database: 'postgres' };
  let child = null;
  let log = '';
  const reap = () => child?.exitCode === null && child.kill('SIGQUIT');
  process.once('exit', reap);
  const up = async () => {
    log = '';
    child = spawn(
      bin('postgres'),
      ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=100'],
      { stdio: ['ignore', 'pipe', 'pipe'], ...who },
    );
    child.stdout.on('data', (d) => (log += d));
    child.stderr.on('data', (d) => (log += d));
    child.done = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const c = new pg.Client(config);
      c.on('error', () => {});
      try {
        await c.connect();
        await c.end();
        return;
      } catch {
        await c.end().catch(() => {});
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`postgres did not start on ${port}:\n${log}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  };
  const down = async () => {
    child.kill('SIGINT');
    const { code, signal } = await child.done;
    if (code !== 0 && signal !== 'SIGINT') throw new Error(`postgres exited with ${code ?? signal}:\n${log}`);
  };
  await up();
  const pools = [];
  let stopped = Promise.resolve();
  return {
    port,
    config,
    /** Resolves once the server of the last `restart()` has exited (its connections all gone), before it starts again. */
    get stopped() {
      return stopped;
    },
    get pid() {
      return child.pid;
    },
    pool(options = {}) {
      const p = new pg.Pool({ ...config, ...options });
      p.on('error', () => {});
      pools.push(p);
      return p;
    },
    /**
     * Stops the server by PID, waits `ms` (and for `until`, a promise, when given), starts it again on the same port
     * and data; resolves once it answers.
     */
    async restart({ ms = 0, until } = {}) {
      stopped = down();
      await stopped;
      await new Promise((resolve) => setTimeout(resolve, ms));
      await until;
      await up();
    },
    async stop() {
      process.removeListener('exit', reap);
      await Promise.all(pools.splice(0).map((p) => p.end().catch(() => {})));
      if (child.exitCode === null) await down();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
