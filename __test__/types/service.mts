// velo-stream/testing's redisService(): a team's integration test, compiled against the shipped declarations.
import { redisProducer, redisName } from 'velo-stream/redis';
import { redisService, type OutputCollector, type ServiceExit, type ServiceProcess } from 'velo-stream/testing';
import { streamFn } from 'velo-stream';

const totals = streamFn(async function* (events: AsyncIterable<{ n: number }>) {
  let total = 0;
  for await (const e of events) yield { total: (total += e.n) };
});
const name = redisName(totals, 'totals');

export async function integration(): Promise<void> {
  await using service = await redisService({ startTimeout: 5000 });
  const worker: ServiceProcess = service.spawn(new URL('./worker.mjs', import.meta.url), { env: { LOG: '0' } });
  await worker.waitFor(/ready/);
  await redisProducer({ client: await service.client(), name, partitions: 8 }).send('k', { n: 1 });
  await using outputs: OutputCollector<{ total: number }> = service.outputs({ name, partitions: 8 });
  const items = await outputs.until(1);
  const first = items[0];
  const total: number = 'value' in first ? first.value.total : 0;
  worker.kill();
  worker.pause();
  worker.resume();
  const exit: ServiceExit = await worker.stop('SIGTERM', 1000);
  const code: number | null = exit.code;
  const pids: number[] = service.pids();
  // @ts-expect-error spawn takes a module path or URL
  service.spawn(42);
  (void total, code, pids);
}
