// A private postgres for the Postgres tests: initdb into its own temporary directory, a free port on 127.0.0.1
// (and a Unix socket in that directory), stopped by PID. The shared server on 5432 is never used. The binaries
// come from $VELO_PG_BIN, else Debian's /usr/lib/postgresql/<version>/bin, else PATH; without them the tests fail
// (never skip): install the Debian package `postgresql-15`. postgres refuses to run as root: as root, the server
// runs as the `postgres` user (spawn's uid/gid), its directory owned by it.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './free-port.mjs';

/** The folder of initdb and postgres: $VELO_PG_BIN, the newest /usr/lib/postgresql/N/bin, or '' (PATH). */
export function binDir() {
  if (process.env.VELO_PG_BIN) return process.env.VELO_PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return '';
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length === 0 ? '' : join(root, versions[0], 'bin');
}

/** The path of one of the server's binaries (initdb, postgres), by binDir(). */
export const bin = (name) => (binDir() === '' ? name : join(binDir(), name));

/** postgres --version, or a loud failure naming what to install. */
export function serverVersion() {
  try {
    return execFileSync(bin('postgres'), ['--version'], { encoding: 'utf8' }).trim();
  } catch (error) {
    throw new Error(
      `postgres was not found (${error.message}): the velo-stream Postgres tests need initdb and postgres. Install the Debian package \`postgresql-15\`, or set VELO_PG_BIN to the folder that holds them.`,
    );
  }
}

/** The uid and gid to run as: this process's, or the `postgres` user's when this process is root. */
export function identity() {
  if (process.getuid?.() !== 0) return {};
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('running as root, and there is no `postgres` user to run postgres as (postgres refuses root)');
  }
}

/**
 * A new cluster: a temporary folder named from `prefix` (owned by the user the server runs as, `who`), its data
 * directory `data` made by initdb with the superuser `velo` trusted.
 */
export function initCluster(prefix) {
  const who = identity();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (who.uid !== undefined) chownSync(dir, who.uid, who.gid);
  const data = join(dir, 'data');
  execFileSync(bin('initdb'), ['-D', data, '-U', 'velo', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync'], {
    stdio: 'pipe',
    ...who,
  });
  return { who, dir, data };
}

/**
 * Starts a private postgres. `durable` false (default): fsync off (fast; a kill of the server may lose writes).
 * `settings`: more server settings, `{ name: value }` (each passed as `-c name=value`).
 * Returns { port, dir, pid, version, config (for a pg.Pool), pool(options), stop() }.
 */
export async function startPostgres({ durable = false, settings = {} } = {}) {
  const version = serverVersion();
  const { who, dir, data } = initCluster('velo-pg-');
  let child;
  let port;
  let log = '';
  let exited = null;
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=100'];
    if (!durable) args.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
    for (const [setting, value] of Object.entries(settings)) args.push('-c', `${setting}=${value}`);
    log = '';
    exited = null;
    child = spawn(bin('postgres'), args, { stdio: ['ignore', 'pipe', 'pipe'], ...who });
    child.stdout.on('data', (d) => (log += d));
    child.stderr.on('data', (d) => (log += d));
    const done = new Promise((resolve) => child.once('exit', (code, signal) => resolve((exited = { code, signal }))));
    child.done = done;
    const ready = await waitReady(port, () => exited !== null);
    if (ready) break;
    if (attempt === 3 || !/could not bind|Address already in use/.test(log)) {
      if (exited === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`postgres did not start on port ${port}:\n${log}`);
    }
  }
  // A test process that ends without stop() (a crash, a deadline, a signal) takes its server with it: postgres
  // outlives its parent otherwise. SIGQUIT: immediate shutdown (the folder stays behind then). A signal is raised
  // again once the server is told, with its default action.
  const reap = () => {
    if (exited === null) child.kill('SIGQUIT');
  };
  const onSignal = (signal) => {
    reap();
    for (const s of SIGNALS) process.removeListener(s, onSignal);
    process.kill(process.pid, signal);
  };
  process.once('exit', reap);
  for (const s of SIGNALS) process.once(s, onSignal);
  const pools = [];
  const config = { host: '127.0.0.1', port, user: 'velo', database: 'postgres' };
  return {
    dir,
    port,
    version,
    config,
    get pid() {
      return child.pid;
    },
    /** A pg.Pool on the server, ended by stop(). */
    pool(options = {}) {
      const p = new pg.Pool({ ...config, ...options });
      p.on('error', () => {}); // an idle client's error (the server stopping): the next query reports its own
      pools.push(p);
      return p;
    },
    /** Ends the pools, stops the server by PID (SIGINT: fast shutdown), checks it exited, removes its folder. */
    async stop() {
      process.removeListener('exit', reap);
      for (const s of SIGNALS) process.removeListener(s, onSignal);
      await Promise.all(pools.splice(0).map((p) => p.end().catch(() => {})));
      if (exited === null) child.kill('SIGINT');
      const { code, signal } = await child.done;
      rmSync(dir, { recursive: true, force: true });
      assert.ok(code === 0 || signal === 'SIGINT', `postgres exited with ${code ?? signal}:\n${log}`);
    },
  };
}

/** The signals that end a test process with a server still running (see startPostgres). */
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'];

/** Polls until the server accepts a connection (true), it exits (false), or 30 s pass (false). */
async function waitReady(port, gone) {
  const until = Date.now() + 30_000;
  while (Date.now() < until && !gone()) {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'velo', database: 'postgres' });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return true;
    } catch {
      await client.end().catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return false;
}
