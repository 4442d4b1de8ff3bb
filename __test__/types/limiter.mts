// Typical user code for redisLimiter, compiled against the public types (npm run test:types).
import { createClient } from 'redis';
import { redisLimiter, type Limiter, type RedisLimiterStats, type RedisPermit } from 'velo-stream/redis';

interface Call {
  tenant: string;
  tokens: number;
}

export async function use(): Promise<number> {
  const client = await createClient().connect();
  const tokens = redisLimiter<Call>({
    client,
    name: 'llm-tokens',
    rate: { limit: 12_000, period: 60_000 },
    cost: (c) => c.tokens,
  });
  const tenants = redisLimiter<Call>({
    client,
    name: 'llm-tenants',
    concurrency: 2,
    key: (c) => c.tenant,
    whenRedisFails: 'local',
  });
  // Either fits where the in-process limiter's interface is asked for.
  const all: Limiter<Call>[] = [tokens, tenants];
  const call = { tenant: 't1', tokens: 300 };
  const permits: RedisPermit[] = [];
  for (const limiter of [tokens, tenants]) permits.push(await limiter.acquire(call, { signal: AbortSignal.timeout(1000) }));
  for (const p of permits) p.release();
  const freed: boolean = await permits[1].released();
  const lost: boolean = permits[1].lost;
  // @ts-expect-error the key function must return a string
  redisLimiter<Call>({ client, name: 'bad', concurrency: 1, key: (c) => c.tokens });
  // @ts-expect-error an unknown policy
  redisLimiter({ client, name: 'bad', concurrency: 1, whenRedisFails: 'retry' });
  await tenants.setLimits({ concurrency: 3 });
  const stats: RedisLimiterStats = tenants.stats();
  for (const limiter of all) await limiter.close();
  return stats.fleet.processes + stats.inUse + Number(freed) + Number(lost);
}

// redisWorker's `limiter` option: the limiters' key and cost functions get a SessionPermitItem of the function's events.
import { limiter, streamFn } from 'velo-stream';
import { redisWorker, type SessionPermitItem, type WorkerPermitStats } from 'velo-stream/redis';

export async function sessions(): Promise<number> {
  const client = await createClient().connect();
  const agent = streamFn(async function* (calls: AsyncIterable<Call>) {
    for await (const c of calls) yield c.tokens;
  });
  const perTenant = redisLimiter<SessionPermitItem<Call>>({
    client,
    name: 'agent-tenants',
    concurrency: 2,
    key: (s) => s.key.split(':')[0],
  });
  const budget = limiter<SessionPermitItem<Call>>({ rate: { limit: 100, period: 1000 }, cost: (s) => s.event?.tokens ?? 0 });
  const worker = redisWorker(agent, { client, name: 'agent', limiter: { session: perTenant, step: [budget], maxWaiting: 100 } });
  // @ts-expect-error a limiter of other items than the sessions'
  redisWorker(agent, { client, name: 'agent', limiter: { session: redisLimiter<Call>({ client, name: 'x', concurrency: 1 }) } });
  const permits: WorkerPermitStats = worker.stats().permits;
  await worker.close();
  return permits.waitingSessions + permits.waitingSteps + permits.held + permits.failures;
}
