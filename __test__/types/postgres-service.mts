// velo-stream/testing's postgresService(): a team's integration test on Postgres, compiled against the shipped
// declarations (strict).
import { postgresProducer } from 'velo-stream/postgres';
import {
  postgresService,
  type OutputCollector,
  type PostgresService,
  type PostgresServiceOptions,
  type ServiceExit,
  type ServiceProcess,
  type TestService,
} from 'velo-stream/testing';

export async function integration(): Promise<void> {
  const options: PostgresServiceOptions = {
    settings: { max_connections: 50, log_min_messages: 'warning' },
    startTimeout: 20_000,
  };
  await using service: PostgresService = await postgresService(options);
  const url: string = service.url;
  const database: string = service.database;
  const worker: ServiceProcess = service.spawn(new URL('./worker.mjs', import.meta.url), { env: { LEASE_TTL: '1000' } });
  await worker.waitFor(/ready/);
  await postgresProducer({ pool: service.pool({ max: 4 }), name: 'totals', partitions: 8 }).send('k', { n: 1 });
  await using outputs: OutputCollector<{ total: number }> = service.outputs({ name: 'totals', partitions: 8, pollInterval: 20 });
  const items = await outputs.until((all) => all.length >= 1, 5000);
  const first = items[0];
  const total: number = 'value' in first ? first.value.total : 0;
  worker.kill();
  worker.pause();
  worker.resume();
  const exit: ServiceExit = await worker.stop('SIGTERM', 1000);
  const code: number | null = exit.code;
  // Either backend's service is a TestService.
  const any: TestService = service;
  const pids: number[] = any.pids();
  // @ts-expect-error spawn takes a module path or URL
  service.spawn(42);
  // @ts-expect-error the pool's connection is the service's
  service.pool({ host: 'elsewhere' });
  // @ts-expect-error settings are strings, numbers or booleans
  await postgresService({ settings: { work_mem: null } });
  // @ts-expect-error outputs take no pool: the service gives its own
  service.outputs({ name: 'totals', pool: service.pool() });
  (void url, database, total, code, pids);
}
