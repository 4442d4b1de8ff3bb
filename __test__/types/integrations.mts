// The integration subpaths' types, compiled against the shipped declarations.
import { createServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { Registry } from 'prom-client';
import { streamFn, type SessionItem, type StreamSessions } from 'velo-stream';
import { ndjsonEvents, RequestBodyError, sendNdjson, sendSse, toReadable } from 'velo-stream/http';
import { registerStreamMetrics } from 'velo-stream/prometheus';

interface Tx {
  amount: number;
}
interface Score {
  risk: number;
}

const scorer = streamFn(async function* (txs: AsyncIterable<Tx>) {
  for await (const tx of txs) yield { risk: tx.amount > 100 ? 1 : 0 } satisfies Score;
});

async function sessions(): Promise<void> {
  const s: StreamSessions<string, Tx, Score> = scorer.sessions<string>({ idleTimeout: 1000 });
  await s.send('u1', { amount: 5 });
  // @ts-expect-error events are typed per function
  await s.send('u1', { amount: 'five' });
  for await (const item of s) {
    const it: SessionItem<string, Score> = item;
    if (!('error' in it)) {
      const risk: number = it.value.risk;
      const key: string = it.key;
      (void risk, key);
    }
  }
  const n: number = s.size + s.fn.stats().open;
  void n;
}

createServer(async (req, res) => {
  const stream = scorer.open();
  await sendNdjson(res, stream.feed(ndjsonEvents<Tx>(req)));
  await sendSse(res, stream, { event: 'score', serialize: (o) => String(o.risk) });
  // @ts-expect-error serialize gets the typed output
  await sendSse(res, stream, { serialize: (o: string) => o });
  toReadable(stream, 'ndjson').pipe(res);
});

const d: Duplex = scorer.open().duplex();
const registry = new Registry();
registerStreamMetrics(registry, [scorer]);
const e = new RequestBodyError(3, new Error('x'));
const status: 400 = e.status;
(void d, status, sessions);
