// A per-request stream limited per tenant: open({ key, cost }) and run(events, { key, cost }), whose values reach the
// function's limiters in the admission item (npm run test:types, strict).
import { limiter, streamFn, type AdmissionItem, type OpenOptions } from 'velo-stream';

export async function gateway(tenant: string, estimate: number): Promise<number> {
  const tokens = limiter<AdmissionItem>({
    name: 'llm-tokens',
    rate: { limit: 100_000, period: 60_000 },
    key: ({ key }) => String(key),
    cost: ({ cost = 1 }) => cost,
    mode: 'reject',
  });
  const chat = streamFn(
    async function* (prompts: AsyncIterable<string>) {
      for await (const p of prompts) yield p.length;
    },
    { limiter: tokens },
  );
  const options: OpenOptions = { key: tenant, cost: estimate, label: 'chat' };
  const stream = chat.open(options);
  await stream.end();
  const lengths: number[] = await chat.run(['hello'], { key: tenant, cost: 5 });
  // @ts-expect-error the key is a string
  chat.open({ key: 42 });
  // @ts-expect-error the cost is a number
  chat.open({ cost: '4' });
  // @ts-expect-error the item's cost is a number or absent
  const wrong: AdmissionItem = { id: '', cost: 'many' };
  const item: AdmissionItem = { id: 'x', key: 't', cost: 3 };
  return lengths.length + (item.cost ?? 0) + wrong.id.length;
}
