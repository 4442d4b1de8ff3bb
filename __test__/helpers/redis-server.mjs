// A private redis-server for the Redis tests: its own temporary directory, a
// free port on 127.0.0.1, stopped by PID. Without `redis-server` on PATH the
// tests fail (never skip): install the Debian package `redis-server`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, createCluster } from 'redis';
import { start } from './child.mjs';

function requireRedisServer() {
  try {
    return execFileSync('redis-server', ['--version'], { encoding: 'utf8' });
  } catch {
    throw new Error(
      'redis-server was not found on PATH: the velo-stream/redis tests need it. Install the Debian package `redis-server` (apt-get install redis-server).',
    );
  }
}

/** A port that was free a moment ago (the server retries on another if it was taken meanwhile). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts redis-server. `aof`: append-only file with fsync always (a restart keeps every acknowledged write);
 * otherwise no persistence at all. `args`: more server arguments. Returns { port, url, pid, client(), stop(),
 * pause(), resume(), restart() }.
 */
export async function startRedis({ aof = false, args: extraArgs = [] } = {}) {
  requireRedisServer();
  const dir = mkdtempSync(join(tmpdir(), 'velo-redis-'));
  let server;
  let port;
  const clients = [];

  async function launch() {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--protected-mode', 'no'];
    args.push('--appendonly', aof ? 'yes' : 'no');
    if (aof) args.push('--appendfsync', 'always');
    args.push(...extraArgs);
    server = start(args, { command: 'redis-server', timeout: 600_000 });
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
 * joined by `redis-cli --cluster create` (no replicas) and ready (`cluster_state:ok` on every node). Returns
 * { nodes, urls, client() (a connected createCluster client, closed by stop()), stop() }.
 */
export async function startRedisCluster(masters = 3) {
  const nodes = [];
  const clients = [];
  try {
    for (let i = 0; i < masters; i++) {
      nodes.push(await startRedis({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000'] }));
    }
    execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      encoding: 'utf8',
      stdio: 'pipe',
    });
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
