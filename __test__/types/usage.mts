// Typical user code, compiled (never run) against the shipped index.d.ts.
// Lines marked @ts-expect-error must fail to compile: the types are strict.
import {
  ERROR_CODE_ALIASES,
  streamFn,
  StreamClosedError,
  StreamLimitError,
  type Stream,
  type StreamConfig,
  type EntryInfo,
  type StreamContext,
  type StreamFn,
  type StreamMetrics,
  type WakeAtOptions,
} from 'velo-stream';

interface Frame {
  id: number;
  pixels: Uint8Array;
}

const config: StreamConfig = { buffer: 64, idleTimeout: 5_000, maxConcurrent: 100, name: 'motion' };

const motion = streamFn(async function* (frames: AsyncIterable<Frame>, ctx: StreamContext) {
  let previous: Frame | undefined;
  for await (const frame of frames) {
    if (ctx.signal.aborted) return;
    if (previous) yield { id: frame.id, delta: frame.pixels.length - previous.pixels.length, stream: ctx.id };
    previous = frame;
  }
}, config);

const fnType: StreamFn<Frame, { id: number; delta: number; stream: string }> = motion;
void fnType;

async function live(): Promise<void> {
  await using stream = motion.open({ signal: AbortSignal.timeout(1000) });
  const s: Stream<Frame, { id: number; delta: number }> = stream;
  await s.send({ id: 1, pixels: new Uint8Array(4) });
  // @ts-expect-error events are typed
  await s.send('not a frame');
  s.end();
  const first = await stream.recv();
  const delta: number = first.delta;
  void delta;
  for await (const out of stream) {
    const id: number = out.id;
    // @ts-expect-error outputs are typed
    const wrong: string = out.delta;
    (void id, wrong);
  }
  const m: StreamMetrics = stream.metrics;
  const p99: number = m.queueWaitP99Us;
  void p99;
  const state: 'open' | 'ending' | 'done' | 'failed' | 'cancelled' = stream.state;
  void state;
}

async function batch(): Promise<number[]> {
  const double = streamFn(async function* (xs: AsyncIterable<number>) {
    for await (const x of xs) yield x * 2;
  });
  const label = double.pipe(async function* (xs) {
    for await (const x of xs) yield `#${x}`;
  });
  const labels: string[] = await label.run([1, 2, 3]);
  void labels;
  for await (const s of label.open().feed(
    (async function* () {
      yield 1;
    })(),
  )) {
    const str: string = s;
    void str;
  }
  // @ts-expect-error run takes events of the input type
  await double.run(['a']);
  const chars = streamFn(async function* (events: AsyncIterable<string>) {
    yield* events;
  });
  // @ts-expect-error a string is not a source of its characters (refused at run time)
  await chars.run('abc');
  // @ts-expect-error nor for feed()
  void chars.open().feed('abc');
  await chars.run(['a', 'b']);
  void chars.open().feed(new Set(['a']));
  const stats = double.stats();
  const open: number = stats.open + stats.rejected;
  void open;
  return double.run(new Set([1, 2]), { signal: new AbortController().signal });
}

function errors(e: unknown): string | undefined {
  if (e instanceof StreamClosedError) {
    const code: 'ERR_VELO_STREAM_CLOSED' = e.code;
    return code;
  }
  if (e instanceof StreamLimitError) {
    const code: 'ERR_VELO_STREAM_LIMIT' = e.code;
    return code;
  }
  // An old code name maps to the new one (string in, string out).
  const renamed: string | undefined = ERROR_CODE_ALIASES['ERR_STREAM_CLOSED'];
  // @ts-expect-error the aliases are read-only
  ERROR_CODE_ALIASES.ERR_STREAM_CLOSED = 'x';
  return renamed;
}

// @ts-expect-error unknown config keys are a type error too
streamFn(async function* () {}, { bufer: 1 });

(void live, batch, errors);

// Timers with keys, and the log's entry (undefined in-process).
const reminders = streamFn(async function* (events: AsyncIterable<{ type: string }>, ctx: StreamContext) {
  for await (const e of events) {
    const entry: EntryInfo | undefined = ctx.entry;
    const time: number = (entry?.time ?? 0) + 60_000;
    const options: WakeAtOptions = { key: 'reminder' };
    ctx.wakeAt(time, { type: 'remind' }, options);
    const cancelled: boolean = ctx.cancelTimer('reminder');
    // @ts-expect-error a key is a string
    ctx.wakeAt(time, {}, { key: 1 });
    // @ts-expect-error ctx.entry is read-only
    ctx.entry = undefined;
    yield { type: e.type, cancelled, id: entry?.id };
  }
});
void reminders;

// Journaled calls: a result's type is the body's; a stream's chunk type is named when its factory passes the
// recorded `chunks` back to the model (TypeScript infers nothing from a parameter), else inferred from what it yields.
declare function modelStream(o: { prompt: string; continueAfter: readonly string[] }): AsyncIterable<string>;
const chat = streamFn(async function* (prompts: AsyncIterable<string>, ctx: StreamContext) {
  for await (const prompt of prompts) {
    const price: number = await ctx.run('price', async ({ key }) => key.length);
    const answer = ctx.stream<string>('model', ({ chunks }) => modelStream({ prompt, continueAfter: chunks }));
    for await (const token of ctx.stream('again', () => modelStream({ prompt, continueAfter: [] }))) yield token;
    for await (const token of answer) {
      const text: string = token;
      yield `${text}${price}`;
    }
    // @ts-expect-error the chunks are strings, as the factory yields
    ctx.stream<number>('model', ({ chunks }) => modelStream({ prompt, continueAfter: chunks }));
  }
});
void chat;

// Options passed through from settings that may be unset: undefined is the default, also under
// exactOptionalPropertyTypes (the runtime takes an undefined option as an absent one).
declare const settings: { idleTimeout?: number; signal?: AbortSignal; concurrency?: number; threads?: number };
const passed = streamFn(
  async function* (e: AsyncIterable<number>) {
    yield* e;
  },
  { idleTimeout: settings.idleTimeout, name: undefined },
);
void passed.run([1], { signal: settings.signal, key: undefined });
const configured: number = passed.config.idleTimeout;
void configured;
