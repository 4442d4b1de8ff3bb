// The journal (ctx.run, ctx.stream) composed with the tier's other parts: checkpoints, timers, debounce, key state and
// migrate, each on the in-memory log (testWorker, the owner crashed), on Redis and on Postgres (sessionWorker on a
// private server, the owner handing over: closed, another started). In each, the handler keeps every answer its
// journaled calls got and yields them all: a replay after the crash or hand-off that called again would show another
// answer in a later output, and call the service more than once per input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { streamFn } from 'velo-stream';
import { sessionOutputs, sessionProducer, sessionWorker } from 'velo-stream/durable';
import { testWorker } from 'velo-stream/testing';
import { client, fresh, useRedis } from './helpers/redis-suite.mjs';
import { pool, usePostgres } from './helpers/postgres-suite.mjs';

useRedis();
usePostgres();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const LEASE = 1000;

/** A service that answers differently on every call; `calls` counts them. */
function service() {
  const s = { calls: 0, quote: async (what) => `${what}:${++s.calls}:${randomUUID().slice(0, 8)}` };
  return s;
}

/** A streamed answer that differs on every call, continued after `chunks` (as a model asked to go on). */
async function* model(s, what, chunks) {
  const id = chunks[0]?.id ?? (await s.quote(`${what}-model`));
  for (let i = chunks.length; i < 3; i++) yield { id, i };
}

/**
 * The backends: `start(fn, options)` a worker of a fresh function; the handle sends, lets time pass, hands over
 * (`next`: the next owner's handler and options, for a deploy) and reads `n` outputs, by sid and seq.
 */
const BACKENDS = {
  memory: {
    async start(fn, options) {
      const tw = testWorker(fn, { leaseTtl: LEASE, ...options });
      return {
        send: (key, event) => void tw.send(key, event),
        pass: (ms) => tw.advance(ms),
        async handover(next) {
          if (next === undefined) {
            tw.crash(); // kill -9: the next process takes over once the lease runs out
            return;
          }
          tw.deploy(next.fn, next.options);
          await tw.advance(4 * LEASE);
          await tw.stop(options.version);
        },
        async outputs(n) {
          await tw.advance(10 * LEASE);
          const outs = tw.outputs();
          assert.equal(outs.length, n, JSON.stringify(outs.map((o) => o.value)));
          await tw.close();
          return outs;
        },
      };
    },
  },
  redis: { start: (fn, options) => onServer({ client, name: fresh('journal-compose') }, {}, fn, options) },
  postgres: {
    start: (fn, options) =>
      onServer(
        { client: pool(), schema: 'velo_journal_compose', name: fresh('journal-compose') },
        { pollInterval: 20 },
        fn,
        options,
      ),
  },
};

/**
 * A function run by sessionWorker on a server (`reading`: the worker's and reader's own options): a hand-over starts
 * the next worker, then closes the one before.
 */
async function onServer(shared, reading, fn, options) {
  const common = { ...shared, partitions: 1 };
  const producer = sessionProducer(common);
  const errors = [];
  const onError = (error) => errors.push(error);
  let worker = sessionWorker(fn, { ...common, ...reading, leaseTtl: LEASE, onError, ...options });
  return {
    send: (key, event) => producer.send(key, event),
    pass: (ms) => sleep(ms),
    async handover(next) {
      const old = worker;
      worker = sessionWorker(next?.fn ?? fn, { ...common, ...reading, leaseTtl: LEASE, onError, ...(next?.options ?? options) });
      await old.close();
    },
    async outputs(n) {
      const reader = sessionOutputs({ ...common, ...reading });
      const got = [];
      const timer = setTimeout(() => reader[Symbol.asyncDispose](), 20_000);
      try {
        for await (const item of reader) {
          got.push(item);
          if (got.length === n) break;
        }
      } finally {
        clearTimeout(timer);
        await worker.close();
      }
      assert.equal(got.length, n, JSON.stringify(got.map((o) => o.value)));
      // (A hand-over may fence the old worker's last write: not an error of the run.)
      assert.deepEqual(
        errors.filter((e) => e?.code !== 'ERR_VELO_FENCED'),
        [],
      );
      return got;
    },
  };
}

/** Each key's outputs in order: every one's `answers` a prefix of the key's last, which holds `calls` distinct answers. */
function oneAnswerEach(outputs, calls) {
  const byKey = new Map();
  for (const o of [...outputs].sort((a, b) => (a.sid < b.sid ? -1 : a.sid > b.sid ? 1 : a.seq - b.seq))) {
    assert.ok('value' in o, `no failure: ${JSON.stringify(o.error)}`);
    byKey.set(o.key, [...(byKey.get(o.key) ?? []), o.value]);
  }
  let total = 0;
  for (const [key, values] of byKey) {
    const last = values.at(-1).answers;
    assert.equal(new Set(last).size, last.length, `${key}: distinct answers ${JSON.stringify(last)}`);
    for (const v of values)
      assert.deepEqual(v.answers, last.slice(0, v.answers.length), `${key}: ${JSON.stringify(values.map((x) => x.answers))}`);
    total += last.length;
  }
  assert.equal(total, calls, 'one call per journaled place: none made again by a replay');
}

/** The compositions: a handler over a service, its worker options, and its steps on a backend's handle. */
const COMPOSITIONS = {
  async checkpoints(backend) {
    const s = service();
    const fn = streamFn(
      async function* (events, ctx) {
        let answers = ctx.restored ?? [];
        for await (const e of events) {
          const quote = await ctx.run('quote', () => s.quote(`e${e.n}`));
          const chunks = [];
          for await (const c of ctx.stream('model', ({ chunks: before }) => model(s, `e${e.n}`, before))) chunks.push(c.id);
          answers = [...answers, quote, chunks[0]];
          yield { n: e.n, answers };
          if (e.n % 2 === 0) ctx.checkpoint(answers); // the calls before it are not asked again
        }
      },
      { idleTimeout: 60_000 },
    );
    const w = await backend.start(fn, {});
    for (const n of [1, 2, 3]) await w.send('k', { n });
    await w.pass(300);
    await w.handover();
    await w.send('k', { n: 4 });
    oneAnswerEach(await w.outputs(4), s.calls);
    assert.equal(s.calls, 8);
  },

  async timers(backend) {
    const s = service();
    const fn = streamFn(
      async function* (inputs, ctx) {
        const answers = []; // no checkpoint: a replay runs every input again, from the journal
        for await (const input of inputs) {
          if (input.timer === undefined) {
            answers.push(await ctx.run('quote', () => s.quote(`e${input.n}`)));
            ctx.wakeAt(ctx.entry.time + 400, { timer: input.n });
            yield { n: input.n, answers: [...answers] };
          } else {
            answers.push(await ctx.run('follow-up', () => s.quote(`t${input.timer}`)));
            yield { timer: input.timer, answers: [...answers] };
          }
        }
      },
      { idleTimeout: 60_000 },
    );
    const w = await backend.start(fn, {});
    await w.send('k', { n: 1 });
    await w.send('k', { n: 2 });
    await w.pass(100);
    await w.handover(); // before the timers are due
    oneAnswerEach(await w.outputs(4), s.calls);
    assert.equal(s.calls, 4);
  },

  async debounce(backend) {
    const s = service();
    const fn = streamFn(
      async function* (events, ctx) {
        const answers = [];
        for await (const e of events) {
          answers.push(await ctx.run('quote', () => s.quote(`e${e.n}`)));
          yield { n: e.n, answers: [...answers] };
        }
      },
      { idleTimeout: 60_000 },
    );
    const w = await backend.start(fn, { debounce: { wait: 50 } });
    for (const n of [1, 2, 3]) await w.send('k', { n }); // one burst: its last delivered
    await w.pass(400);
    await w.handover();
    for (const n of [4, 5]) await w.send('k', { n });
    oneAnswerEach(await w.outputs(2), s.calls);
    assert.equal(s.calls, 2);
  },

  async keyState(backend) {
    const s = service();
    const fn = streamFn(
      async function* (events, ctx) {
        let answers = ctx.restored ?? [];
        for await (const e of events) {
          answers = [...answers, await ctx.run('quote', () => s.quote(`e${e.n}`))];
          yield { n: e.n, answers };
          if (e.n !== 2) ctx.checkpoint(answers); // the key's state when the session ends
        }
      },
      { idleTimeout: 200 },
    );
    const w = await backend.start(fn, { keyState: { retention: 86_400_000 } });
    await w.send('k', { n: 1 });
    await w.pass(800); // the session ends by its idle time, its checkpoint kept as the key's state
    await w.send('k', { n: 2 }); // a new session, from it: its own journal
    await w.pass(100);
    await w.handover();
    await w.send('k', { n: 3 });
    oneAnswerEach(await w.outputs(3), s.calls);
    assert.equal(s.calls, 3);
  },

  async migrate(backend) {
    const s = service();
    const handler = (ver) =>
      streamFn(
        async function* (events, ctx) {
          let answers = ctx.restored?.answers ?? [];
          for await (const e of events) {
            answers = [...answers, await ctx.run('quote', () => s.quote(`${ver}e${e.n}`))];
            yield { n: e.n, ver, answers };
            if (e.n === 1) ctx.checkpoint({ answers });
          }
        },
        { idleTimeout: 60_000 },
      );
    const w = await backend.start(handler('v1'), { version: 'v1' });
    for (const n of [1, 2]) await w.send('k', { n });
    await w.pass(300);
    // v2 adopts the live session from its checkpoint (after event 1) and reruns event 2: its call at the same place
    // gets v1's answer back from the journal.
    await w.handover({ fn: handler('v2'), options: { version: 'v2', migrate: (state) => state } });
    await w.send('k', { n: 3 });
    const outs = await w.outputs(3);
    oneAnswerEach(outs, s.calls);
    assert.equal(s.calls, 3);
    assert.deepEqual(
      outs.map((o) => o.value.ver),
      ['v1', 'v1', 'v2'],
    );
  },
};

for (const [backend, on] of Object.entries(BACKENDS)) {
  for (const [name, run] of Object.entries(COMPOSITIONS)) {
    test(`a journaled call with ${name}, on ${backend}: one answer per call across a ${backend === 'memory' ? 'crash' : 'hand-over'}`, () =>
      run(on));
  }
}
