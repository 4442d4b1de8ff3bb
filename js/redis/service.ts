// velo-stream/testing's harness for an integration test of a service: a private redis-server on a free port of
// 127.0.0.1, the service's own worker processes started from its modules, signals to kill -9, pause, resume or stop
// them, and an output collector, all released by one `await using` (the server and every process stopped by PID,
// the temporary directory removed). A test written by hand needs about 90 lines for the same.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { invalidType, testServerError } from '../errors';
import type { OutputItem } from '../durable/common/outputs';
import { type RedisClientLike, redisClientOptions } from './log/connection';
import { type RedisOutputsOptions, redisOutputs } from './clients/reader';

/** The options of `redisService()`. */
export interface RedisServiceOptions {
  /** The server binary: default `$VELO_REDIS_SERVER`, else `redis-server` from `PATH` (a `valkey-server` serves too). */
  command?: string;
  /** More server arguments, e.g. `['--appendonly', 'yes']`. By default the server keeps nothing on disk. */
  args?: string[];
  /** How long the server may take to say it is ready, ms. Default 10000. */
  startTimeout?: number;
}

/** How a process ended: its exit code, or the signal that ended it. */
export interface ServiceExit {
  /** The exit code; `null` when a signal ended it. */
  readonly code: number | null;
  /** The signal that ended it (`'SIGKILL'` after a kill -9); `null` when it exited by itself. */
  readonly signal: NodeJS.Signals | null;
}

/** The options of `service.spawn()`. */
export interface ServiceProcessOptions {
  /** Arguments after the module's path. */
  args?: string[];
  /** More environment variables (the process gets this one's, and `REDIS_URL`). */
  env?: Record<string, string>;
  /** Node's own flags, e.g. `['--import', 'tsx']`. Default none. */
  execArgv?: string[];
}

/** A process of the service under test, started by `service.spawn()`. */
export interface ServiceProcess extends AsyncDisposable {
  /** Its process id. */
  readonly pid: number;
  /** Everything it wrote to stdout so far. */
  readonly stdout: string;
  /** Everything it wrote to stderr so far. */
  readonly stderr: string;
  /** True until it has exited. */
  readonly running: boolean;
  /** Resolves when it has exited. */
  readonly exited: Promise<ServiceExit>;
  /** Resolves with the first match of `pattern` in its stdout (text already written included); rejects after `timeout` ms (default 10000) or if it exits first. */
  waitFor(pattern: RegExp, timeout?: number): Promise<RegExpMatchArray>;
  /** Sends `signal` (default `SIGKILL`: kill -9) and returns at once. */
  kill(signal?: NodeJS.Signals): void;
  /** SIGSTOP: it stops where it is, as a long GC pause or a frozen VM would. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /** Sends `signal` (default `SIGTERM`, the graceful stop) and resolves with how it exited; kill -9 and a rejection after `timeout` ms (default 10000). */
  stop(signal?: NodeJS.Signals, timeout?: number): Promise<ServiceExit>;
}

/** The outputs of one function, read from the start with `redisOutputs` as they are written. */
export interface OutputCollector<O> extends AsyncDisposable {
  /** Every output read so far, in the order read. */
  readonly items: readonly OutputItem<O>[];
  /**
   * Resolves with `items` once there are `count` of them (or `count(items)` is true); rejects after `timeout` ms
   * (default 10000), saying how many it had.
   */
  until(count: number | ((items: readonly OutputItem<O>[]) => boolean), timeout?: number): Promise<readonly OutputItem<O>[]>;
  /** Stops reading. */
  close(): Promise<void>;
}

/** A private Redis for a test, with the processes and readers made from it. `await using` releases everything. */
export interface RedisService extends AsyncDisposable {
  /** `redis://127.0.0.1:<port>`: also given to each process as `REDIS_URL`. */
  readonly url: string;
  /** The server's port. */
  readonly port: number;
  /** The server's process id. */
  readonly pid: number;
  /** A connected node-redis client (`redisClientOptions()`, an `'error'` listener), closed with the service. Needs the `redis` package. */
  client(): Promise<RedisClientLike>;
  /** Starts `node <module> ...args` with `REDIS_URL` set: a worker (or gateway) process of the service. */
  spawn(module: string | URL, options?: ServiceProcessOptions): ServiceProcess;
  /** Reads a function's outputs from the start as they are written (the options of `redisOutputs` but `client`). */
  outputs<O = unknown>(options: Omit<RedisOutputsOptions<O>, 'client' | 'signal'>): OutputCollector<O>;
  /** The ids of the processes still running: the server's and those `spawn()` started. */
  pids(): number[];
  /** Stops everything (as `await using` does): readers, clients, every process (kill -9), then the server. */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT = 10_000;

function serverCommand(options: RedisServiceOptions): string {
  return options.command ?? (process.env.VELO_REDIS_SERVER || 'redis-server');
}

/** A port that was free a moment ago (the start retries on another if it was taken meanwhile). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

function exitOf(child: ChildProcess): Promise<ServiceExit> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** Sends `signal` to a process that may have exited already. */
function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    process.kill(child.pid, sig);
  } catch {
    // It exited between the check and the signal.
  }
}

class Proc implements ServiceProcess {
  readonly #child: ChildProcess;
  #stdout = '';
  #stderr = '';
  #running = true;
  readonly exited: Promise<ServiceExit>;

  constructor(child: ChildProcess) {
    this.#child = child;
    child.stdout?.setEncoding('utf8').on('data', (text: string) => (this.#stdout += text));
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.#stderr += text));
    // A spawn that fails ('error' before 'exit') ends as an exit with no code; its error is in stderr.
    const failed = new Promise<ServiceExit>((resolve) =>
      child.once('error', (error) => {
        this.#stderr += `${error.message}\n`;
        resolve({ code: null, signal: null });
      }),
    );
    this.exited = Promise.race([exitOf(child), failed]).then((exit) => {
      this.#running = false;
      return exit;
    });
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }
  get stdout(): string {
    return this.#stdout;
  }
  get stderr(): string {
    return this.#stderr;
  }
  get running(): boolean {
    return this.#running;
  }

  waitFor(pattern: RegExp, timeout = DEFAULT_TIMEOUT): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.#stdout.match(pattern);
        if (found !== null) done(() => resolve(found));
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(
              new Error(
                `pid ${this.pid}: no ${pattern} on stdout within ${timeout} ms; stdout: ${this.#stdout.slice(-500)}; stderr: ${this.#stderr.slice(-500)}`,
              ),
            ),
          ),
        timeout,
      );
      const onExit = () =>
        setImmediate(() => {
          check();
          done(() =>
            reject(new Error(`pid ${this.pid} exited before ${pattern} on stdout; stderr: ${this.#stderr.slice(-500)}`)),
          );
        });
      let settled = false;
      const done = (settle: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#child.stdout?.off('data', check);
        this.#child.off('exit', onExit);
        settle();
      };
      this.#child.stdout?.on('data', check);
      this.#child.once('exit', onExit);
      check();
    });
  }

  kill(sig: NodeJS.Signals = 'SIGKILL'): void {
    signal(this.#child, sig);
  }
  pause(): void {
    signal(this.#child, 'SIGSTOP');
  }
  resume(): void {
    signal(this.#child, 'SIGCONT');
  }

  async stop(sig: NodeJS.Signals = 'SIGTERM', timeout = DEFAULT_TIMEOUT): Promise<ServiceExit> {
    signal(this.#child, 'SIGCONT');
    signal(this.#child, sig);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeout)));
    const outcome = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (outcome !== 'late') return outcome;
    signal(this.#child, 'SIGKILL');
    await this.exited;
    throw new Error(
      `pid ${this.pid} did not exit within ${timeout} ms of ${sig}: killed -9; stderr: ${this.#stderr.slice(-500)}`,
    );
  }

  /** kill -9 (after a SIGCONT, so a paused process dies too) and wait for the exit. */
  async [Symbol.asyncDispose](): Promise<void> {
    signal(this.#child, 'SIGCONT');
    signal(this.#child, 'SIGKILL');
    await this.exited;
  }
}

class Collector<O> implements OutputCollector<O> {
  readonly items: OutputItem<O>[] = [];
  readonly #abort = new AbortController();
  readonly #loop: Promise<void>;
  #error: unknown;
  readonly #waiters = new Set<() => void>();
  #closed: Promise<void> | undefined;

  constructor(client: Promise<RedisClientLike>, options: Omit<RedisOutputsOptions<O>, 'client' | 'signal'>) {
    this.#loop = (async () => {
      try {
        const reader = redisOutputs<O>({ ...options, client: await client, signal: this.#abort.signal });
        for await (const item of reader) {
          this.items.push(item);
          for (const wake of this.#waiters) wake();
        }
      } catch (error) {
        if (!this.#abort.signal.aborted) this.#error = error;
      } finally {
        for (const wake of this.#waiters) wake();
      }
    })();
  }

  until(
    count: number | ((items: readonly OutputItem<O>[]) => boolean),
    timeout = DEFAULT_TIMEOUT,
  ): Promise<readonly OutputItem<O>[]> {
    const enough = typeof count === 'number' ? () => this.items.length >= count : () => count(this.items);
    return new Promise((resolve, reject) => {
      const wake = () => {
        if (enough()) finish(() => resolve(this.items));
        else if (this.#error !== undefined) finish(() => reject(this.#error));
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new Error(
                `outputs: ${this.items.length} read within ${timeout} ms, not enough${typeof count === 'number' ? ` (wanted ${count})` : ''}`,
              ),
            ),
          ),
        timeout,
      );
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        settle();
      };
      this.#waiters.add(wake);
      wake();
    });
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#abort.abort();
      await this.#loop;
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Starts the server: resolves once it says it is ready, or throws `ERR_VELO_TEST_SERVER`. */
async function startServer(
  command: string,
  dir: string,
  extra: string[],
  timeout: number,
): Promise<{ child: ChildProcess; proc: Proc; port: number }> {
  try {
    execFileSync(command, ['--version'], { stdio: 'pipe' });
  } catch (error) {
    throw testServerError(
      `redisService(): cannot run ${JSON.stringify(command)} (${(error as Error).message}). It starts a private Redis for the test: install Redis (Debian and Ubuntu: apt-get install redis-server; macOS: brew install redis), or point the command option or $VELO_REDIS_SERVER at a redis-server or valkey-server binary.`,
      error,
    );
  }
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--protected-mode',
      'no',
      ...extra,
    ];
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = new Proc(child);
    try {
      await proc.waitFor(/Ready to accept connections/, timeout);
      return { child, proc, port };
    } catch (error) {
      await proc[Symbol.asyncDispose]();
      if (attempt < 3 && /Address already in use/.test(proc.stdout + proc.stderr)) continue;
      throw testServerError(`redisService(): ${command} did not start: ${(error as Error).message}`, error);
    }
  }
}

/**
 * Starts a private redis-server on a free port of 127.0.0.1 for an integration test, with nothing kept on disk.
 * `await using service = await redisService()` stops it, and everything made from it, at the end of the scope.
 * Throws `ERR_VELO_TEST_SERVER` when the server cannot be run, naming what to install.
 */
export async function redisService(options: RedisServiceOptions = {}): Promise<RedisService> {
  if (typeof options !== 'object' || options === null)
    throw invalidType(`redisService(options): options must be an object, got ${typeof options}`);
  const command = serverCommand(options);
  const dir = mkdtempSync(join(tmpdir(), 'velo-service-'));
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(command, dir, options.args ?? [], options.startTimeout ?? DEFAULT_TIMEOUT);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const url = `redis://127.0.0.1:${server.port}`;
  const procs: Proc[] = [];
  const clients: Promise<RedisClientLike>[] = [];
  const collectors: Collector<unknown>[] = [];
  // A test process that ends without disposing (an uncaught error) still takes its processes with it.
  const onExit = () => {
    for (const proc of [...procs, server.proc]) if (proc.running) process.kill(proc.pid, 'SIGKILL');
  };
  process.once('exit', onExit);
  let closing: Promise<void> | undefined;

  const client = (): Promise<RedisClientLike> => {
    const made = (async () => {
      const { createClient } = (await import('redis')) as unknown as { createClient: (options: object) => RedisClientLike };
      const c = createClient(redisClientOptions({ url }));
      c.on('error', () => {
        // Reconnects by itself; a test that kills the server sees its calls fail instead.
      });
      await c.connect();
      return c;
    })();
    clients.push(made);
    return made;
  };

  const service: RedisService = {
    url,
    port: server.port,
    pid: server.proc.pid,
    client,
    spawn(module, opts = {}) {
      if (closing) throw new Error('redisService(): spawn() after close()');
      const file = module instanceof URL || module.startsWith('file:') ? fileURLToPath(module) : module;
      const child = spawn(process.execPath, [...(opts.execArgv ?? []), file, ...(opts.args ?? [])], {
        env: { ...process.env, ...opts.env, REDIS_URL: url },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const proc = new Proc(child);
      procs.push(proc);
      return proc;
    },
    outputs<O>(opts: Omit<RedisOutputsOptions<O>, 'client' | 'signal'>): OutputCollector<O> {
      const collector = new Collector<O>(client(), opts);
      collectors.push(collector);
      return collector;
    },
    pids() {
      return [server.proc, ...procs].filter((p) => p.running).map((p) => p.pid);
    },
    close() {
      closing ??= (async () => {
        await Promise.all(collectors.map((c) => c.close()));
        for (const made of clients) {
          const c = await made.catch(() => undefined);
          if (c !== undefined) c.destroy();
        }
        await Promise.all(procs.map((p) => p[Symbol.asyncDispose]()));
        await server.proc[Symbol.asyncDispose]();
        process.off('exit', onExit);
        rmSync(dir, { recursive: true, force: true });
      })();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return service.close();
    },
  };
  return service;
}
