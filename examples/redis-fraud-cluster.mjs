// Distributed fraud scoring on Redis Streams, with a crash in the middle.
//
// One run of this file starts (as child processes of itself):
//   - a gateway: an HTTP server on 127.0.0.1 whose POST /transactions takes
//     transactions (JSON or NDJSON) and appends them with `redisProducer`,
//     answering 202 once Redis accepted them (503 ERR_VELO_LAG_LIMIT while the
//     workers are too far behind: nothing was written, send it again);
//   - two workers running the fraud scorer of examples/fraud-scoring.mjs
//     through `redisWorker`, sharing the partitions.
// It then posts a deterministic load for many users over HTTP, kills one
// worker with SIGKILL mid-run (the other takes its partitions over once the
// lease ran out and replays the sessions that were live), starts a
// replacement worker (it takes a fair share back), reads every output with
// `redisOutputs` and compares them with a crash-free reference computed here,
// in-process, by `fraudScorer.run()` per user. It exits 0 only if the results
// are identical (and each (sid, seq) was written exactly once).
//
//   node examples/redis-fraud-cluster.mjs          # starts a private redis-server (Debian package redis-server)
//   REDIS_URL=redis://127.0.0.1:6379 node examples/redis-fraud-cluster.mjs   # uses yours; removes its keys after
//   options: --users 200 --rounds 24 --partitions 16 --lease-ttl 2000 --max-lag 50 --no-replacement --timeout 25000
//
// The gateway on its own (any number of them can run; they share nothing):
//   node examples/redis-fraud-cluster.mjs gateway redis://127.0.0.1:6379 fraud 16 [maxLag] [port]   # or - for $REDIS_URL
//   curl -XPOST 127.0.0.1:<port>/transactions -H 'content-type: application/x-ndjson' \
//     --data-binary $'{"user":"u1","id":"t1","amount":20,"country":"DE","at":0}\n'
// A worker: node examples/redis-fraud-cluster.mjs worker redis://127.0.0.1:6379 fraud 16 2000 worker-1
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isDeepStrictEqual, parseArgs } from 'node:util';
import { createClient } from 'redis';
import { redisClientOptions, redisOutputs, redisProducer, redisWorker } from 'velo-stream/redis';
import { fraudScorer } from './fraud-scoring.mjs';

const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------
// The gateway: POST /transactions -> redisProducer.sendMany()
// ---------------------------------------------------------------------------

/** The largest request body the gateway reads, bytes (413 beyond, checked before and while reading). */
export const MAX_BODY_BYTES = 1 << 20;
/** The most transactions in one request (413 beyond). */
export const MAX_TRANSACTIONS = 10_000;
const FIELDS = new Set(['user', 'id', 'amount', 'country', 'at']);

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function reply(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(`${JSON.stringify(body)}\n`);
}

/** The body as text, at most `limit` bytes: a larger one is refused without reading the rest. */
function readBody(req, limit) {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(new HttpError(413, 'ERR_VELO_BODY_TOO_LARGE', `the body is larger than ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk) => {
      size += chunk.length;
      if (size > limit) {
        // Stop reading: the reply says `connection: close`, so the rest is never read.
        done();
        req.pause();
        reject(new HttpError(413, 'ERR_VELO_BODY_TOO_LARGE', `the body is larger than ${limit} bytes`));
      } else chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      try {
        resolve(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks, size)));
      } catch {
        reject(new HttpError(400, 'ERR_BAD_ENCODING', 'the body is not valid UTF-8'));
      }
    };
    const onError = (error) => {
      done();
      reject(error);
    };
    req.on('data', onData).on('end', onEnd).on('error', onError);
  });
}

/** One transaction as [user, event]; `where` names it in errors ("line 3", "item 0"). */
export function checkTransaction(value, where) {
  const bad = (message) => new HttpError(400, 'ERR_BAD_TRANSACTION', `${where}: ${message}`);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('expected an object');
  for (const field of Object.keys(value)) if (!FIELDS.has(field)) throw bad(`unknown field ${JSON.stringify(field)}`);
  const { user, id, amount, country, at } = value;
  if (typeof user !== 'string' || !/^[\w.@:-]{1,128}$/.test(user))
    throw bad('"user" must be 1-128 characters of [A-Za-z0-9_.@:-]');
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) throw bad('"id" must be a string of 1-128 characters');
  if (typeof amount !== 'number' || !Number.isFinite(amount) || amount < 0 || amount > 1e9) {
    throw bad('"amount" must be a number from 0 to 1e9');
  }
  if (typeof country !== 'string' || !/^[A-Z]{2}$/.test(country))
    throw bad('"country" must be a two-letter code (ISO 3166, upper case)');
  if (!Number.isSafeInteger(at) || at < 0) throw bad('"at" must be a time in ms (an integer >= 0)');
  return [user, { id, amount, country, at }];
}

/** The transactions of a body: a JSON object or array of objects, or NDJSON (one object per line). */
export function parseTransactions(text, type, maxTransactions = MAX_TRANSACTIONS) {
  const items = [];
  const add = (value, where) => {
    if (items.length === maxTransactions) {
      throw new HttpError(413, 'ERR_TOO_MANY_TRANSACTIONS', `at most ${maxTransactions} transactions per request`);
    }
    items.push(checkTransaction(value, where));
  };
  if (type === 'application/json') {
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new HttpError(400, 'ERR_BAD_JSON', `the body is not JSON: ${error.message}`);
    }
    if (Array.isArray(value)) value.forEach((item, i) => add(item, `item ${i}`));
    else add(value, 'the body');
  } else {
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (line === '') continue;
      let value;
      try {
        value = JSON.parse(line);
      } catch (error) {
        throw new HttpError(400, 'ERR_BAD_JSON', `line ${i + 1} is not JSON: ${error.message}`);
      }
      add(value, `line ${i + 1}`);
    }
  }
  if (items.length === 0) throw new HttpError(400, 'ERR_NO_TRANSACTIONS', 'the body holds no transaction');
  return items;
}

/**
 * The gateway's HTTP server (not listening yet: listen on 127.0.0.1). POST /transactions with
 * `content-type: application/json` (an object or an array of objects) or `application/x-ndjson` (one object per
 * line), each `{ user, id, amount, country, at }`: 202 `{ accepted }` once Redis accepted all of them (one
 * `sendMany`); 400 bad JSON or a bad transaction (nothing sent); 413 a body over `maxBodyBytes` or more than
 * `maxTransactions`; 415 another content type; 503 `ERR_VELO_LAG_LIMIT` while a partition is at the producer's
 * `maxLag` (nothing written: send it again); 500 when Redis failed (some partitions may have been written). GET
 * /health: 200.
 */
export function createGateway(producer, { maxBodyBytes = MAX_BODY_BYTES, maxTransactions = MAX_TRANSACTIONS } = {}) {
  const server = createHttpServer(async (req, res) => {
    const path = new URL(req.url, 'http://localhost').pathname;
    if (path === '/health') {
      if (req.method !== 'GET') return reply(res, 405, { error: { code: 'ERR_METHOD', message: 'use GET' } }, { allow: 'GET' });
      return reply(res, 200, { ok: true });
    }
    if (path !== '/transactions') return reply(res, 404, { error: { code: 'ERR_NOT_FOUND', message: 'POST /transactions' } });
    if (req.method !== 'POST') return reply(res, 405, { error: { code: 'ERR_METHOD', message: 'use POST' } }, { allow: 'POST' });
    try {
      const type = String(req.headers['content-type'] ?? '')
        .split(';')[0]
        .trim()
        .toLowerCase();
      if (type !== 'application/json' && type !== 'application/x-ndjson') {
        throw new HttpError(415, 'ERR_CONTENT_TYPE', 'send application/json or application/x-ndjson');
      }
      const items = parseTransactions(await readBody(req, maxBodyBytes), type, maxTransactions);
      await producer.sendMany(items);
      reply(res, 202, { accepted: items.length });
    } catch (error) {
      if (error instanceof HttpError) {
        // After a refused body the rest of it is not read: close the connection.
        const close = error.status === 413 ? { connection: 'close' } : {};
        return reply(res, error.status, { error: { code: error.code, message: error.message } }, close);
      }
      if (error?.code === 'ERR_VELO_LAG_LIMIT') {
        const { code, message, partition, lag, limit } = error;
        return reply(res, 503, { error: { code, message, partition, lag, limit } }, { 'retry-after': '1' });
      }
      console.error('gateway: sendMany failed:', error);
      reply(res, 500, {
        error: { code: 'ERR_APPEND_FAILED', message: 'Redis did not accept the transactions; some may have been written' },
      });
    }
  });
  // Slow clients are cut off: a whole request within 10 s, its headers within 5 s.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  return server;
}

// ---------------------------------------------------------------------------
// Child roles. Each stops gracefully on SIGTERM (and SIGINT). Started by the
// run (FRAUD_CLUSTER_CHILD=1), each also reads its stdin: when it ends (the
// run closed it, or died) it stops the same way, so none outlives the run.
// ---------------------------------------------------------------------------

function onStop(stop) {
  let stopping = null;
  const once = () => (stopping ??= stop());
  process.once('SIGTERM', once).once('SIGINT', once);
  if (process.env.FRAUD_CLUSTER_CHILD !== '1') return () => {};
  process.stdin.on('end', once).on('error', once).resume();
  return () => process.stdin.destroy();
}

/** `url` `-`: the one in REDIS_URL (how the run passes it to its children: not in their command lines). */
async function connect(url, who) {
  // The recommended timeouts and reconnects (docs/redis.md, set up).
  const client = createClient(redisClientOptions({ url: url === '-' ? process.env.REDIS_URL : url }));
  // Without an 'error' listener, node-redis' error on a lost connection (a Redis restart) ends the process.
  client.on('error', (error) => console.error(`${who}: redis: ${error.message}`));
  await client.connect();
  return client;
}

/** `gateway <url> <name> <partitions> [maxLag] [port]`: prints `listening <port>`. */
async function gatewayRole([url, name, partitions, maxLag = '0', port = '0']) {
  const client = await connect(url, 'gateway');
  const lag = Number(maxLag) > 0 ? { maxLag: Number(maxLag), lagInterval: 250 } : {};
  const producer = redisProducer({ client, name, partitions: Number(partitions), ...lag });
  const server = createGateway(producer);
  await new Promise((resolve) => server.listen(Number(port), '127.0.0.1', resolve));
  console.log(`listening ${server.address().port}`);
  const release = onStop(async () => {
    await new Promise((resolve) => {
      server.close(resolve);
      server.closeIdleConnections();
    });
    await client.close();
    release();
  });
}

/**
 * `worker <url> <name> <partitions> <leaseTtl> <label>`: prints `state {owned, outputs}` when either changes
 * (checked every 25 ms), and on SIGTERM (or the end of stdin) hands its partitions off gracefully, prints
 * `closed <stats>` and exits 0.
 */
async function workerRole([url, name, partitions, leaseTtl, label]) {
  const client = await connect(url, label);
  const worker = redisWorker(fraudScorer, {
    client,
    name,
    partitions: Number(partitions),
    leaseTtl: Number(leaseTtl),
    workerId: `${label}-${process.pid}`,
    onError: (error) => console.error(`${label}: ${error?.code ?? ''} ${error?.message ?? error}`),
  });
  let shown = '';
  const timer = setInterval(() => {
    const { owned, outputs } = worker.stats();
    const state = JSON.stringify({ owned, outputs });
    if (state !== shown) console.log(`state ${(shown = state)}`);
  }, 25);
  const release = onStop(async () => {
    clearInterval(timer);
    await worker.close();
    console.log(`closed ${JSON.stringify(worker.stats())}`);
    await client.close();
    release();
  });
}

// ---------------------------------------------------------------------------
// The load and the reference
// ---------------------------------------------------------------------------

/** A small seeded PRNG (mulberry32): the same load on every run. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COUNTRIES = ['DE', 'FR', 'NL', 'PL', 'ES', 'IT', 'SE', 'AT'];

/**
 * `rounds` rounds of one transaction per user, round by round: `{ user, id, amount, country, at }`. Most users
 * buy small amounts at home, hours apart; every 7th user is taken over from round `rounds / 2` on (another
 * country, large amounts seconds apart), and every 11th travels once.
 */
export function transactions({ users = 200, rounds = 24, seed = 13 } = {}) {
  const next = random(seed);
  const people = Array.from({ length: users }, (_, u) => ({
    user: `u${String(u).padStart(4, '0')}`,
    home: COUNTRIES[u % COUNTRIES.length],
    at: 1_700_000_000_000 + Math.floor(next() * 86_400_000),
    takenOver: u % 7 === 3,
    trip: u % 11 === 5 ? Math.floor(next() * rounds) : -1,
  }));
  const list = [];
  for (let round = 0; round < rounds; round++) {
    for (const p of people) {
      const stolen = p.takenOver && round >= rounds / 2;
      p.at += stolen ? 2_000 + Math.floor(next() * 10_000) : 3_600_000 + Math.floor(next() * 7_200_000);
      const amount = stolen ? 400 + Math.round(next() * 800) : Math.round((5 + next() * 95) * 100) / 100;
      const country = stolen ? 'BR' : round === p.trip ? 'US' : p.home;
      list.push({ user: p.user, id: `${p.user}-${round}`, amount, country, at: p.at });
    }
  }
  return list;
}

/** The crash-free reference: `fraudScorer.run()` over each user's transactions, in-process. user -> outputs. */
export async function reference(list) {
  const byUser = new Map();
  for (const { user, ...tx } of list) {
    if (!byUser.has(user)) byUser.set(user, []);
    byUser.get(user).push(tx);
  }
  const out = new Map();
  for (const [user, txs] of byUser) out.set(user, await fraudScorer.run(txs));
  return out;
}

/**
 * Compares the outputs read from Redis with the reference. Per user, in the order read: one session, seqs
 * 1..n, values equal to the reference's; no (sid, seq) twice, no error output, no user missing or extra.
 * Returns a list of problems (empty: identical).
 */
export function compare(outputs, expected) {
  const problems = [];
  const seen = new Set();
  const byUser = new Map();
  for (const o of outputs) {
    const id = `${o.sid}#${o.seq}`;
    if (seen.has(id)) problems.push(`(${o.sid}, ${o.seq}) read twice`);
    seen.add(id);
    if ('error' in o) problems.push(`${o.key}: error output ${JSON.stringify(o.error)}`);
    if (!byUser.has(o.key)) byUser.set(o.key, []);
    byUser.get(o.key).push(o);
  }
  for (const [user, want] of expected) {
    const got = (byUser.get(user) ?? []).filter((o) => 'value' in o);
    const sids = new Set(got.map((o) => o.sid));
    if (sids.size > 1) problems.push(`${user}: ${sids.size} sessions (${[...sids].join(', ')}), not one`);
    const seqs = got.map((o) => o.seq);
    if (!isDeepStrictEqual(new Set(seqs), new Set(want.map((_, i) => i + 1)))) {
      problems.push(`${user}: seqs ${summarize(seqs)}, expected 1..${want.length}`);
    }
    const values = got.map((o) => o.value);
    if (!isDeepStrictEqual(values, want)) {
      const at = values.findIndex((v, i) => !isDeepStrictEqual(v, want[i]));
      problems.push(
        `${user}: ${values.length} outputs, expected ${want.length}; first difference at ${at < 0 ? values.length : at}: ` +
          `${JSON.stringify(values[at < 0 ? values.length : at])} instead of ${JSON.stringify(want[at < 0 ? values.length : at])}`,
      );
    }
  }
  for (const user of byUser.keys()) if (!expected.has(user)) problems.push(`${user}: outputs for a user nobody sent`);
  return problems;
}

function summarize(list) {
  return list.length <= 8 ? `[${list.join(',')}]` : `[${list.slice(0, 8).join(',')},... ${list.length} in all]`;
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/** Conditions the run waits for, re-checked on every change; all fail at once at the deadline or a crash. */
class Watch {
  #waiters = new Set();
  #error = null;
  changed() {
    for (const check of [...this.#waiters]) check();
  }
  fail(error) {
    this.#error ??= error;
    this.changed();
  }
  get failed() {
    return this.#error;
  }
  until(predicate, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.#error !== null) {
          this.#waiters.delete(check);
          reject(new Error(`while waiting for ${what}: ${this.#error.message}`));
        } else if (predicate()) {
          this.#waiters.delete(check);
          resolve();
        }
      };
      this.#waiters.add(check);
      check();
    });
  }
}

/** A child process running a role of this file; its stdout lines are parsed into `state`, `closed`, `port`. */
function spawnRole(watch, url, role, args, label) {
  const child = spawn(process.execPath, [SELF, role, ...args.map(String)], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, FRAUD_CLUSTER_CHILD: '1', REDIS_URL: url },
  });
  const proc = { label, child, pid: child.pid, state: null, closed: null, port: null, exit: null, expectExit: false };
  let rest = '';
  child.stdout.setEncoding('utf8').on('data', (text) => {
    const lines = (rest + text).split('\n');
    rest = lines.pop();
    for (const line of lines) {
      if (line.startsWith('state ')) proc.state = JSON.parse(line.slice(6));
      else if (line.startsWith('closed ')) proc.closed = JSON.parse(line.slice(7));
      else if (line.startsWith('listening ')) proc.port = Number(line.slice(10));
    }
    watch.changed();
  });
  child.stdin.on('error', () => {}); // a child killed with SIGKILL: its stdin pipe is gone
  child.once('error', (error) => watch.fail(new Error(`${label}: ${error.message}`)));
  child.once('close', (code, signal) => {
    proc.exit = { code, signal };
    if (!proc.expectExit)
      watch.fail(new Error(`${label} (pid ${child.pid}) exited unexpectedly (code ${code}, signal ${signal})`));
    watch.changed();
  });
  return proc;
}

/** SIGTERM (graceful) and the wait for its exit; false unless it exited by itself with code 0. */
async function stopRole(watch, proc) {
  if (proc.exit === null) {
    proc.expectExit = true;
    proc.child.kill('SIGTERM');
    await watch.until(() => proc.exit !== null, `${proc.label} to exit`);
  }
  return proc.exit.code === 0 && proc.exit.signal === null;
}

/** A private redis-server on a free 127.0.0.1 port, without persistence; stop() ends it by PID. */
async function privateRedis() {
  const port = await new Promise((resolve, reject) => {
    const probe = createTcpServer().once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address();
      probe.close(() => resolve(free));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'velo-fraud-cluster-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'];
  const server = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => server.once('close', resolve));
  let log = '';
  server.stdout.setEncoding('utf8').on('data', (text) => (log = (log + text).slice(-10_000)));
  server.stderr.setEncoding('utf8').on('data', (text) => (log = (log + text).slice(-10_000)));
  try {
    await new Promise((resolve, reject) => {
      server.once('error', (error) =>
        reject(
          new Error(`could not start redis-server (install the Debian package redis-server, or set REDIS_URL): ${error.message}`),
        ),
      );
      exited.then((code) => reject(new Error(`redis-server exited (${code}):\n${log}`)));
      const ready = () => /Ready to accept connections/.test(log) && resolve();
      server.stdout.on('data', ready);
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: server.pid,
    async stop() {
      if (server.exitCode === null && server.signalCode === null) process.kill(server.pid, 'SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const n = (x) => x.toLocaleString('en-US');
const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;

/** Posts `batch` to the gateway (JSON or NDJSON); a 503 ERR_VELO_LAG_LIMIT is sent again after 100 ms. */
async function post(url, batch, ndjson, counts, watch) {
  const body = ndjson ? batch.map((t) => JSON.stringify(t)).join('\n') + '\n' : JSON.stringify(batch);
  const type = ndjson ? 'application/x-ndjson' : 'application/json';
  for (;;) {
    if (watch.failed) throw watch.failed;
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': type },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    const answer = await res.json();
    counts.requests++;
    if (res.status === 202 && answer.accepted === batch.length) return;
    if (res.status === 503 && answer.error?.code === 'ERR_VELO_LAG_LIMIT') {
      counts.lagLimited++;
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    throw new Error(`POST answered ${res.status} ${JSON.stringify(answer)}`);
  }
}

export async function main(argv = process.argv.slice(2)) {
  const { values } = parseArgs({
    args: argv,
    options: {
      users: { type: 'string', default: '200' },
      rounds: { type: 'string', default: '24' },
      partitions: { type: 'string', default: '16' },
      'lease-ttl': { type: 'string', default: '2000' },
      'max-lag': { type: 'string', default: '50' },
      'no-replacement': { type: 'boolean', default: false },
      timeout: { type: 'string', default: '25000' },
    },
  });
  const int = (option, min, max) => {
    const value = Number(values[option]);
    if (!Number.isInteger(value) || value < min || value > max)
      throw new RangeError(`--${option} must be an integer from ${min} to ${max}`);
    return value;
  };
  // One POST per round carries every user's transaction: 10,000 fit the gateway's limits.
  const users = int('users', 1, 10_000);
  const rounds = int('rounds', 3, 1000);
  const partitions = int('partitions', 2, 1024);
  const leaseTtl = int('lease-ttl', 300, 60_000);
  const maxLag = int('max-lag', 0, 1e9);
  const timeout = int('timeout', 1000, 600_000);
  const replacement = !values['no-replacement'];

  const started = performance.now();
  const watch = new Watch();
  const deadline = setTimeout(() => watch.fail(new Error(`the run did not finish within ${timeout} ms (--timeout)`)), timeout);
  let own = null;
  if (!process.env.REDIS_URL) {
    try {
      own = await privateRedis();
    } catch (error) {
      clearTimeout(deadline);
      console.error(`redis-fraud-cluster: ${error.message}`);
      return false;
    }
  }
  const url = own?.url ?? process.env.REDIS_URL;
  // A name of its own: on a shared server this run touches no one else's keys.
  const name = `fraud-cluster-${process.pid}-${randomBytes(4).toString('hex')}`;
  const procs = [];
  const role = (kind, args, label) => {
    const proc = spawnRole(watch, url, kind, args, label);
    procs.push(proc);
    return proc;
  };
  const worker = (label) => role('worker', ['-', name, partitions, leaseTtl, label], label);
  const owned = (proc) => proc.state?.owned ?? [];
  /** Every partition owned by exactly one of `workers`, in fair shares. */
  const balanced = (...workers) => {
    const all = workers.flatMap(owned);
    const share = Math.ceil(partitions / workers.length);
    return all.length === partitions && new Set(all).size === partitions && workers.every((w) => owned(w).length <= share);
  };

  let client = null;
  let reader = null;
  const abort = new AbortController();
  let ok = false;
  try {
    client = await connect(url, 'reader');
    console.log(
      `redis        ${own ? `private redis-server (pid ${own.pid}) on 127.0.0.1:${own.port}` : 'REDIS_URL'}, ` +
        `function ${name}, ${partitions} partitions, leaseTtl ${leaseTtl} ms`,
    );
    const gateway = role('gateway', ['-', name, partitions, maxLag], 'gateway');
    const w1 = worker('worker-1');
    const w2 = worker('worker-2');
    await watch.until(
      () => gateway.port !== null && balanced(w1, w2),
      'the gateway to listen and the two workers to share the partitions',
    );
    const endpoint = `http://127.0.0.1:${gateway.port}/transactions`;
    console.log(`gateway      pid ${gateway.pid}, POST ${endpoint}${maxLag > 0 ? `, maxLag ${maxLag}` : ''}`);
    console.log(
      `workers      worker-1 (pid ${w1.pid}) ${owned(w1).length} partitions, worker-2 (pid ${w2.pid}) ${owned(w2).length} partitions`,
    );

    // Every output, as the workers write them.
    const outputs = [];
    const distinct = new Set();
    reader = (async () => {
      for await (const out of redisOutputs({ client, name, partitions, signal: abort.signal })) {
        outputs.push(out);
        distinct.add(`${out.sid}#${out.seq}`);
        watch.changed();
      }
    })().catch((error) => watch.fail(new Error(`redisOutputs failed: ${error.message}`)));

    const list = transactions({ users, rounds });
    const counts = { requests: 0, lagLimited: 0 };
    const postRounds = async (from, to) => {
      for (let round = from; round < to; round++)
        await post(endpoint, list.slice(round * users, (round + 1) * users), round % 2 === 1, counts, watch);
    };
    const killAt = Math.floor(rounds / 3);
    const joinAt = Math.floor((2 * rounds) / 3);

    // Load, part 1; then worker-2 is killed while it has written outputs and holds live sessions.
    await postRounds(0, killAt);
    await watch.until(() => (w2.state?.outputs ?? 0) > 0, 'worker-2 to write outputs');
    const victim = { partitions: owned(w2).length, outputs: w2.state.outputs };
    w2.expectExit = true;
    w2.child.kill('SIGKILL');
    const killed = performance.now();
    console.log(
      `kill         SIGKILL worker-2 (pid ${w2.pid}) after round ${killAt} of ${rounds}, holding ${victim.partitions} partitions, ` +
        `about ${n(victim.outputs)} outputs written`,
    );
    // Part 2, while worker-2's partitions have no owner (its sends wait in Redis; with maxLag, 503s are retried).
    let tookOver = null;
    const takeover = watch
      .until(() => owned(w1).length === partitions, 'worker-1 to take every partition')
      .then(() => {
        tookOver = performance.now() - killed;
      });
    await postRounds(killAt, joinAt);
    await takeover;
    await watch.until(() => w2.exit !== null, 'worker-2 to be gone');
    console.log(
      `takeover     worker-1 owned all ${partitions} partitions ${seconds(tookOver)} after the kill (leaseTtl ${leaseTtl} ms)`,
    );

    // Part 3, while a replacement joins and takes a fair share back (a graceful hand-off from worker-1).
    const w3 = replacement ? worker('worker-3') : null;
    await postRounds(joinAt, rounds);
    if (w3 !== null) {
      await watch.until(() => balanced(w1, w3), 'worker-1 and worker-3 to share the partitions');
      console.log(
        `replacement  worker-3 (pid ${w3.pid}) joined: worker-1 ${owned(w1).length} partitions, worker-3 ${owned(w3).length}`,
      );
    }
    console.log(
      `load         ${n(list.length)} transactions of ${n(users)} users in ${n(rounds)} POSTs (JSON and NDJSON), all 202` +
        (counts.lagLimited > 0 ? `; ${n(counts.lagLimited)} answered 503 ERR_VELO_LAG_LIMIT first and were sent again` : ''),
    );

    // Missing outputs never come: give up waiting in time to stop the workers and show what differs.
    let gaveUp = false;
    const patience = setTimeout(
      () => ((gaveUp = true), watch.changed()),
      Math.max(0, started + timeout - 5000 - performance.now()),
    );
    await watch.until(() => distinct.size >= list.length || gaveUp, `${n(list.length)} outputs`);
    clearTimeout(patience);
    if (gaveUp) console.error(`only ${n(distinct.size)} of ${n(list.length)} outputs came; comparing what is there`);
    // The survivors hand off gracefully: after that nothing writes, and every output is in Redis.
    const live = [w1, w3].filter((w) => w !== null);
    const clean = await Promise.all(live.map((w) => stopRole(watch, w)));
    const stored = (
      await Promise.all(Array.from({ length: partitions }, (_, p) => client.sendCommand(['XLEN', `velo:{${name}:p${p}}:out`])))
    ).reduce((a, b) => a + Number(b), 0);
    await watch.until(() => outputs.length >= stored, `all ${n(stored)} stored outputs to be read`);
    abort.abort();
    await reader;
    const gatewayClean = await stopRole(watch, gateway);

    const replays = live.map(
      (w) => `${w.label} replayed ${n(w.closed?.replayed ?? 0)} entries of ${n(w.closed?.replayedSessions ?? 0)} sessions`,
    );
    console.log(`replays      ${replays.join('; ')}`);
    const expected = await reference(list);
    const problems = compare(outputs, expected);
    const flagged = outputs.filter((o) => o.value?.flagged).length;
    console.log(
      `outputs      ${n(outputs.length)} read with redisOutputs (${n(stored)} stored, ${n(distinct.size)} distinct (sid, seq)), ` +
        `${n(flagged)} flagged, for ${n(new Set(outputs.map((o) => o.key)).size)} users`,
    );
    console.log(
      `reference    fraudScorer.run() per user, in-process, no crash: ${n([...expected.values()].reduce((a, r) => a + r.length, 0))} outputs`,
    );
    const exits = [
      ...live.map((w, i) => `${w.label} ${clean[i] ? 'exit 0' : `exit ${JSON.stringify(w.exit)}`}`),
      `gateway ${gatewayClean ? 'exit 0' : 'did not exit cleanly'}`,
    ];
    console.log(`shutdown     ${exits.join(', ')} (graceful); worker-2 killed by ${w2.exit.signal}`);
    for (const problem of problems.slice(0, 10)) console.error(`difference: ${problem}`);
    if (problems.length > 10) console.error(`... ${problems.length - 10} more differences`);
    console.log(
      `results identical to a crash-free run: ${problems.length === 0 ? 'yes' : `NO (${problems.length} differences)`}`,
    );
    ok = problems.length === 0 && clean.every(Boolean) && gatewayClean;
  } catch (error) {
    console.error(`redis-fraud-cluster: ${error.message}`);
  } finally {
    clearTimeout(deadline);
    abort.abort();
    await reader;
    // Whatever is still running after a failure is killed (by PID) and waited for.
    for (const proc of procs) {
      if (proc.exit !== null) continue;
      proc.expectExit = true;
      proc.child.kill('SIGKILL');
    }
    await Promise.all(procs.map((proc) => proc.exit ?? new Promise((resolve) => proc.child.once('close', resolve))));
    if (client !== null) {
      if (own === null) {
        // A shared server: remove what this run wrote (its function's keys only).
        for (const pattern of [`velo:{${name}:p*`, `velo:{${name}}:*`]) {
          for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 500 }))
            if (keys.length > 0) await client.del(keys);
        }
      }
      await client.close();
    }
    await own?.stop();
    console.log(
      `time         ${seconds(performance.now() - started)}; redis-server ${own ? 'stopped' : 'left running (yours)'}, every child exited`,
    );
  }
  return ok;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'worker') await workerRole(args);
  else if (mode === 'gateway') await gatewayRole(args);
  else process.exitCode = (await main()) ? 0 : 1;
}
