// Fixed workloads for counting instructions with callgrind, which is
// repeatable on these noisy machines where wall-clock figures swing 20-30 %:
//
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//     node --single-threaded bench/instructions.cjs <workload> [path to the package]
//
// `--single-threaded` keeps V8's background compiler and GC threads from
// making the count vary. Compare two builds by the difference of their counts,
// minus the `startup` workload's (Node's start and the module's load).
//
// `IDLE_TIMEOUT=<ms>` in the environment opens the stream functions with that
// `idleTimeout` (0: no idle clock) instead of the default, to measure what
// the idle clock costs.
//
// `SCALE=<k>` multiplies the item counts of `pipe`, `pipeBaseline*`, `task`, the run counts of `taskRuns`,
// `taskLimited`, `taskLimitedKeyed`, `permits*`, `batch`, `live`, `liveAhead*`, `feed`,
// `feedBaseline` and the stream counts of `open` and `openBaseline*` by k: the slope between two scales is the cost per item with
// the start-up, the compiler's work and the noise of one run taken out.
const [workload = 'run', from = '..'] = process.argv.slice(2);
const lib = require(from === '..' ? require('node:path').join(__dirname, '..') : from);
const { task, batch } = lib;
const idleTimeout = process.env.IDLE_TIMEOUT;
const scale = Number(process.env.SCALE ?? 1);
const streamFn =
  idleTimeout === undefined ? lib.streamFn : (handler) => lib.streamFn(handler, { idleTimeout: Number(idleTimeout) });

// The loops of the hand-written baselines, each given the baseline's `open` (bench/baselines.mjs).
/** `liveAhead`'s loop: one stream, a send loop ahead of the handler, a `for await` reader. */
async function liveAheadBy(open) {
  const { queue, outputs } = open(async function* (events) {
    for await (const e of events) yield e + 1;
  });
  const producing = (async () => {
    for (let i = 0; i < 100_000 * scale; i++) await queue.send(i);
    queue.end();
  })();
  let n = 0;
  for await (const _ of outputs) n++;
  await producing;
  if (n !== 100_000 * scale) throw new Error('lost outputs');
}

/** `open`'s loop: open, one event, end, read to the end. */
async function openBy(open) {
  const handler = async function* (events) {
    for await (const e of events) yield e;
  };
  for (let i = 0; i < 30_000 * scale; i++) {
    const { queue, outputs } = open(handler);
    await queue.send(i);
    queue.end();
    for await (const _ of outputs);
  }
}

/** `pipe`'s shape: three stages adding 1, 2, 3 over 100,000 numbers, collected. */
async function pipeBy(pipe) {
  const { collect } = await import('./baselines.mjs');
  const stage = (k) =>
    async function* (events) {
      for await (const e of events) yield e + k;
    };
  const input = Array.from({ length: 100_000 * scale }, (_, i) => i);
  if ((await collect(pipe([stage(1), stage(2), stage(3)], input))).length !== input.length) throw new Error('lost outputs');
}

const workloads = {
  startup: async () => {},
  // Like S1: run() over 200,000 numbers (3 times), a running average.
  run: async () => {
    const avg = streamFn(async function* (events) {
      let n = 0;
      let sum = 0;
      for await (const e of events) yield (sum += e) / ++n;
    });
    const input = Array.from({ length: 200_000 }, (_, i) => i);
    for (let r = 0; r < 3; r++) if ((await avg.run(input)).length !== input.length) throw new Error('lost outputs');
  },
  // Like S1o: run() over 100,000 objects (3 times): values through the value table.
  runObjects: async () => {
    const avg = streamFn(async function* (events) {
      let n = 0;
      let sum = 0;
      for await (const e of events) yield { id: e.id, avg: (sum += e.value) / ++n };
    });
    const input = Array.from({ length: 100_000 }, (_, i) => ({ id: i, value: i }));
    for (let r = 0; r < 3; r++) if ((await avg.run(input)).length !== input.length) throw new Error('lost outputs');
  },
  // Like S2/S3: 100,000 live round trips, send then recv.
  live: async () => {
    const fn = streamFn(async function* (events) {
      for await (const e of events) yield e + 1;
    });
    const s = fn.open();
    for (let i = 0; i < 100_000 * scale; i++) {
      await s.send(i);
      if ((await s.recv()) !== i + 1) throw new Error('wrong output');
    }
    s.end();
  },
  // Like S2: 100,000 events through one stream, an `await send()` loop running
  // ahead of the handler and a `for await` consumer.
  liveAhead: async () => {
    const fn = streamFn(async function* (events) {
      for await (const e of events) yield e + 1;
    });
    const s = fn.open();
    const producing = (async () => {
      for (let i = 0; i < 100_000 * scale; i++) await s.send(i);
      s.end();
    })();
    let n = 0;
    for await (const _ of s) n++;
    await producing;
    if (n !== 100_000 * scale) throw new Error('lost outputs');
  },
  // `liveAhead`'s shape with S2's baseline (d) (bench/baselines.mjs): a bounded queue each way and a pump. Net of
  // `startupBaselines`.
  liveAheadBaselineD: async () => liveAheadBy((await import('./baselines.mjs')).openBuffered),
  // `liveAheadBaselineD` with baseline (f): (d) with the figures and idle deadline kept by hand (bench/baselines.mjs).
  liveAheadBaselineF: async () => liveAheadBy((await import('./baselines.mjs')).openMeasured),
  // Like S4: 30,000 times open -> one event -> end -> read to the end.
  open: async () => {
    const fn = streamFn(async function* (events) {
      for await (const e of events) yield e;
    });
    for (let i = 0; i < 30_000 * scale; i++) {
      const s = fn.open();
      await s.send(i);
      s.end();
      for await (const _ of s);
    }
  },
  // `open`'s shape with S4's hand-written baselines (bench/baselines.mjs): (a) a bounded
  // queue feeding the generator, (d) a bounded queue each way and a pump. Net of
  // `startupBaselines` (the same module loaded, nothing run).
  startupBaselines: async () => {
    await import('./baselines.mjs');
  },
  openBaselineA: async () => {
    const { openQueued } = await import('./baselines.mjs');
    const handler = async function* (events) {
      for await (const e of events) yield e;
    };
    for (let i = 0; i < 30_000 * scale; i++) {
      const { queue, outputs } = openQueued(handler);
      await queue.send(i);
      queue.end();
      for (;;) if ((await outputs.next()).done) break;
    }
  },
  // `open`'s shape with the floor (g) of bench/baselines.mjs: every per-stream promise of velo-stream kept by hand.
  openBaselineFloor: async () => {
    const { FloorFn } = await import('./baselines.mjs');
    const fn = new FloorFn(async function* (events) {
      for await (const e of events) yield e;
    });
    for (let i = 0; i < 30_000 * scale; i++) {
      const s = fn.open();
      await s.send(i);
      s.end();
      for await (const _ of s);
    }
    if (fn.totals.completed !== 30_000 * scale || fn.totals.eventsOut !== 30_000 * scale) throw new Error('lost outputs');
  },
  openBaselineF: async () => openBy((await import('./baselines.mjs')).openMeasured),
  openBaselineD: async () => openBy((await import('./baselines.mjs')).openBuffered),
  // Like S7: a three-stage pipe over 100,000 numbers (pipe links: the drain loop).
  pipe: async () => {
    const stage = (k) =>
      streamFn(async function* (events) {
        for await (const e of events) yield e + k;
      });
    const p = stage(1).pipe(stage(2)).pipe(stage(3));
    const input = Array.from({ length: 100_000 * scale }, (_, i) => i);
    if ((await p.run(input)).length !== input.length) throw new Error('lost outputs');
  },
  // `pipe`'s shape as S7's baseline (c): three chained async generators over the same numbers.
  pipeBaselineC: async () => {
    const stage = (k) =>
      async function* (events) {
        for await (const e of events) yield e + k;
      };
    const input = Array.from({ length: 100_000 * scale }, (_, i) => i);
    const out = [];
    for await (const v of stage(3)(stage(2)(stage(1)(input)))) out.push(v);
    if (out.length !== input.length) throw new Error('lost outputs');
  },
  // S7's hand-written baselines with velo-stream's promises kept (bench/baselines.mjs): (d) bounded stages that
  // run ahead, each with a pump; (e) the chained generators of (c), each stage reading through a cancellable wait.
  pipeBaselineD: async () => pipeBy((await import('./baselines.mjs')).pipeBuffered),
  pipeBaselineE: async () => pipeBy((await import('./baselines.mjs')).pipeCancellable),
  // 10,000 times open a two-stage pipe -> one event -> end -> read to the end.
  pipeOpen: async () => {
    const stage = streamFn(async function* (events) {
      for await (const e of events) yield e;
    });
    const p = stage.pipe(stage);
    for (let i = 0; i < 10_000; i++) {
      const s = p.open();
      await s.send(i);
      s.end();
      for await (const _ of s);
    }
  },
  // feed(): 100,000 events from an async source, outputs read one by one.
  feed: async () => {
    const fn = streamFn(async function* (events) {
      for await (const e of events) yield e * 2;
    });
    async function* source() {
      for (let i = 0; i < 100_000 * scale; i++) yield i;
    }
    let n = 0;
    for await (const _ of fn.open().feed(source())) n++;
    if (n !== 100_000 * scale) throw new Error('lost outputs');
  },
  // `feed`'s shape as a bare chain: the same handler as an async generator between the source and the reader.
  feedBaseline: async () => {
    async function* handler(events) {
      for await (const e of events) yield e * 2;
    }
    async function* source() {
      for (let i = 0; i < 100_000 * scale; i++) yield i;
    }
    let n = 0;
    for await (const _ of handler(source())) n++;
    if (n !== 100_000 * scale) throw new Error('lost outputs');
  },
  // Like S10: run() over 100,000 numbers (3 times) through task(async x => x + 1), 16 in flight.
  task: async () => {
    const stage = task(async (x) => x + 1, { concurrency: 16 });
    const input = Array.from({ length: 100_000 * scale }, (_, i) => i);
    for (let r = 0; r < 3; r++) if ((await stage.run(input)).length !== input.length) throw new Error('lost outputs');
  },
  // Many short task stages: 20,000 runs of three items each, over a plain stage and one with a limiter, yielding to
  // the event loop every thousand runs (what a stage's opening, window and end cost, not its calls).
  taskRuns: async () => {
    const plain = task(async (x) => x + 1, { concurrency: 4 });
    const limited = task(async (x) => x + 1, { concurrency: 4, limiter: lib.limiter({ concurrency: 100 }) });
    for (let i = 0; i < 10_000 * scale; i++) {
      if ((await plain.run([1, 2, 3])).length !== 3 || (await limited.run([1, 2, 3])).length !== 3) {
        throw new Error('lost outputs');
      }
      if (i % 1000 === 999) await new Promise((resolve) => setImmediate(resolve));
    }
  },
  // Like S13: the task workload with an in-process limiter that never makes a call wait (concurrency 1,000,000):
  // the difference to `task` is what a permit costs a call (taken and given back in the task window's own native
  // calls).
  taskLimited: async () => {
    const limit = lib.limiter({ concurrency: 1_000_000 });
    const stage = task(async (x) => x + 1, { concurrency: 16, limiter: limit });
    const input = Array.from({ length: 100_000 * scale }, (_, i) => i);
    for (let r = 0; r < 3; r++) if ((await stage.run(input)).length !== input.length) throw new Error('lost outputs');
  },
  // `taskLimited` with a keyed limiter (one key): a limiter with a per-item option, whose permits each call takes through
  // tryAcquire() and gives back in a reaction of its own (the task window takes only those of a limiter without
  // `key`, `cost`, `fairness` and `priority`).
  taskLimitedKeyed: async () => {
    const limit = lib.limiter({ concurrency: 1_000_000, key: () => 'k' });
    const stage = task(async (x) => x + 1, { concurrency: 16, limiter: limit });
    const input = Array.from({ length: 100_000 * scale }, (_, i) => i);
    for (let r = 0; r < 3; r++) if ((await stage.run(input)).length !== input.length) throw new Error('lost outputs');
  },
  // Per permit, the same job in each library: 300,000 async calls, at most 16 at once, each holding a permit.
  // `permits`: limiter().acquire()/release() around the call; `permitsPLimit`: p-limit; `permitsPQueue`: p-queue
  // with `intervalCap` (a rate that never binds here) and `concurrency`; `permitsNone`: the calls without a limiter. `LIMITERS_FROM=<dir>`: where p-limit and
  // p-queue are installed (default: this package's dev dependencies).
  permitsNone: async () => {
    await callsUnder((fn) => fn());
  },
  permits: async () => {
    const limit = lib.limiter({ concurrency: 16, rate: { limit: 1_000_000_000, period: 1000 } });
    await callsUnder((fn) => limit.acquire().then((p) => fn().finally(() => p.release())));
  },
  permitsPLimit: async () => {
    const pLimit = (await importDev('p-limit')).default;
    const limit = pLimit(16);
    await callsUnder((fn) => limit(fn));
  },
  permitsPQueue: async () => {
    const PQueue = (await importDev('p-queue')).default;
    const queue = new PQueue({ concurrency: 16, intervalCap: 1_000_000_000, interval: 1000 });
    await callsUnder((fn) => queue.add(fn));
  },
  // Like S12: run() over 200,000 numbers (3 times) through batch(sum, { maxSize: 100 }).
  batch: async () => {
    const stage = batch(
      async (items) => {
        let sum = 0;
        for (const x of items) sum += x;
        return sum;
      },
      { maxSize: 100 },
    );
    const input = Array.from({ length: 200_000 * scale }, (_, i) => i);
    for (let r = 0; r < 3; r++) if ((await stage.run(input)).length !== input.length / 100) throw new Error('lost outputs');
  },
};

/** 300,000 trivial async calls through `run`, which makes each hold a permit; 16 started at a time and awaited. */
async function callsUnder(run) {
  const n = 300_000 * scale;
  let sum = 0;
  const call = async () => {
    sum++;
  };
  for (let i = 0; i < n; i += 16) {
    const wave = [];
    for (let k = 0; k < 16; k++) wave.push(run(call));
    await Promise.all(wave);
  }
  if (sum !== n) throw new Error('lost calls');
}

/** An ESM-only dev dependency, from `LIMITERS_FROM` if set. */
function importDev(name) {
  const dir = process.env.LIMITERS_FROM;
  const path = require('node:path');
  const url = require('node:url');
  return import(dir === undefined ? name : url.pathToFileURL(require.resolve(name, { paths: [path.resolve(dir)] })).href);
}

if (!(workload in workloads)) throw new Error(`unknown workload "${workload}": ${Object.keys(workloads).join(', ')}`);
workloads[workload]();
