// velo-stream/testing's harness for an integration test of a service: a private redis-server on a free port of
// 127.0.0.1, the service's own worker processes started from its modules, signals to kill -9, pause, resume or stop
// them, and an output collector, all released by one `await using` (the server and every process stopped by PID,
// the temporary directory removed). A test written by hand needs about 90 lines for the same. The harness itself
// (processes, collector, close, the reaping at exit) is the tier's, in durable/testing/service-*.ts, shared with
// postgresService(); this file starts the server and makes the Redis clients and readers.
import { execFileSync, spawn } from 'node:child_process';
import { describe, invalidType, testServerError } from '../errors';
import { ServiceHarness, type TestService, checkServiceOptions } from '../durable/testing/service-harness';
import type { OutputCollector } from '../durable/testing/service-outputs';
import { DEFAULT_TIMEOUT, ServiceChild, freePort } from '../durable/testing/service-process';
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

/** A private Redis for a test, with the processes and readers made from it. `await using` releases everything. */
export interface RedisService extends TestService {
  /** `redis://127.0.0.1:<port>`: also given to each process as `REDIS_URL`. */
  readonly url: string;
  /** A connected node-redis client (`redisClientOptions()`, an `'error'` listener), closed with the service. Needs the `redis` package. */
  client(): Promise<RedisClientLike>;
  /** Reads a function's outputs from the start as they are written (the options of `redisOutputs` but `client`). */
  outputs<O = unknown>(options: Omit<RedisOutputsOptions<O>, 'client' | 'signal'>): OutputCollector<O>;
}

const OPTIONS = ['command', 'args', 'startTimeout'];

function serverCommand(options: RedisServiceOptions): string {
  return options.command ?? (process.env.VELO_REDIS_SERVER || 'redis-server');
}

/** Starts the server in the harness's directory: resolves with its port once it says it is ready, or throws `ERR_VELO_TEST_SERVER`. */
async function startServer(harness: ServiceHarness, command: string, extra: string[], timeout: number): Promise<number> {
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
      harness.dir,
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
    const proc = new ServiceChild(spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    // Nothing is kept on disk: kill -9 is as good a stop as any.
    harness.setServer({ child: proc, stop: () => proc[Symbol.asyncDispose](), reap: () => proc.kill('SIGKILL') });
    try {
      await proc.waitFor(/Ready to accept connections/, timeout);
      return port;
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
  const what = 'redisService()';
  checkServiceOptions(what, options, OPTIONS);
  if (options.command !== undefined && (typeof options.command !== 'string' || options.command === ''))
    throw invalidType(`${what}: options.command must be a non-empty string, not ${describe(options.command)}`);
  if (options.args !== undefined && (!Array.isArray(options.args) || !options.args.every((a) => typeof a === 'string')))
    throw invalidType(`${what}: options.args must be an array of strings, not ${describe(options.args)}`);
  const command = serverCommand(options);
  const harness = new ServiceHarness(what, 'velo-service-');
  let port: number;
  try {
    port = await startServer(harness, command, options.args ?? [], options.startTimeout ?? DEFAULT_TIMEOUT);
  } catch (error) {
    await harness.close().catch(() => undefined);
    throw error;
  }
  const url = `redis://127.0.0.1:${port}`;
  harness.setEnv({ REDIS_URL: url });

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
    harness.onClose(async () => {
      (await made).destroy();
    });
    return made;
  };

  const service: RedisService = {
    url,
    port,
    pid: harness.server.child.pid,
    client,
    spawn: (module, opts) => harness.spawn(module, opts),
    outputs: <O>(opts: Omit<RedisOutputsOptions<O>, 'client' | 'signal'>): OutputCollector<O> => {
      const made = client();
      return harness.collect<O>(async (signal) => redisOutputs<O>({ ...opts, client: await made, signal }));
    },
    pids: () => harness.pids(),
    close: () => harness.close(),
    [Symbol.asyncDispose]: () => harness.close(),
  };
  return service;
}
