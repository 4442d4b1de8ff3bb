// The processes of a service under test, whatever its backend: a child started from a module (or the backend's own
// server binary), its output kept, signals to kill -9, pause, resume or stop it, and how it ended. The backends'
// harnesses (redisService, postgresService) start their servers and workers as these.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, invalidType } from '../../errors';

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
  /** More environment variables: the process gets the test's, these, then the service's address (which wins). */
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

export const DEFAULT_TIMEOUT = 10_000;

/** A port of 127.0.0.1 that was free a moment ago (a server start retries on another if it was taken meanwhile). */
export function freePort(): Promise<number> {
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

/** A child process with its output kept: a server or a process of the service. */
export class ServiceChild implements ServiceProcess {
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
    return this.#waitFor(pattern, timeout, () => this.#stdout, 'stdout');
  }

  /** As `waitFor`, on stderr too (a server that logs there). */
  waitForOutput(pattern: RegExp, timeout = DEFAULT_TIMEOUT): Promise<RegExpMatchArray> {
    return this.#waitFor(pattern, timeout, () => this.#stdout + this.#stderr, 'its output');
  }

  #waitFor(pattern: RegExp, timeout: number, text: () => string, where: string): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = text().match(pattern);
        if (found !== null) done(() => resolve(found));
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(
              new Error(
                `pid ${this.pid}: no ${pattern} on ${where} within ${timeout} ms; stdout: ${this.#stdout.slice(-500)}; stderr: ${this.#stderr.slice(-500)}`,
              ),
            ),
          ),
        timeout,
      );
      const onExit = () =>
        setImmediate(() => {
          check();
          done(() =>
            reject(new Error(`pid ${this.pid} exited before ${pattern} on ${where}; stderr: ${this.#stderr.slice(-500)}`)),
          );
        });
      let settled = false;
      const done = (settle: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#child.stdout?.off('data', check);
        this.#child.stderr?.off('data', check);
        this.#child.off('exit', onExit);
        settle();
      };
      this.#child.stdout?.on('data', check);
      this.#child.stderr?.on('data', check);
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

function stringList(what: string, name: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
    throw invalidType(`${what}: options.${name} must be an array of strings, not ${describe(value)}`);
  return value;
}

/**
 * Starts `node <module> ...args` with the service's environment (`env`, which wins over the test's own): a worker
 * or gateway process of the service. Its options are checked first (`ERR_INVALID_ARG_TYPE`).
 */
export function spawnModule(
  what: string,
  module: string | URL,
  options: ServiceProcessOptions,
  env: Readonly<Record<string, string>>,
): ServiceChild {
  if (!(module instanceof URL) && (typeof module !== 'string' || module === ''))
    throw invalidType(`${what}: spawn(module) takes a module's path or file URL, not ${describe(module)}`);
  if (options === null || typeof options !== 'object')
    throw invalidType(`${what}: spawn()'s options must be an object, not ${describe(options)}`);
  const args = stringList(what, 'args', options.args);
  const execArgv = stringList(what, 'execArgv', options.execArgv);
  const extra = options.env ?? {};
  if (extra === null || typeof extra !== 'object' || Object.values(extra).some((v) => typeof v !== 'string'))
    throw invalidType(`${what}: options.env must map names to strings, not ${describe(extra)}`);
  const file = module instanceof URL || module.startsWith('file:') ? fileURLToPath(module) : module;
  const child = spawn(process.execPath, [...execArgv, file, ...args], {
    env: { ...process.env, ...extra, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new ServiceChild(child);
}
