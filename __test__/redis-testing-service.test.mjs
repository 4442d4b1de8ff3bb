// velo-stream/testing's redisService(): a private redis-server, a service's worker processes, an output collector,
// all released by `await using` (written here as its try/finally: Node 20 has Symbol.asyncDispose but not the
// syntax). The processes are the harness's own subject, so the tests check what the child helper would: each
// exit code, a clean stderr, and no process left once the service is disposed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisProducer } from 'velo-stream/redis';
import { redisService } from 'velo-stream/testing';
import { serverCommand } from './helpers/redis-server.mjs';

const worker = new URL('./fixtures/service-worker.mjs', import.meta.url);
const command = serverCommand();
/** `await using service = await redisService()`, as Node 20 can write it. */
async function withService(body) {
  const service = await redisService({ command });
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

test('kill -9 a worker mid-run: a new worker finishes, every output once per (sid, seq), exits 0 with a clean stderr', async () => {
  const pids = await withService(async (service) => {
    const producer = redisProducer({ client: await service.client(), name: 'totals', partitions: 8 });
    const outputs = service.outputs({ name: 'totals', partitions: 8 });
    const a = service.spawn(worker);
    await a.waitFor(/ready/);
    for (let n = 1; n <= 40; n++) await producer.send(`k${n % 4}`, { n });
    await outputs.until(5);
    a.kill(); // kill -9
    assert.deepEqual(await a.exited, { code: null, signal: 'SIGKILL' });
    for (let n = 41; n <= 80; n++) await producer.send(`k${n % 4}`, { n });
    const b = service.spawn(worker);
    await outputs.until(80, 20_000);
    assert.deepEqual(await b.stop(), { code: 0, signal: null });
    assert.equal(b.stderr, '');
    assert.match(b.stdout, /ready\nclosed\n/);
    const ids = outputs.items.map((o) => `${o.sid}#${o.seq}`);
    assert.equal(new Set(ids).size, ids.length, 'each (sid, seq) once');
    assert.equal(outputs.items.length, 80);
    // Per key, the totals of a crash-free run: each event's n added once, in order.
    for (let k = 0; k < 4; k++) {
      const mine = outputs.items.filter((o) => o.key === `k${k}`).map((o) => o.value.n);
      assert.deepEqual([...mine].sort((x, y) => x - y), [...mine], `k${k} in order`);
      assert.equal(mine.length, 20);
    }
    assert.equal(service.pids().length, 1, 'the server alone runs');
    return service.pids();
  });
  assert.deepEqual(pids.filter(alive), [], 'the server is stopped by dispose');
});

test('dispose stops every process, a paused one included, and the server', async () => {
  const pids = await withService(async (service) => {
    const a = service.spawn(worker);
    const b = service.spawn(worker);
    await Promise.all([a.waitFor(/ready/), b.waitFor(/ready/)]);
    b.pause();
    assert.equal(service.pids().length, 3);
    return service.pids();
  });
  assert.deepEqual(pids.filter(alive), []);
});

test('SIGSTOP then SIGCONT: the paused worker goes on; SIGTERM stops both with exit code 0', async () => {
  await withService(async (service) => {
    const producer = redisProducer({ client: await service.client(), name: 'totals', partitions: 8 });
    const outputs = service.outputs({ name: 'totals', partitions: 8 });
    const a = service.spawn(worker);
    await a.waitFor(/ready/);
    a.pause();
    for (let n = 1; n <= 8; n++) await producer.send(`k${n}`, { n });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(outputs.items.length, 0, 'nothing is handled while the only worker is stopped');
    a.resume();
    await outputs.until(8);
    assert.deepEqual(await a.stop(), { code: 0, signal: null });
    assert.equal(a.stderr, '');
  });
});

test('stop() of a process that ignores SIGTERM kills it -9 after the timeout and says so', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'velo-service-test-'));
  try {
    const stubborn = join(dir, 'stubborn.mjs');
    writeFileSync(stubborn, "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000);\n");
    await withService(async (service) => {
      const p = service.spawn(stubborn);
      await p.waitFor(/up/);
      await assert.rejects(p.stop('SIGTERM', 300), /did not exit within 300 ms of SIGTERM: killed -9/);
      assert.deepEqual(await p.exited, { code: null, signal: 'SIGKILL' });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing server binary fails loudly with ERR_VELO_TEST_SERVER, naming what to install', async () => {
  await assert.rejects(redisService({ command: '/nonexistent/redis-server' }), (error) => {
    assert.equal(error.code, 'ERR_VELO_TEST_SERVER');
    assert.match(error.message, /cannot run "\/nonexistent\/redis-server".*apt-get install redis-server/s);
    return true;
  });
});

test('wrong options and spawn() arguments are refused with codes (the harness shared with postgresService)', async () => {
  const refused = (options, code) =>
    assert.rejects(redisService(options), (error) => {
      assert.equal(error.code, code, error.message);
      return true;
    });
  await refused(null, 'ERR_INVALID_ARG_TYPE');
  await refused({ command, typo: 1 }, 'ERR_INVALID_ARG_VALUE');
  await refused({ command, args: '--port 1' }, 'ERR_INVALID_ARG_TYPE');
  await refused({ command, startTimeout: -1 }, 'ERR_OUT_OF_RANGE');
  await withService(async (service) => {
    assert.throws(() => service.spawn(worker, { execArgv: [1] }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => service.spawn(undefined), { code: 'ERR_INVALID_ARG_TYPE' });
  });
});
