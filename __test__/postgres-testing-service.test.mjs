// velo-stream/testing's postgresService(): a private Postgres (its own cluster, a fresh database), a service's
// worker processes, an output collector, all released by `await using` (written here as its try/finally: Node 20
// has Symbol.asyncDispose but not the syntax). The processes are the harness's own subject, so the tests check what
// the child helper would: each exit code, a clean stderr, and nothing left once the service is closed: no process
// (the server's own included) and no directory. The system's shared server is never used.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { postgresProducer } from 'velo-stream/postgres';
import { postgresService } from 'velo-stream/testing';
import { assertCleanStderr, run, start } from './helpers/child.mjs';

const worker = new URL('./fixtures/postgres-service-worker.mjs', import.meta.url);

/** `await using service = await postgresService()`, as Node 20 can write it. */
async function withService(body, options) {
  const service = await postgresService(options);
  try {
    return await body(service);
  } finally {
    await service[Symbol.asyncDispose]();
  }
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The processes whose parent is `pid` (the server's own: checkpointer, connections...), from /proc. */
function childrenOf(pid) {
  const found = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // stat: "pid (comm) state ppid ..."; comm may hold spaces, so read after its last ')'.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(name));
    } catch {
      // It exited meanwhile.
    }
  }
  return found;
}

/** What must be gone after close(): every process of the service, the server's own, and its directory. */
async function leftovers(service) {
  const pool = service.pool({ max: 1 });
  const { rows } = await pool.query({ text: 'SHOW data_directory' });
  return { pids: [...service.pids(), ...childrenOf(service.pid)], dir: dirname(rows[0].data_directory) };
}

function assertGone({ pids, dir }) {
  assert.ok(pids.length > 1, 'the server runs processes of its own');
  assert.deepEqual(pids.filter(alive), [], 'no process left');
  assert.equal(existsSync(dir), false, `${dir} removed`);
}

/**
 * Per key: one output for each event sent to it, each once and in the order sent, and within a session (a key's
 * sessions end after 200 ms idle) the running total of its events, each added once.
 */
function assertTotals(items, keys, sent) {
  const ids = items.map((o) => `${o.sid}#${o.seq}`);
  assert.equal(new Set(ids).size, ids.length, 'each (sid, seq) once');
  for (let k = 0; k < keys; k++) {
    const mine = items.filter((o) => o.key === `k${k}`);
    const expected = Array.from({ length: sent }, (_, i) => i + 1).filter((n) => n % keys === k);
    assert.deepEqual(
      mine.map((o) => o.value.n),
      expected,
      `k${k}: each event once, in order`,
    );
    const totals = new Map();
    for (const { sid, value } of mine) {
      totals.set(sid, (totals.get(sid) ?? 0) + value.n);
      assert.equal(value.total, totals.get(sid), `k${k}: n=${value.n} added once to its session's total`);
    }
  }
}

test('kill -9 a worker mid-stream: another finishes, every output once and in order per key, exits 0 with a clean stderr', async () => {
  const left = await withService(async (service) => {
    const producer = postgresProducer({ pool: service.pool(), name: 'totals', partitions: 8 });
    const outputs = service.outputs({ name: 'totals', partitions: 8, pollInterval: 20 });
    const a = service.spawn(worker);
    await a.waitFor(/ready/);
    for (let n = 1; n <= 40; n++) await producer.send(`k${n % 4}`, { n });
    await outputs.until(5, 20_000);
    a.kill(); // kill -9, mid-stream
    assert.deepEqual(await a.exited, { code: null, signal: 'SIGKILL' });
    for (let n = 41; n <= 80; n++) await producer.send(`k${n % 4}`, { n });
    const b = service.spawn(worker);
    await outputs.until(80, 30_000);
    assert.deepEqual(await b.stop(), { code: 0, signal: null });
    assert.equal(b.stderr, '');
    assertCleanStderr(a.stderr, 'the killed worker');
    assert.match(b.stdout, /ready\nclosed\n/);
    assert.equal(outputs.items.length, 80);
    assertTotals(outputs.items, 4, 80);
    assert.deepEqual(service.pids(), [service.pid], 'the server alone runs');
    return leftovers(service);
  });
  assertGone(left);
});

test('SIGSTOP then SIGCONT: nothing is handled while the only worker is stopped, then all of it; SIGTERM exits 0', async () => {
  await withService(async (service) => {
    const producer = postgresProducer({ pool: service.pool(), name: 'totals', partitions: 8 });
    const outputs = service.outputs({ name: 'totals', partitions: 8, pollInterval: 20 });
    const a = service.spawn(worker);
    await a.waitFor(/ready/);
    a.pause();
    for (let n = 1; n <= 8; n++) await producer.send(`k${n % 2}`, { n });
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(outputs.items.length, 0, 'nothing is handled while the only worker is stopped');
    a.resume();
    await outputs.until(8, 20_000);
    assertTotals(outputs.items, 2, 8);
    assert.deepEqual(await a.stop(), { code: 0, signal: null });
    assert.equal(a.stderr, '');
  });
});

test('SIGTERM hands off at once: with a 60 s lease, the other worker takes over and finishes long before it runs out', async () => {
  await withService(async (service) => {
    const env = { LEASE_TTL: '60000' };
    const producer = postgresProducer({ pool: service.pool(), name: 'totals', partitions: 8 });
    const outputs = service.outputs({ name: 'totals', partitions: 8, pollInterval: 20 });
    const a = service.spawn(worker, { env });
    await a.waitFor(/ready/);
    for (let n = 1; n <= 40; n++) await producer.send(`k${n % 8}`, { n });
    await outputs.until(40, 20_000);
    const b = service.spawn(worker, { env });
    await b.waitFor(/ready/);
    assert.deepEqual(await a.stop('SIGTERM'), { code: 0, signal: null });
    assert.match(a.stdout, /ready\nclosed\n/);
    assert.equal(a.stderr, '');
    for (let n = 41; n <= 80; n++) await producer.send(`k${n % 8}`, { n });
    // Every partition, a's included, is served by b within the lease a would otherwise have held (b looks for free
    // partitions every third of its lease: up to 20 s here, more on a loaded machine).
    await outputs.until(80, 50_000);
    assertTotals(outputs.items, 8, 80);
    assert.deepEqual(await b.stop(), { code: 0, signal: null });
    assert.equal(b.stderr, '');
  });
});

test('close() stops every process, a paused one included, and the server with its own, also when the test fails', async () => {
  let left;
  await assert.rejects(
    withService(async (service) => {
      const a = service.spawn(worker);
      const b = service.spawn(worker);
      await Promise.all([a.waitFor(/ready/), b.waitFor(/ready/)]);
      b.pause();
      assert.equal(service.pids().length, 3);
      left = await leftovers(service);
      throw new Error('the test failed');
    }),
    /the test failed/,
  );
  assertGone(left);
});

/** A test process that ends without closing: it prints what must be gone, then `how` ends it. */
function orphanScript(how) {
  return `
    import { postgresService } from 'velo-stream/testing';
    const service = await postgresService();
    const p = service.spawn(${JSON.stringify(worker.href)});
    await p.waitFor(/ready/);
    const pool = service.pool({ max: 1 });
    const { rows } = await pool.query({ text: 'SHOW data_directory' });
    console.log(JSON.stringify({ pids: service.pids(), data: rows[0].data_directory }));
    ${how}
  `;
}

for (const [how, script, end] of [
  ['an uncaught error', "throw new Error('boom');", { code: 1, expectStderr: /Error: boom[^]*/ }],
  ['SIGTERM', "console.log('waiting'); setInterval(() => {}, 1000);", { signal: 'SIGTERM' }],
]) {
  test(`a test process ended by ${how} takes its server, its processes and its directory with it`, async () => {
    const child = start(['--input-type=module', '-e', orphanScript(script)], end.signal ? {} : end);
    const printed = JSON.parse((await child.waitFor(/^\{.*\}$/m))[0]);
    if (end.signal) {
      await child.waitFor(/waiting/);
      child.child.kill(end.signal);
      const exit = await new Promise((resolve) => child.child.once('close', (code, signal) => resolve({ code, signal })));
      assert.deepEqual(exit, { code: null, signal: 'SIGTERM' }, 'the signal still ends the process');
      assertCleanStderr(child.stderr, 'the test process');
    } else await child.finished();
    // SIGQUIT is the server's immediate shutdown: give it a moment to end its own processes.
    const until = Date.now() + 10_000;
    while (printed.pids.some(alive) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(printed.pids.filter(alive), []);
    assert.equal(existsSync(dirname(printed.data)), false);
  });
}

test('hostile options are refused with codes before anything starts', async () => {
  const ours = () => readdirSync(tmpdir()).filter((name) => name.startsWith('velo-pg-service-'));
  const before = ours();
  const refused = async (options, code, message) =>
    assert.rejects(postgresService(options), (error) => {
      assert.equal(error.code, code, error.message);
      assert.match(error.message, message);
      return true;
    });
  await refused(null, 'ERR_INVALID_ARG_TYPE', /options must be an object/);
  await refused({ bogus: 1 }, 'ERR_INVALID_ARG_VALUE', /unknown option "bogus"/);
  await refused({ startTimeout: 0 }, 'ERR_OUT_OF_RANGE', /startTimeout/);
  await refused({ bin: 'relative/bin' }, 'ERR_INVALID_ARG_TYPE', /absolute path/);
  await refused({ durable: 'yes' }, 'ERR_INVALID_ARG_TYPE', /durable must be a boolean/);
  await refused({ settings: { port: 5432 } }, 'ERR_INVALID_ARG_VALUE', /settings\.port is the harness's own/);
  await refused({ settings: { listen_addresses: '*' } }, 'ERR_INVALID_ARG_VALUE', /harness's own/);
  await refused({ settings: { 'a=1 -c b': 1 } }, 'ERR_INVALID_ARG_VALUE', /not a server setting's name/);
  await refused({ settings: { work_mem: '4MB\n-c port=5432' } }, 'ERR_INVALID_ARG_TYPE', /one line/);
  await refused({ settings: [] }, 'ERR_INVALID_ARG_TYPE', /settings must be an object/);
  await refused({ bin: '/nonexistent/bin' }, 'ERR_VELO_TEST_SERVER', /the bin option is "\/nonexistent\/bin".*apt-get install postgresql-15/s);
  const saved = process.env.VELO_POSTGRES_BIN;
  process.env.VELO_POSTGRES_BIN = '/nonexistent/pg';
  try {
    await refused({}, 'ERR_VELO_TEST_SERVER', /\$VELO_POSTGRES_BIN is "\/nonexistent\/pg".*apt-get install postgresql-15/s);
  } finally {
    if (saved === undefined) delete process.env.VELO_POSTGRES_BIN;
    else process.env.VELO_POSTGRES_BIN = saved;
  }
  // Nothing was started: no directory of the harness was left behind either.
  assert.deepEqual(ours(), before);
});

test("a service's own calls refuse hostile arguments with codes", async () => {
  await withService(async (service) => {
    const code = (call, expected) =>
      assert.throws(call, (error) => {
        assert.equal(error.code, expected, error.message);
        return true;
      });
    code(() => service.spawn(42), 'ERR_INVALID_ARG_TYPE');
    code(() => service.spawn(worker, { args: 'x' }), 'ERR_INVALID_ARG_TYPE');
    code(() => service.spawn(worker, { env: { N: 1 } }), 'ERR_INVALID_ARG_TYPE');
    code(() => service.pool({ host: 'elsewhere' }), 'ERR_INVALID_ARG_VALUE');
    code(() => service.pool({ max: -1 }), 'ERR_INVALID_ARG_TYPE');
    code(() => service.outputs({ name: 'totals', partitions: 0 }), 'ERR_OUT_OF_RANGE');
    code(() => service.outputs({ name: 'totals', bogus: 1 }), 'ERR_INVALID_ARG_VALUE');
    // The address a process is given is the service's, whatever the test's env says.
    const dir = mkdtempSync(join(tmpdir(), 'velo-pg-service-test-'));
    try {
      const print = join(dir, 'print.mjs');
      writeFileSync(print, 'console.log(process.env.DATABASE_URL);\n');
      const p = service.spawn(print, { env: { DATABASE_URL: 'postgres://elsewhere/db' } });
      assert.deepEqual(await p.exited, { code: 0, signal: null });
      assert.equal(p.stdout.trim(), service.url);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('without the pg package, postgresService() fails with ERR_VELO_TEST_SERVER saying what to install', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'velo-pg-service-test-'));
  try {
    // pg made unresolvable, as in a project that has not installed it.
    const hide = join(dir, 'hide-pg.cjs');
    writeFileSync(
      hide,
      "const M = require('node:module'); const r = M._resolveFilename; M._resolveFilename = function (request, ...rest) { if (request === 'pg') { const e = new Error(\"Cannot find module 'pg'\"); e.code = 'MODULE_NOT_FOUND'; throw e; } return r.call(this, request, ...rest); };\n",
    );
    const script = `
      import { postgresService } from 'velo-stream/testing';
      await postgresService().then(() => console.log('started'), (e) => console.log(e.code, e.message));
    `;
    const { stdout } = await run(['--require', hide, '--input-type=module', '-e', script], { cwd: process.cwd() });
    assert.match(stdout, /^ERR_VELO_TEST_SERVER .*cannot load the `pg` package.*npm install --save-dev pg/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
