// The live dashboard (velo-stream/dashboard) over a realistic load: a shop's order sessions (one stream per
// customer, ended by their idle timeout), a task stage calling a flaky pricing service with retries, and fraud
// scoring on two worker threads. Open the printed address in a browser.
//
//   node examples/dashboard.mjs               serves until Ctrl-C (PORT, default 3000)
//   node examples/dashboard.mjs --seconds 5   stops after 5 s, having read its own feed once
import http from 'node:http';
import { isMainThread } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { streamFn, task, workerFn } from 'velo-stream';
import { dashboard } from 'velo-stream/dashboard';

/** Fraud scoring, run on worker threads (this module is the worker's module too). */
export async function* score(orders) {
  let spent = 0;
  for await (const order of orders) {
    spent += order.amount;
    // A little CPU per order, as a model would take.
    let h = 0;
    for (let i = 0; i < 20_000; i++) h = (h * 31 + i + order.amount) % 1_000_003;
    yield { customer: order.customer, risk: spent > 900 ? 'review' : 'ok', h };
  }
}

if (isMainThread) await main();

async function main() {
  const { values } = parseArgs({ options: { seconds: { type: 'string' } } });

  // One session per customer: a running basket; an order with a negative amount is refused (the stream fails).
  const orders = streamFn(
    async function* orders(events) {
      let basket = 0;
      for await (const order of events) {
        if (order.amount < 0) throw Object.assign(new Error(`negative amount for ${order.customer}`), { code: 'E_BAD_ORDER' });
        basket += order.amount;
        yield { ...order, basket };
      }
    },
    { idleTimeout: 3000, buffer: 32 },
  );
  // A pricing service that fails 5 % of its calls: retried twice, then the order is skipped.
  const price = task(
    async (order) => {
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
      if (Math.random() < 0.05) throw new Error('pricing service unavailable');
      return { ...order, total: Math.round(order.basket * 1.2) };
    },
    { name: 'price', concurrency: 8, retry: { attempts: 3, delay: 10 }, onError: 'skip' },
  );
  const fraud = workerFn(new URL(import.meta.url), { export: 'score', threads: 2, name: 'fraud', threadIdleTimeout: 0 });

  const sessions = orders.sessions();
  const pricing = price.open();
  const scoring = fraud.open();
  const drains = [
    (async () => {
      for await (const item of sessions) if ('value' in item) pricing.send(item.value).catch(() => {});
    })(),
    (async () => {
      for await (const priced of pricing) scoring.send(priced).catch(() => {});
    })(),
    (async () => {
      for await (const _ of scoring);
    })(),
  ];

  // About 400 orders a second from 200 customers, a few of them bad.
  let n = 0;
  const load = setInterval(() => {
    for (let i = 0; i < 8; i++) {
      const customer = `c${Math.floor(Math.random() * 200)}`;
      const amount = Math.random() < 0.002 ? -1 : Math.round(Math.random() * 100);
      sessions.send(customer, { customer, amount, n: n++ }).catch(() => {});
    }
  }, 20);

  const dash = dashboard({ functions: [orders, price, fraud] });
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/dashboard')) return dash(req, res);
    res.writeHead(302, { location: '/dashboard/' }).end();
  });
  const port = Number(process.env.PORT ?? 3000);
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/dashboard/`;
  console.log(`dashboard at ${url}`);

  const stop = async () => {
    clearInterval(load);
    await sessions.close();
    await drains[0];
    pricing.end();
    await drains[1];
    scoring.end();
    await drains[2];
    await fraud.close();
    server.closeAllConnections();
    server.close();
  };
  process.once('SIGINT', () => void stop());
  if (values.seconds !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, Number(values.seconds) * 1000));
    // Read one sample of the feed, as the page does.
    const res = await fetch(`${url}feed`);
    const reader = res.body.getReader();
    let text = '';
    while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    const sample = JSON.parse(text.slice(text.indexOf('data: ') + 6, text.indexOf('\n\n')));
    const figures = sample.functions.map((f) => `${f.name} ${f.open} open`).join(', ');
    console.log(`feed: ${sample.functions.length} functions (${figures}), ${sample.errors.length} errors listed`);
    await stop();
  }
}
