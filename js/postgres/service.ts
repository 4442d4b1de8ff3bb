// velo-stream/testing's harness for an integration test of a service on Postgres: a private cluster (initdb into a
// temporary directory, postgres on a free port of 127.0.0.1 and a Unix socket in that directory, fsync off unless
// asked), a fresh database in it, the service's worker processes, and an output collector read with
// postgresOutputs, all released by one `await using`: the server is stopped by its PID (a fast shutdown), never
// through a shared server. The harness itself (processes, collector, close, the reaping at exit) is the tier's, in
// durable/testing/service-*.ts, shared with redisService(); this file finds the binaries and starts the server.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, invalidType, invalidValue, testServerError } from '../errors';
import { ServiceHarness, type TestService, checkServiceOptions } from '../durable/testing/service-harness';
import type { OutputCollector } from '../durable/testing/service-outputs';
import { ServiceChild, freePort } from '../durable/testing/service-process';
import type { PgPoolLike } from './log/sql';
import { type PostgresOutputsOptions, postgresOutputs } from './clients/outputs';

/** The options of `postgresService()`. */
export interface PostgresServiceOptions {
  /**
   * The folder of the server's binaries (`initdb`, `postgres`). Default `$VELO_POSTGRES_BIN`, else
   * `pg_config --bindir`, else the newest `/usr/lib/postgresql/<version>/bin`.
   */
  bin?: string;
  /** Server settings, each given as `-c name=value`, e.g. `{ max_connections: 200 }`. The address and directories are the harness's. */
  settings?: Record<string, string | number | boolean>;
  /** Default false: fsync and synchronous commit off (fast; a kill -9 of the server itself may lose the last commits). */
  durable?: boolean;
  /** How long initdb, and then the server, may take to be ready, ms. Default 30000. */
  startTimeout?: number;
}

/** The options of `service.pool()`: node-postgres `pg.Pool` options; the connection settings are the service's. */
export interface PostgresServicePoolOptions {
  /** The most connections the pool opens. Default pg's (10). */
  max?: number;
  /** How long an idle connection is kept, ms. Default pg's (10000). */
  idleTimeoutMillis?: number;
  /** How long a connect may take, ms. Default pg's (no limit). */
  connectionTimeoutMillis?: number;
}

/** A private Postgres for a test, with the processes, pools and readers made from it. `await using` releases everything. */
export interface PostgresService extends TestService {
  /** `postgres://velo@127.0.0.1:<port>/velo`: given to each process as `DATABASE_URL` (and as `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`). */
  readonly url: string;
  /** The database the service made for this test (`velo`): fresh, in a cluster of its own. */
  readonly database: string;
  /** A node-postgres `pg.Pool` on the service's database (an `'error'` listener added), ended with the service. */
  pool(options?: PostgresServicePoolOptions): PgPoolLike;
  /** Reads a function's outputs from the start as they are written (the options of `postgresOutputs` but `pool`). */
  outputs<O = unknown>(options: Omit<PostgresOutputsOptions<O>, 'pool' | 'signal'>): OutputCollector<O>;
}

/** What the harness uses of node-postgres, loaded only when postgresService() is called. */
interface PgModule {
  Pool: new (
    config: object,
  ) => PgPoolLike & { end(): Promise<void>; on(event: 'error', listener: (error: Error) => void): unknown };
}

const WHAT = 'postgresService()';
const OPTIONS = ['bin', 'settings', 'durable', 'startTimeout'];
const POOL_OPTIONS = ['max', 'idleTimeoutMillis', 'connectionTimeoutMillis'];
const USER = 'velo';
const DATABASE = 'velo';
/** The settings the harness gives itself: the address, the socket and the files it owns. */
const OWN_SETTINGS = [
  'port',
  'listen_addresses',
  'unix_socket_directories',
  'data_directory',
  'config_file',
  'hba_file',
  'ident_file',
  'external_pid_file',
];
const INSTALL =
  'It starts a private Postgres for the test: install the server (Debian and Ubuntu: apt-get install postgresql-15; macOS: brew install postgresql@15), or point the bin option or $VELO_POSTGRES_BIN at the folder that holds initdb and postgres.';

const hasServer = (dir: string) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'));

/** The folder of initdb and postgres: `bin`, `$VELO_POSTGRES_BIN`, `pg_config --bindir`, `/usr/lib/postgresql/*\/bin`. */
function findBin(bin: string | undefined): string {
  const named =
    bin !== undefined
      ? ['the bin option', bin]
      : process.env.VELO_POSTGRES_BIN
        ? ['$VELO_POSTGRES_BIN', process.env.VELO_POSTGRES_BIN]
        : null;
  if (named !== null) {
    if (hasServer(named[1])) return named[1];
    throw testServerError(`${WHAT}: ${named[0]} is ${JSON.stringify(named[1])}, which holds no initdb and postgres. ${INSTALL}`);
  }
  const tried: string[] = [];
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (dir !== '' && hasServer(dir)) return dir;
    tried.push(`pg_config --bindir (${dir}: no server there)`);
  } catch {
    tried.push('pg_config --bindir (no pg_config)');
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const version of versions) if (hasServer(join(root, version, 'bin'))) return join(root, version, 'bin');
  tried.push(`${root}/*/bin (${versions.length === 0 ? 'none' : `no server in ${versions.join(', ')}`})`);
  throw testServerError(
    `${WHAT}: no PostgreSQL server binaries found: $VELO_POSTGRES_BIN unset, ${tried.join(', ')}. ${INSTALL}`,
  );
}

/** node-postgres, the optional peer dependency, loaded here only. */
async function loadPg(): Promise<PgModule> {
  try {
    // A specifier in a variable: TypeScript neither needs pg's types nor checks for the package at build time.
    const specifier: string = 'pg';
    const mod = (await import(specifier)) as unknown as Partial<PgModule> & { default?: Partial<PgModule> };
    const pg = mod.default?.Pool !== undefined ? mod.default : mod;
    if (typeof pg.Pool !== 'function') throw new TypeError('the module has no Pool');
    return pg as PgModule;
  } catch (error) {
    throw testServerError(
      `${WHAT}: cannot load the \`pg\` package (${(error as Error).message}). postgresService() connects with node-postgres, an optional peer dependency of velo-stream: npm install --save-dev pg`,
      error,
    );
  }
}

/** The uid and gid to run the server as: this process's, or the `postgres` user's as root (postgres refuses root). */
function identity(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return { uid, gid };
  } catch (error) {
    throw testServerError(
      `${WHAT}: this process runs as root and postgres refuses to; there is no \`postgres\` user to run it as. Run the tests as another user, or create that user (apt-get install postgresql-15 does).`,
      error,
    );
  }
}

/** The settings as `-c name=value` arguments, refused (`ERR_INVALID_ARG_*`) when not plain settings or the harness's own. */
function settingArgs(settings: unknown): string[] {
  if (settings === undefined) return [];
  if (settings === null || typeof settings !== 'object' || Array.isArray(settings))
    throw invalidType(`${WHAT}: options.settings must be an object of server settings, not ${describe(settings)}`);
  const args: string[] = [];
  for (const [name, value] of Object.entries(settings)) {
    if (!/^[a-z][a-z0-9_.]{0,62}$/i.test(name))
      throw invalidValue(`${WHAT}: options.settings has ${JSON.stringify(name)}, which is not a server setting's name`);
    if (OWN_SETTINGS.includes(name.toLowerCase()))
      throw invalidValue(
        `${WHAT}: options.settings.${name} is the harness's own (the server's address and files are private to the test)`,
      );
    const ok =
      typeof value === 'boolean' ||
      (typeof value === 'number' && Number.isFinite(value)) ||
      (typeof value === 'string' && !/[\0\r\n]/.test(value));
    if (!ok)
      throw invalidType(
        `${WHAT}: options.settings.${name} must be a string (one line), a finite number or a boolean, not ${describe(value)}`,
      );
    args.push('-c', `${name}=${String(value)}`);
  }
  return args;
}

/** The pool options, checked: known names, positive integers. */
function poolOptions(options: unknown): PostgresServicePoolOptions {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw invalidType(`${WHAT}: pool(options) must be an object, not ${describe(options)}`);
  for (const [key, value] of Object.entries(options)) {
    if (!POOL_OPTIONS.includes(key))
      throw invalidValue(`${WHAT}: pool() has no option "${key}". Known options: ${POOL_OPTIONS.join(', ')}`);
    if (value !== undefined && (typeof value !== 'number' || !Number.isInteger(value) || value < (key === 'max' ? 1 : 0)))
      throw invalidType(`${WHAT}: pool()'s ${key} must be a whole number, not ${describe(value)}`);
  }
  return options;
}

/** Sends `signal` to the server, and kill -9 if it has not exited within `ms`. */
async function stopServer(proc: ServiceChild, signal: NodeJS.Signals, ms: number): Promise<void> {
  proc.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
  const outcome = await Promise.race([proc.exited, late]);
  clearTimeout(timer);
  if (outcome === 'late') await proc[Symbol.asyncDispose]();
}

/** initdb, then the server on a free port (retried if it was taken): resolves with the port once it is ready. */
async function startServer(harness: ServiceHarness, bin: string, extra: string[], timeout: number): Promise<number> {
  const who = identity();
  if (who.uid !== undefined && who.gid !== undefined) chownSync(harness.dir, who.uid, who.gid);
  const data = join(harness.dir, 'data');
  try {
    await promisify(execFile)(
      join(bin, 'initdb'),
      ['-D', data, '-U', USER, '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync'],
      { timeout, ...who },
    );
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw testServerError(`${WHAT}: ${join(bin, 'initdb')} failed: ${stderr?.trim() || (error as Error).message}`, error);
  }
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const args = ['-D', data, '-p', String(port), '-k', harness.dir, '-c', 'listen_addresses=127.0.0.1', ...extra];
    const proc = new ServiceChild(spawn(join(bin, 'postgres'), args, { stdio: ['ignore', 'pipe', 'pipe'], ...who }));
    harness.setServer({
      child: proc,
      // SIGINT: a fast shutdown (the server ends its connections and exits once its own processes have).
      stop: () => stopServer(proc, 'SIGINT', 10_000),
      // SIGQUIT: an immediate shutdown, the last resort as the test process ends.
      reap: () => proc.kill('SIGQUIT'),
    });
    try {
      await proc.waitForOutput(/database system is ready to accept connections/, timeout);
      return port;
    } catch (error) {
      await stopServer(proc, 'SIGQUIT', 2000);
      if (attempt < 3 && /could not bind|Address already in use/.test(proc.stderr)) continue;
      throw testServerError(`${WHAT}: postgres did not start: ${(error as Error).message}`, error);
    }
  }
}

/**
 * Starts a private Postgres for an integration test: a new cluster in a temporary directory, the server on a free
 * port of 127.0.0.1, and a fresh database. `await using service = await postgresService()` stops it, and everything
 * made from it, at the end of the scope. Throws `ERR_VELO_TEST_SERVER` when the server cannot be found or run
 * (naming what to install) or `pg` cannot be loaded.
 */
export async function postgresService(options: PostgresServiceOptions = {}): Promise<PostgresService> {
  checkServiceOptions(WHAT, options, OPTIONS);
  const { bin, durable = false, startTimeout = 30_000 } = options;
  if (bin !== undefined && (typeof bin !== 'string' || !isAbsolute(bin)))
    throw invalidType(`${WHAT}: options.bin must be an absolute path to a folder, not ${describe(bin)}`);
  if (typeof durable !== 'boolean') throw invalidType(`${WHAT}: options.durable must be a boolean, not ${describe(durable)}`);
  const extra = settingArgs(options.settings);
  if (!durable) extra.unshift('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const dir = findBin(bin);
  const pg = await loadPg();
  const harness = new ServiceHarness(WHAT, 'velo-pg-service-');
  let port: number;
  try {
    port = await startServer(harness, dir, extra, startTimeout);
    const admin = new pg.Pool({ host: '127.0.0.1', port, user: USER, database: 'postgres', max: 1 });
    admin.on('error', () => undefined);
    try {
      await admin.query({ text: `CREATE DATABASE ${DATABASE}` });
    } finally {
      await admin.end();
    }
  } catch (error) {
    await harness.close().catch(() => undefined);
    throw error;
  }
  const url = `postgres://${USER}@127.0.0.1:${port}/${DATABASE}`;
  harness.setEnv({ DATABASE_URL: url, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: USER, PGDATABASE: DATABASE });

  const pool = (opts?: PostgresServicePoolOptions): PgPoolLike => {
    const made = new pg.Pool({ ...poolOptions(opts), host: '127.0.0.1', port, user: USER, database: DATABASE });
    made.on('error', () => {
      // An idle connection lost (the server stopping): the next query reports its own error.
    });
    harness.onClose(() => made.end());
    return made;
  };

  const service: PostgresService = {
    url,
    port,
    database: DATABASE,
    pid: harness.server.child.pid,
    pool,
    spawn: (module, opts) => harness.spawn(module, opts),
    outputs: <O>(opts: Omit<PostgresOutputsOptions<O>, 'pool' | 'signal'>): OutputCollector<O> => {
      if (opts === null || typeof opts !== 'object')
        throw invalidType(`${WHAT}: outputs(options) must be an object, not ${describe(opts)}`);
      const reader = pool({ max: 2 });
      return harness.collect<O>((signal) => postgresOutputs<O>({ ...opts, pool: reader, signal }));
    },
    pids: () => harness.pids(),
    close: () => harness.close(),
    [Symbol.asyncDispose]: () => harness.close(),
  };
  return service;
}
