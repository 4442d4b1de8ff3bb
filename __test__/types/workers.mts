// Typical user code for workerFn, compiled against the public types (npm run test:types).
import { workerFn, type WorkerStreamFn, type WorkerFnConfig } from 'velo-stream';

const config: WorkerFnConfig = { threads: 2, transfer: true, loadTimeout: 5_000, threadIdleTimeout: 0, buffer: 8 };
const scorer: WorkerStreamFn<{ n: number }, { score: number }> = workerFn(new URL('./scorer.mjs', import.meta.url), config);

export async function use(): Promise<number> {
  const results: { score: number }[] = await scorer.run([{ n: 1 }]);
  const stream = scorer.open();
  await stream.send({ n: 2 });
  stream.end();
  let total = 0;
  for await (const out of stream) total += out.score;
  // A pipe of a worker stage keeps its output type.
  const labelled = scorer.pipe(async function* (scores) {
    for await (const s of scores) yield `${s.score}`;
  });
  const labels: string[] = await labelled.run([{ n: 3 }]);
  await scorer.close();
  return total + results.length + labels.length;
}

export async function disposable(): Promise<void> {
  await using fn = workerFn<string, string>('./echo.mjs');
  // @ts-expect-error close() takes no argument
  await fn.close(1);
}

// @ts-expect-error loadTimeout is a number of ms
workerFn('./m.mjs', { loadTimeout: '1s' });
