// Task and batch stages, compiled (never run) against the shipped types:
// output types flow through task -> batch -> streamFn pipes.
import { batch, streamFn, task, type BatchConfig, type StreamFn, type TaskConfig, type TaskContext } from 'velo-stream';

interface Doc {
  id: string;
  text: string;
}

const fetchDoc = task(
  async (id: string, ctx: TaskContext): Promise<Doc | undefined> => {
    const attempt: number = ctx.attempt;
    const index: number = ctx.index;
    const signal: AbortSignal = ctx.signal;
    void signal;
    return attempt + index > 100 ? undefined : { id, text: `doc ${id}` };
  },
  { concurrency: 8, ordered: false, retry: { attempts: 3, delay: 100, factor: 2, maxDelay: 1000 }, onError: 'skip', buffer: 32 },
);
// `undefined` filters: it is not part of the output type.
const docs: StreamFn<string, Doc> = fetchDoc;

const rerank = batch(async (items: Doc[]) => items.map((d) => d.id).join(','), { maxSize: 16, minSize: 4, maxWait: 50 });
const toLine = streamFn(async function* (events: AsyncIterable<string>) {
  for await (const e of events) yield { line: e, length: e.length };
});

const pipeline = docs.pipe(rerank).pipe(toLine);
const typed: StreamFn<string, { line: string; length: number }> = pipeline;
void typed;

// onError as a function gets the item and may replace the output.
const withFallback = task((n: number) => n * 2, {
  onError: (error: unknown, item: number, ctx: TaskContext) => (ctx.attempt > 0 ? item : undefined),
});
const numbers: StreamFn<number, number> = withFallback;
void numbers;

const taskConfig: TaskConfig<number, string> = { concurrency: 4 };
const batchConfig: BatchConfig<number, string> = { maxSize: 10 };
void taskConfig;
void batchConfig;

// @ts-expect-error batch needs its config with maxSize
batch(async (xs: number[]) => xs.length);
// @ts-expect-error a pipe's next stage must take the previous stage's outputs
docs.pipe(task(async (n: number) => n + 1));
// @ts-expect-error onError is 'fail', 'skip' or a function
task((x: number) => x, { onError: 'ignore' });
