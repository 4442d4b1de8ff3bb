// What the Redis tests share: the handler every worker runs (in the test
// process and in child processes), and checks that read Redis directly; and
// handlers the tier's tests of both backends share (`checkpointed`).
import assert from 'node:assert/strict';
import { streamFn } from '../../index.mjs';

/**
 * A per-key running total, deterministic over its inputs (replay gives the same outputs): one output per event,
 * `{ n, total, count }`. An event `{ fail: true }` makes it throw; `{ stop: true }` makes it return.
 */
export function totals(config = {}, delayMs = 0) {
  return streamFn(async function* totals(events) {
    let total = 0;
    let count = 0;
    for await (const e of events) {
      // A slow handler (timing only: the outputs do not depend on it).
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (e.fail) throw Object.assign(new Error(`failed at ${e.n}`), { code: 'E_TEST' });
      if (e.stop) return;
      total += e.n;
      count++;
      yield { n: e.n, total, count };
    }
  }, config);
}

/** `totals` of handler version `v`: each output says its version (`{ v, n, total, count }`). */
export function versionedTotals(v, config = {}, delayMs = 0) {
  return streamFn(async function* versioned(events) {
    let total = 0;
    let count = 0;
    for await (const e of events) {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      total += e.n;
      count++;
      yield { v, n: e.n, total, count };
    }
  }, config);
}

/**
 * `totals` with checkpoints: after every `every`-th output it records `{ total, count }`, and a session restored
 * from one goes on from there, so its outputs are those of `totals`. An event `{ big: n }` makes it checkpoint a
 * state of n bytes, `{ bigint: true }` one JSON cannot encode, and with `catch: true` it catches that error.
 */
export function checkpointTotals(config = {}, delayMs = 0, every = 10) {
  return streamFn(async function* checkpointTotals(events, ctx) {
    let { total, count } = ctx.restored ?? { total: 0, count: 0 };
    for await (const e of events) {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (e.stop) return;
      if (e.big !== undefined || e.bigint) {
        try {
          ctx.checkpoint(e.bigint ? { total: 10n } : { pad: 'x'.repeat(e.big) });
        } catch (error) {
          if (!e.catch) throw error;
        }
      }
      total += e.n;
      count++;
      yield { n: e.n, total, count };
      if (count % every === 0) ctx.checkpoint({ total, count });
    }
  }, config);
}

/**
 * Timers: an event `{ n, at, wake }` asks for a wake-up at `at + wake` (ms, the producer's clock) carrying
 * `{ woke: n }`; every event yields `{ n, count }` and every wake-up `{ woke, count }` (count: entries taken by
 * the session). With `every`, it checkpoints `{ count }` every `every` entries and goes on from a restored one.
 */
export function timerCounts(config = {}, every = 0, wakeDelay = 0) {
  return streamFn(async function* timerCounts(events, ctx) {
    let { count } = ctx.restored ?? { count: 0 };
    // A timer due after the session's age end is refused (ERR_VELO_TIMER_PAST_AGE): none is made, and the
    // handler goes on (the tests' models make none either).
    const wakeAt = (at, payload) => {
      try {
        ctx.wakeAt(at, payload);
      } catch (error) {
        if (error?.code !== 'ERR_VELO_TIMER_PAST_AGE') throw error;
      }
    };
    // `chain` (delays): a timer that, when it fires, makes the next one that long after its own time.
    const chained = (n, step, from, chain) => {
      if (!Array.isArray(chain) || chain.length === 0) return;
      const at = from + chain[0];
      wakeAt(at, { woke: `${n}.c${step}`, n, step, at, chain: chain.slice(1) });
    };
    for await (const e of events) {
      count++;
      if (e.woke !== undefined) {
        chained(e.n, e.step + 1, e.at, e.chain);
        yield { woke: e.woke, count };
      } else {
        // (`wakeDelay`: the handler makes its timers that long after it took the event.)
        if (wakeDelay > 0) await new Promise((resolve) => setTimeout(resolve, wakeDelay));
        // `wake`: one delay, or several (their wake-ups say `<n>.<i>`).
        if (Array.isArray(e.wake)) for (const [i, d] of e.wake.entries()) wakeAt(e.at + d, { woke: `${e.n}.${i}` });
        else if (e.wake !== undefined) wakeAt(e.at + e.wake, { woke: e.n });
        // (Chained wake-ups say `<n>.c<i>`.)
        chained(e.n, 0, e.at, e.chain);
        yield { n: e.n, count };
      }
      if (every > 0 && count % every === 0) ctx.checkpoint({ count });
    }
  }, config);
}

/** What `totals` yields for these events of one session, as the reader sees them. */
export function expectedTotals(ns) {
  let total = 0;
  return ns.map((n, i) => ({ n, total: (total += n), count: i + 1 }));
}

/** Every output entry of every partition, read with XRANGE: [{ partition, sid, seq, key, value|error }]. */
export async function readAllOutputs(client, name, partitions, { ids = false } = {}) {
  const out = [];
  for (let p = 0; p < partitions; p++) {
    const entries = await client.xRange(`velo:{${name}:p${p}}:out`, '-', '+');
    for (const { id, message } of entries) {
      const item = { partition: p, sid: message.sid, seq: Number(message.seq), key: message.k };
      // `ids`: each output's entry id too (when it was written, by Redis' clock).
      if (ids) item.id = id;
      if (message.e !== undefined) item.error = JSON.parse(message.e);
      else item.value = JSON.parse(message.v);
      out.push(item);
    }
  }
  return out;
}

/** Pending entries of every partition's input (the group `velo`). */
export async function pendingCount(client, name, partitions) {
  let n = 0;
  for (let p = 0; p < partitions; p++) {
    const key = `velo:{${name}:p${p}}`;
    if ((await client.exists(key)) === 0) continue;
    const groups = await client.xInfoGroups(key);
    for (const g of groups) n += Number(g.pending);
  }
  return n;
}

/**
 * Whether any partition's input holds an entry its group has not read yet (`pendingCount` is 0 before a worker
 * reads an entry just sent: "nothing pending" alone does not say every session ended).
 */
export async function anyUnread(client, name, partitions) {
  for (let p = 0; p < partitions; p++) {
    const key = `velo:{${name}:p${p}}`;
    if ((await client.exists(key)) === 0) continue;
    for (const g of await client.xInfoGroups(key)) {
      if ((await client.xRange(key, `(${g['last-delivered-id']}`, '+', { COUNT: 1 })).length > 0) return true;
    }
  }
  return false;
}

/**
 * The invariants after a scenario: each (sid, seq) exactly once, seqs 1..n per session without gaps, per key
 * the sessions' outputs in order, and per key the values `expected(key)` (a crash-free run's).
 */
export function checkOutputs(outputs, expectedByKey) {
  const seen = new Set();
  const byKey = new Map();
  for (const o of outputs) {
    const id = `${o.sid}#${o.seq}`;
    assert.ok(!seen.has(id), `output ${id} written twice`);
    seen.add(id);
    if (!byKey.has(o.key)) byKey.set(o.key, []);
    byKey.get(o.key).push(o);
  }
  assert.deepEqual([...byKey.keys()].sort(), [...expectedByKey.keys()].sort(), 'keys with outputs');
  for (const [key, list] of byKey) {
    const bySid = new Map();
    for (const o of list) {
      if (!bySid.has(o.sid)) bySid.set(o.sid, []);
      bySid.get(o.sid).push(o.seq);
    }
    for (const [sid, seqs] of bySid)
      assert.deepEqual(
        seqs,
        seqs.map((_, i) => i + 1),
        `${sid}: seqs in order, from 1, no gap`,
      );
    assert.deepEqual(
      list.map((o) => o.value ?? { error: o.error }),
      expectedByKey.get(key),
      `outputs of ${key}`,
    );
  }
}

/**
 * `real` as a worker sees it, except that every command of its connections (its duplicates' too) goes through
 * `send(connection, args, options)`, which may delay it, fail it, or pass it on (`connection.sendCommand(args, options)`).
 */
export function interceptCommands(real, send) {
  const wrap = (c) => ({
    sendCommand: (args, options) => send(c, args, options),
    duplicate: () => wrap(c.duplicate()),
    connect: () => c.connect(),
    on: (event, listener) => c.on(event, listener),
    close: () => c.close(),
    destroy: () => c.destroy(),
  });
  return wrap(real);
}

/** Polls `check` (async, truthy when done) until it holds; fails after `timeout` ms (a hang guard, not a speed check). */
export async function eventually(check, what, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Per key, the outputs `totals` makes over the sessions the log defines (`sessionsInLog`: each restarts its totals). */
export async function expectedFromLog(client, name, partitions, idle) {
  const byKey = new Map();
  for (const { key, ns } of (await sessionsInLog(client, name, partitions, idle)).values()) {
    if (!byKey.has(key)) byKey.set(key, []);
    byKey.get(key).push(...expectedTotals(ns));
  }
  return byKey;
}

/**
 * The sessions the input log defines, read with XRANGE: per key, a session runs from its first event up to the
 * close marker naming it, or, with `idle` (the function's idleTimeout), up to the first entry of the partition
 * (of any key) whose id time is `idle` ms or more after the session's last event, or up to an event `endsAt(event)`
 * says its handler stops at. Returns Map sid -> { key, ns, events, closed } (`ns`: the events' `n`).
 */
export async function sessionsInLog(client, name, partitions, idle = 0, endsAt = () => false) {
  const sessions = new Map();
  const time = (id) => Number(id.slice(0, id.indexOf('-')));
  for (let p = 0; p < partitions; p++) {
    /** key -> { sid, last }: the key's open session and its last event's time. */
    const current = new Map();
    for (const { id, message } of await client.xRange(`velo:{${name}:p${p}}`, '-', '+')) {
      if (idle > 0) {
        for (const [key, open] of current) {
          if (time(id) - open.last < idle) continue;
          sessions.get(open.sid).closed = true;
          current.delete(key);
        }
      }
      const key = message.k;
      if (message.c !== undefined) {
        if (current.get(key)?.sid === message.c) {
          sessions.get(message.c).closed = true;
          current.delete(key);
        }
        continue;
      }
      if (!current.has(key)) {
        const sid = `${key}@${id}`;
        current.set(key, { sid, last: 0 });
        sessions.set(sid, { key, ns: [], events: [], closed: false });
      }
      const open = current.get(key);
      open.last = time(id);
      const event = JSON.parse(message.v);
      const session = sessions.get(open.sid);
      session.ns.push(event.n);
      session.events.push(event);
      if (endsAt(event)) {
        session.closed = true;
        current.delete(key);
      }
    }
  }
  return sessions;
}

/**
 * The line protocol of the worker child processes (redis-worker-child.mjs,
 * redis-local-child.mjs): `owned <p,p,...>` whenever the partitions change and
 * `stats <json>` (plus `extraStats()`) every 100 ms; on SIGTERM a hand-off
 * (worker.close()), `closed <json>`, and the client closed (destroyed with
 * `destroyClient`: a server that does not answer holds a close), so the
 * process exits 0; `ready <id>` once set up.
 */
export function serveChildProtocol(worker, client, extraStats = () => ({}), { destroyClient = false } = {}) {
  let shown = '';
  const timer = setInterval(() => {
    const stats = worker.stats();
    const owned = stats.owned.join(',');
    if (owned !== shown) console.log(`owned ${(shown = owned)}`);
    console.log(`stats ${JSON.stringify({ ...stats, ...extraStats() })}`);
  }, 100);
  process.once('SIGTERM', async () => {
    clearInterval(timer);
    await worker.close();
    console.log(`closed ${JSON.stringify(worker.stats())}`);
    // A server that does not answer would hold a graceful close of the client (and the process) for good.
    if (destroyClient) client.destroy();
    else await client.close();
  });
  console.log(`ready ${worker.id}`);
}

/**
 * Waits until every event `sent` (Map key -> ns, in order) has its output and nothing is pending, then checks
 * the outputs as a crash-free run would have them: each key's running totals, in order, one session per key; or,
 * with `idle` (the workers' idleTimeout) and the events' entry times (`sent.times`: n -> ms, as `sender` records
 * them), one session per run of a key's events less than `idle` apart: a key's next entry at or past its session's
 * idle end opens the next one (a test whose sends are seconds apart on a loaded machine may leave a key idle).
 */
export async function settled(client, name, partitions, sent, idle) {
  const total = [...sent.values()].reduce((n, list) => n + list.length, 0);
  await eventually(async () => (await readAllOutputs(client, name, partitions)).length >= total, `${total} outputs`, 30_000);
  await eventually(
    async () => (await pendingCount(client, name, partitions)) === 0,
    'nothing pending (every session closed)',
    30_000,
  );
  const outputs = await readAllOutputs(client, name, partitions);
  // Per key, its sessions' events: split where the next event came `idle` or more after the last.
  const sessions = [...sent].map(([key, ns]) => {
    const runs = [];
    ns.forEach((n, i) => {
      if (i === 0 || (idle !== undefined && sent.times.get(n) - sent.times.get(ns[i - 1]) >= idle)) runs.push([]);
      runs.at(-1).push(n);
    });
    return [key, runs];
  });
  checkOutputs(outputs, new Map(sessions.map(([key, runs]) => [key, runs.flatMap((ns) => expectedTotals(ns))])));
  const count = sessions.reduce((sum, [, runs]) => sum + runs.length, 0);
  assert.equal(new Set(outputs.map((o) => o.sid)).size, count, 'the sessions of a crash-free run');
}

/**
 * Running totals of version `v` that checkpoint `{ total, from }` after each output and go on from a restored one
 * (`from`: the version a `migrate` adopted it from); live for a minute. Each output is `{ v, total, from }`.
 */
export function checkpointed(v) {
  return streamFn(
    async function* checkpointed(events, ctx) {
      let { total = 0, from } = ctx.restored ?? {};
      for await (const e of events) {
        total += e.n;
        yield { v, total, from };
        ctx.checkpoint({ total, from });
      }
    },
    { idleTimeout: 60_000 },
  );
}
