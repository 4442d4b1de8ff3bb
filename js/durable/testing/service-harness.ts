// What every backend's service harness shares (redisService, postgresService): a temporary directory, the server
// process the backend starts in it, the service's own processes, its clients and output collectors, and one
// close() that stops them in order: readers, clients, processes (kill -9), the server, the directory. A test process
// that ends without closing (an uncaught error, SIGINT, SIGTERM, SIGHUP) takes its servers and processes with it:
// a server (postgres above all) outlives its parent otherwise. This part knows no backend.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, invalidType, invalidValue } from '../../errors';
import { integerOption } from '../../validate';
import { Collector, type OpenOutputs, type OutputCollector } from './service-outputs';
import { type ServiceChild, type ServiceProcess, type ServiceProcessOptions, spawnModule } from './service-process';

/** What a private server for a test has, whatever its backend: `redisService()` and `postgresService()` return one. */
export interface TestService extends AsyncDisposable {
  /** The server's address (also given to each process: `REDIS_URL`, or `DATABASE_URL` and `PG*`). */
  readonly url: string;
  /** The server's port on 127.0.0.1. */
  readonly port: number;
  /** The server's process id. */
  readonly pid: number;
  /** Starts `node <module> ...args` with the server's address in its environment: a worker (or gateway) process of the service. */
  spawn(module: string | URL, options?: ServiceProcessOptions): ServiceProcess;
  /** The ids of the processes still running: the server's and those `spawn()` started. */
  pids(): number[];
  /** Stops everything (as `await using` does): readers, clients, every process (kill -9), then the server; removes its directory. */
  close(): Promise<void>;
}

/** A backend's server, as the harness stops it. */
export interface ServiceServer {
  /** Its main process. */
  readonly child: ServiceChild;
  /** Stops it gracefully once the processes and clients are gone; resolves once it has exited. */
  stop(): Promise<void>;
  /** The last resort at the test process's exit: a synchronous signal (the process is ending). */
  reap(): void;
}

/** The harnesses not closed yet, reaped if the test process ends first. */
const LIVE = new Set<ServiceHarness>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function reapAll(): void {
  for (const harness of LIVE) harness.reap();
  LIVE.clear();
  disarm();
}

/** A fatal signal: reap, then let the signal do what it would have done had the harness not listened. */
function onSignal(sig: NodeJS.Signals): void {
  reapAll();
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

let armed = false;
function arm(): void {
  if (armed) return;
  armed = true;
  process.on('exit', reapAll);
  for (const sig of SIGNALS) process.on(sig, onSignal);
}
function disarm(): void {
  if (!armed) return;
  armed = false;
  process.off('exit', reapAll);
  for (const sig of SIGNALS) process.off(sig, onSignal);
}

/**
 * Checks a harness's options object: an object (or undefined), no name outside `known`, `startTimeout` an integer
 * of ms. Throws `ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE` or `ERR_OUT_OF_RANGE`.
 */
export function checkServiceOptions(what: string, options: unknown, known: readonly string[]): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw invalidType(`${what}: options must be an object, not ${describe(options)}`);
  for (const key of Object.keys(options))
    if (!known.includes(key)) throw invalidValue(`${what}: unknown option "${key}". Known options: ${known.join(', ')}`);
  const { startTimeout } = options as { startTimeout?: unknown };
  if (startTimeout !== undefined) integerOption(what, 'startTimeout', startTimeout, 1, 600_000, 'from 1 to 600000 (ms)');
}

/** One service under test: see the file's comment. */
export class ServiceHarness {
  /** The temporary directory, removed by close(). */
  readonly dir: string;
  readonly #what: string;
  #server: ServiceServer | undefined;
  #env: Readonly<Record<string, string>> = {};
  readonly #procs: ServiceChild[] = [];
  readonly #collectors: Collector<unknown>[] = [];
  readonly #clients: (() => Promise<void>)[] = [];
  #closing: Promise<void> | undefined;

  /** Makes the directory (`<tmpdir>/<prefix>XXXXXX`) and takes the harness into the reaping at exit. */
  constructor(what: string, prefix: string) {
    this.#what = what;
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    LIVE.add(this);
    arm();
  }

  /** The server the backend started (or is starting): stopped by close(), reaped at exit. */
  setServer(server: ServiceServer): void {
    this.#server = server;
  }

  /** The variables that tell a process where the server is (they win over the test's and spawn()'s own). */
  setEnv(env: Readonly<Record<string, string>>): void {
    this.#env = env;
  }

  get server(): ServiceServer {
    if (this.#server === undefined) throw new Error(`${this.#what}: no server`);
    return this.#server;
  }

  spawn(module: string | URL, options: ServiceProcessOptions = {}): ServiceProcess {
    if (this.#closing) throw new Error(`${this.#what}: spawn() after close()`);
    const proc = spawnModule(this.#what, module, options, this.#env);
    this.#procs.push(proc);
    return proc;
  }

  /** A collector on the reader `open` makes, closed first by close(). */
  collect<O>(open: OpenOutputs<O>): OutputCollector<O> {
    if (this.#closing) throw new Error(`${this.#what}: outputs() after close()`);
    const collector = new Collector<O>(open);
    this.#collectors.push(collector);
    return collector;
  }

  /** A client's release, run by close() after the readers and before the processes stop. */
  onClose(release: () => Promise<void>): void {
    this.#clients.push(release);
  }

  /** The ids of the processes still running: the server's and those spawn() started. */
  pids(): number[] {
    const all = this.#server === undefined ? this.#procs : [this.#server.child, ...this.#procs];
    return all.filter((p) => p.running).map((p) => p.pid);
  }

  /** Stops everything, in order; a server that fails to stop cleanly rejects, once the rest is done. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await Promise.all(this.#collectors.map((c) => c.close()));
        await Promise.all(this.#clients.map((release) => release().catch(() => undefined)));
        await Promise.all(this.#procs.map((p) => p[Symbol.asyncDispose]()));
        await this.#server?.stop();
      } finally {
        // A server that did not stop is killed: nothing outlives close().
        if (this.#server?.child.running) {
          this.#server.reap();
          await this.#server.child[Symbol.asyncDispose]();
        }
        rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
        LIVE.delete(this);
        if (LIVE.size === 0) disarm();
      }
    })();
    return this.#closing;
  }

  /** The synchronous last resort at exit: kill -9 every process, reap the server, remove what can be removed. */
  reap(): void {
    for (const proc of this.#procs) {
      if (!proc.running) continue;
      proc.resume();
      proc.kill('SIGKILL');
    }
    if (this.#server?.child.running) this.#server.reap();
    try {
      rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // The server may still be writing into it as it dies; the exit goes on.
    }
  }
}
