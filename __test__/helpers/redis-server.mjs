// A private redis-server for the Redis tests: its own temporary directory, a
// free port on 127.0.0.1, stopped by PID. Without `redis-server` on PATH the
// tests fail (never skip): install the Debian package `redis-server`.
//
// The same tests run against Valkey (`npm run test:valkey`, scripts/test-valkey.mjs): the server binary is
// $VELO_REDIS_SERVER when set (a path to a valkey-server, say), and the CLI that joins a Cluster is
// $VELO_REDIS_CLI (valkey-cli, or redis-cli, whose `--cluster create` speaks the same protocol).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, createCluster } from 'redis';
import { start } from './child.mjs';
import { freePort } from './free-port.mjs';

/** The server binary the tests start: $VELO_REDIS_SERVER, or redis-server from PATH (read at each call: a benchmark may set it). */
export const serverCommand = () => process.env.VELO_REDIS_SERVER || 'redis-server';
/** The CLI that joins a Cluster (`--cluster create`): $VELO_REDIS_CLI, or redis-cli from PATH. */
export const cliCommand = () => process.env.VELO_REDIS_CLI || 'redis-cli';

const versions = new Map();
/**
 * The server `command` (default serverCommand()) from its `--version`: { name: 'redis' | 'valkey', version: '7.0.15',
 * text }. Fails (never skips) when it cannot be run, naming what to install or the variable that points at it.
 */
export function serverVersion(command = serverCommand()) {
  if (versions.has(command)) return versions.get(command);
  let text;
  try {
    text = execFileSync(command, ['--version'], { encoding: 'utf8' }).trim();
  } catch (error) {
    if (command === process.env.VELO_REDIS_SERVER) {
      throw new Error(
        `VELO_REDIS_SERVER=${command} cannot be run (${error.message}): it must name a redis-server or valkey-server binary.`,
      );
    }
    if (command === 'redis-server') {
      throw new Error(
        'redis-server was not found on PATH: the velo-stream/redis tests need it. Install the Debian package `redis-server` (apt-get install redis-server).',
      );
    }
    throw new Error(`${command} cannot be run (${error.message}): it must be a redis-server or valkey-server binary.`);
  }
  const match = /^(Redis|Valkey) server v=(\d+\.\d+\.\d+)/.exec(text);
  if (!match) throw new Error(`${command} --version says neither Redis nor Valkey: ${text}`);
  const found = { name: match[1].toLowerCase(), version: match[2], text };
  versions.set(command, found);
  return found;
}

/**
 * Starts redis-server. `aof`: append-only file with fsync always (a restart keeps every acknowledged write);
 * otherwise no persistence at all. `args`: more server arguments. `command`: the server binary (default
 * serverCommand()). Returns { port, url, pid, server (see serverVersion), client(), stop(), pause(), resume(),
 * restart() }.
 */
export async function startRedis({ aof = false, args: extraArgs = [], command = serverCommand() } = {}) {
  const version = serverVersion(command);
  const dir = mkdtempSync(join(tmpdir(), 'velo-redis-'));
  let server;
  let port;
  const clients = [];

  async function launch() {
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--daemonize',
      'no',
      '--protected-mode',
      'no',
    ];
    args.push('--appendonly', aof ? 'yes' : 'no');
    if (aof) args.push('--appendfsync', 'always');
    args.push(...extraArgs);
    server = start(args, { command, timeout: 600_000 });
    await server.waitFor(/Ready to accept connections/);
  }

  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (error) {
      if (attempt === 3 || !/Address already in use/.test(server.stdout)) throw error;
      await server.finished().catch(() => {});
    }
  }

  const handle = {
    dir,
    server: version,
    get port() {
      return port;
    },
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    get pid() {
      return server.child.pid;
    },
    /** A connected client, closed by stop(). */
    async client(options = {}) {
      const c = createClient({ url: handle.url, ...options });
      c.on('error', () => {}); // reconnects are the client's business; commands report their own errors
      await c.connect();
      clients.push(c);
      return c;
    },
    pause() {
      process.kill(server.child.pid, 'SIGSTOP');
    },
    resume() {
      process.kill(server.child.pid, 'SIGCONT');
    },
    /** Stops the server by PID (SIGTERM) and checks that it exited cleanly. */
    async shutdown() {
      process.kill(server.child.pid, 'SIGCONT');
      server.child.kill('SIGTERM');
      const { stdout } = await server.finished();
      assert.match(stdout, /ready to exit, bye bye/i);
    },
    /** The same server again after shutdown() (same port, same directory): a test can let it stay down meanwhile. */
    async start() {
      await launch();
    },
    /** shutdown() then the same server again (same port, same directory: with `aof`, the same data). */
    async restart() {
      await handle.shutdown();
      await launch();
    },
    async stop() {
      for (const c of clients.splice(0)) c.destroy();
      await handle.shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return handle;
}

/**
 * A Redis Cluster of `masters` servers (startRedis with `--cluster-enabled yes`, each in its own directory),
 * joined by `redis-cli --cluster create` (cliCommand()) (no replicas) and ready (`cluster_state:ok` on every node). Returns
 * { nodes, urls, client() (a connected createCluster client, closed by stop()), stop() }.
 */
export async function startRedisCluster(masters = 3) {
  const nodes = [];
  const clients = [];
  try {
    for (let i = 0; i < masters; i++) {
      nodes.push(
        await startRedis({
          args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000'],
        }),
      );
    }
    execFileSync(
      cliCommand(),
      ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      {
        encoding: 'utf8',
        stdio: 'pipe',
      },
    );
    for (const node of nodes) {
      const c = await node.client();
      for (let tries = 0; ; tries++) {
        const info = await c.sendCommand(['CLUSTER', 'INFO']);
        if (/cluster_state:ok/.test(info) && /cluster_known_nodes:(\d+)/.exec(info)?.[1] === String(masters)) break;
        if (tries === 400) assert.fail(`cluster not ready on ${node.url}: ${info}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop().catch(() => {})));
    throw error;
  }
  const urls = nodes.map((n) => n.url);
  return {
    nodes,
    urls,
    async client() {
      const c = createCluster({ rootNodes: urls.map((url) => ({ url })) });
      c.on('error', () => {});
      await c.connect();
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients.splice(0)) c.destroy();
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
