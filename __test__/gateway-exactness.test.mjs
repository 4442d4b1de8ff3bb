// An LLM gateway on velo-stream/durable, run as a team runs it: worker processes (fixtures/gateway-worker.mjs) on a
// private Redis and on a private Postgres, durable conversations per chat, each answer a journaled model stream
// from a fake model that answers differently on every call. Mid-answer, a worker is killed -9, another is stopped
// (SIGSTOP) past its lease and woken, and the fleet is deployed to a v2 with `migrate` whose model is terser, then
// a v2 worker is killed -9. Whatever happened, every question has exactly one end, the token outputs before it are
// one answer (indices 0..n-1 once each, one answer id: never one answer's head joined to another's tail), no token
// comes twice, and on Postgres the billing rows written in `effects` are the token outputs delivered, exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sessionProducer } from 'velo-stream/durable';
import { postgresService, redisService } from 'velo-stream/testing';
import { assertCleanStderr } from './helpers/child.mjs';
import { serverCommand } from './helpers/redis-server.mjs';

const worker = new URL('./fixtures/gateway-worker.mjs', import.meta.url);
const NAME = 'gateway';
const PARTITIONS = 8;
const LEASE_TTL = 1000;
const CHATS = Array.from({ length: 6 }, (_, i) => `chat${i}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the outputs read so far say of question `q`: its tokens and its ends. */
function answerOf(items, q) {
  const mine = items.filter((o) => o.value?.q === q);
  return { tokens: mine.filter((o) => o.value.done !== true), ends: mine.filter((o) => o.value.done === true) };
}

/** Question `q`'s outputs as read: `<i><<model's caller>` per token, `done`; its chat's failures. */
function trace(items, q, chat) {
  return items
    .filter((o) => ('error' in o ? o.key === chat : o.value.q === q))
    .map((o) => {
      if ('error' in o) return `error(${o.error.code ?? ''} ${o.error.name}: ${o.error.message})`;
      return o.value.done ? 'done' : `${o.value.i}<${o.value.tok.by}`;
    })
    .join(' ');
}

/**
 * How the answers to `asked` were made: `continued`, those whose tokens two model calls made (the second continuing
 * after the first's journaled prefix, at a takeover or an adoption).
 */
function continued(items, asked) {
  const count = { continued: 0 };
  for (const { q } of asked) {
    const tokens = items.filter((o) => o.value?.q === q && o.value.done !== true);
    if (new Set(tokens.map((o) => o.value.tok.by)).size > 1) count.continued++;
  }
  return count;
}

/**
 * The gateway's promises over every output read: each (sid, seq) once; per question one end, after its tokens,
 * which are indices 0..n-1 once each of one answer id; no token value twice; no failure.
 */
function assertExact(items, asked) {
  const ids = items.map((o) => `${o.sid}#${o.seq}`);
  assert.equal(new Set(ids).size, ids.length, 'each (sid, seq) once');
  assert.deepEqual(
    items.filter((o) => 'error' in o),
    [],
    'no session failed',
  );
  const values = new Set();
  for (const { q, chat } of asked) {
    const mine = items.filter((o) => o.value.q === q);
    assert.ok(
      mine.every((o) => o.key === chat),
      `q${q}: every output on its chat's key`,
    );
    const ends = mine.filter((o) => o.value.done === true);
    assert.equal(ends.length, 1, `q${q}: exactly one end (${ends.length})`);
    const last = mine.at(-1);
    assert.equal(last.value.done, true, `q${q}: the end comes after every token`);
    const tokens = mine.slice(0, -1);
    const n = last.value.tokens;
    const trace = tokens.map((o) => `${o.value.i}:${o.value.tok.id.slice(0, 8)}/${o.value.tok.i}`).join(' ');
    assert.deepEqual(
      tokens.map((o) => o.value.i),
      Array.from({ length: n }, (_, i) => i),
      `q${q}: tokens 0..${n - 1}, once each, in order: ${trace}`,
    );
    assert.deepEqual(
      tokens.map((o) => o.value.tok.i),
      Array.from({ length: n }, (_, i) => i),
      `q${q}: the model's own indices follow the outputs': ${trace}`,
    );
    assert.equal(new Set(tokens.map((o) => o.value.tok.id)).size, 1, `q${q}: one answer id: ${trace}`);
    assert.equal(tokens.at(-1).value.tok.last, true, `q${q}: the answer is whole, to the model's last token: ${trace}`);
    for (const o of tokens) {
      assert.ok(!values.has(o.value.tok.v), `q${q}: token ${o.value.tok.v} once`);
      values.add(o.value.tok.v);
    }
  }
}

/**
 * The scenario on one backend: `service` its harness, `client` a client of it for the producer. Returns the outputs
 * read and the questions asked; asserts every process's exit and stderr on the way.
 */
async function gateway(service, client, backend, outputsOptions = {}) {
  const producer = sessionProducer({ client, name: NAME, partitions: PARTITIONS });
  const outputs = service.outputs({ name: NAME, partitions: PARTITIONS, ...outputsOptions });
  const workers = [];
  const spawn = (version) => {
    const p = service.spawn(worker, { env: { BACKEND: backend, VERSION: version, LEASE_TTL: String(LEASE_TTL) } });
    workers.push(p);
    return p;
  };
  const asked = [];
  const rounds = [];
  let q = 0;

  /** One question per chat; `fault` runs once an answer is in flight (asserted), then every answer is awaited. */
  async function round(what, fault) {
    const mine = CHATS.map((chat) => ({ chat, q: ++q }));
    asked.push(...mine);
    for (const { chat, q: n } of mine) await producer.send(chat, { q: n, prompt: `question ${n}` });
    if (fault !== undefined) {
      await outputs.until((items) => mine.some(({ q: n }) => answerOf(items, n).tokens.length >= 2), 30_000);
      const inFlight = mine.filter(({ q: n }) => {
        const a = answerOf(outputs.items, n);
        return a.tokens.length > 0 && a.ends.length === 0;
      });
      assert.ok(inFlight.length > 0, `${what}: an answer in flight`);
      await fault();
    }
    try {
      // (A failed session ends the wait at once: its question would never end.)
      await outputs.until(
        (items) =>
          mine.every(({ q: n }) => answerOf(items, n).ends.length > 0) ||
          items.some((o) => 'error' in o && CHATS.includes(o.key)),
        20_000,
      );
      if (outputs.items.some((o) => 'error' in o)) throw new Error('a session failed');
    } catch (error) {
      const state = mine.map(({ chat, q: n }) => `q${n} (${chat}): ${trace(outputs.items, n, chat)}`);
      const stderr = workers.map((p) => `pid ${p.pid}: ${p.stderr.slice(0, 1500)}`);
      throw new Error(`${what}: ${error.message}\n${state.join('\n')}\nworkers' stderr:\n${stderr.join('\n')}`);
    }
    rounds.push({ what, ...continued(outputs.items, mine) });
  }

  const a = spawn('v1');
  const b = spawn('v1');
  await Promise.all([a.waitFor(/ready/), b.waitFor(/ready/)]);
  await round('warm-up');

  // A third worker starts mid-answer (the fleet rebalances onto it: partitions handed off gracefully).
  let a2;
  await round('a third worker starts', async () => {
    a2 = spawn('v1');
    await a2.waitFor(/ready/);
  });

  // kill -9 mid-answer: the survivors take its partitions once the lease runs out and continue from the journal.
  await round('kill -9', async () => {
    a.kill();
    assert.deepEqual(await a.exited, { code: null, signal: 'SIGKILL' });
  });
  assertCleanStderr(a.stderr, 'the worker killed -9');

  // SIGSTOP past the lease, then SIGCONT: the others take over; the woken worker's late commits are fenced.
  await round('SIGSTOP past the lease', async () => {
    b.pause();
    await sleep(LEASE_TTL * 1.6);
    b.resume();
  });

  // A rolling deploy to v2 (migrate; a terser model) mid-answer: v2 workers start, the v1 workers stop (SIGTERM).
  const c = spawn('v2');
  const d = spawn('v2');
  await round('migrate deploy', async () => {
    await Promise.all([c.waitFor(/ready/), d.waitFor(/ready/)]);
    await sleep(50);
    assert.deepEqual(await a2.stop(), { code: 0, signal: null }, 'a v1 worker stops cleanly');
    assert.deepEqual(await b.stop(), { code: 0, signal: null }, 'the woken v1 worker stops cleanly');
  });
  for (const [p, what] of [
    [a2, 'a v1 worker'],
    [b, 'the v1 worker stopped past its lease'],
  ]) {
    assert.match(p.stdout, /ready\nclosed\n/, what);
    assertCleanStderr(p.stderr, what);
  }

  // kill -9 of a v2 worker mid-answer, then a round on the survivor alone.
  await round('kill -9 on v2', async () => {
    c.kill();
    assert.deepEqual(await c.exited, { code: null, signal: 'SIGKILL' });
  });
  await round('after');
  assertCleanStderr(c.stderr, 'the v2 worker killed -9');
  assert.deepEqual(await d.stop(), { code: 0, signal: null });
  assert.match(d.stdout, /ready\nclosed\n/);
  assert.equal(d.stderr, '', 'the last worker wrote nothing to stderr');
  await outputs.close();
  return { items: outputs.items, asked, rounds };
}

/** What both backends promise of a run: see the file's comment. `t` reports how the answers were made. */
function assertRun(t, { items, asked, rounds }) {
  t.diagnostic(`answers made across processes, per round: ${JSON.stringify(rounds)}`);
  assertExact(items, asked);
  // The run's faults landed mid-answer: some answer was continued after its journaled prefix by another process.
  assert.ok(
    rounds.some((r) => r.continued > 0),
    'an answer continued after a journaled prefix',
  );
  // The terser v2 answered the last round.
  const late = asked.slice(-CHATS.length).map(({ q }) => answerOf(items, q).ends[0].value.tokens);
  assert.ok(
    late.every((n) => n <= 7),
    `v2 answered the last round: ${late}`,
  );
}

test(
  'Redis: every question answered once, as one answer, through a join, kill -9, SIGSTOP past the lease and a migrate deploy',
  { timeout: 120_000 },
  async (t) => {
    const service = await redisService({ command: serverCommand() });
    try {
      assertRun(t, await gateway(service, await service.client(), 'redis'));
    } finally {
      await service[Symbol.asyncDispose]();
    }
  },
);

test(
  'Postgres: the same, and the billing rows written in effects are the token outputs delivered, exactly',
  { timeout: 120_000 },
  async (t) => {
    const service = await postgresService();
    try {
      const pool = service.pool({ max: 2 });
      await pool.query('CREATE TABLE billing (sid text, seq bigint, chat text, q int, i int)');
      const run = await gateway(service, pool, 'postgres', { pollInterval: 20 });
      assertRun(t, run);
      const { rows } = await pool.query('SELECT sid, seq::int AS seq, q, i FROM billing');
      const tokens = run.items.filter((o) => o.value.done !== true);
      const key = (r) => `${r.sid}#${r.seq} q${r.q} i${r.i}`;
      assert.equal(rows.length, tokens.length, 'one billing row per token output');
      assert.deepEqual(
        rows.map(key).sort(),
        tokens.map((o) => key({ sid: o.sid, seq: o.seq, q: o.value.q, i: o.value.i })).sort(),
        'the billing rows are the token outputs',
      );
    } finally {
      await service[Symbol.asyncDispose]();
    }
  },
);
