// Fairness across tenants (issue 41, "one hot tenant sending 100x the others"), in virtual time: a limiter of
// concurrency 4 whose every permit is held 10 ms, four ordinary tenants each sending Poisson arrivals (together
// 60 % of the capacity), and a hot tenant sending 100x one ordinary tenant's rate (15x the capacity). The limiter
// reads a virtual clock (`clock`), and this loop advances it from event to event (an arrival, a permit's release),
// so the figures are exact and the same on every run, whatever the machine's load.
//
//   node bench/limiter-fairness.mjs            (prints a Markdown table)
//
// `__test__/limiter-fairness.test.mjs` runs two of its scenarios and checks the target against them.
//
// For each scenario: the ordinary tenants' waits (from acquire to grant, virtual ms), p50 / p99 / max, and how
// many of their acquires were still waiting at the end (their wait counted to the end of the run).
import { setImmediate as immediate } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { limiter } from '../index.mjs';
import { prng } from './prng.mjs';

const CONCURRENCY = 4;
const HOLD_MS = 10;
const RUN_MS = 20_000;
const OTHERS = ['a', 'b', 'c', 'd'];
/** Each ordinary tenant's arrivals per ms: 4 of them at 0.06 make 60 % of 0.4 per ms (4 permits of 10 ms). */
const OTHER_RATE = 0.06;
const HOT_RATE = 100 * OTHER_RATE;

/** Arrivals (sorted by time) of each tenant, Poisson, seeded. */
function arrivals(withHot) {
  const random = prng(41);
  const out = [];
  const add = (tenant, perMs) => {
    for (let t = -Math.log(1 - random()) / perMs; t < RUN_MS; t += -Math.log(1 - random()) / perMs) out.push({ t, tenant });
  };
  for (const tenant of OTHERS) add(tenant, OTHER_RATE);
  if (withHot) add('hot', HOT_RATE);
  return out.sort((x, y) => x.t - y.t);
}

/** One scenario: the ordinary tenants' waits (virtual ms), with or without the hot tenant and fairness. */
export async function fairnessRun({ withHot, fair }) {
  let now = 0;
  const l = limiter({
    name: 'fairness-bench',
    concurrency: CONCURRENCY,
    maxWaiting: 1_000_000,
    clock: () => now,
    ...(fair ? { fairness: { by: (item) => item.tenant } } : {}),
  });
  const waits = [];
  let pendingOthers = new Set();
  /** Release times of the permits held, with the permit. */
  const held = [];
  for (const arrival of [...arrivals(withHot), { t: Infinity }]) {
    // Releases due before this arrival, in time order (each may grant a waiter, which holds its permit from then).
    for (;;) {
      held.sort((x, y) => x.at - y.at);
      if (held.length === 0 || held[0].at > Math.min(arrival.t, RUN_MS)) break;
      const next = held.shift();
      now = next.at;
      next.permit.release();
      await immediate();
    }
    if (arrival.t >= RUN_MS) break;
    now = arrival.t;
    const since = now;
    const entry = { since };
    if (arrival.tenant !== 'hot') pendingOthers.add(entry);
    void l.acquire({ tenant: arrival.tenant }).then(
      (permit) => {
        if (arrival.tenant !== 'hot') {
          pendingOthers.delete(entry);
          waits.push(now - since);
        }
        held.push({ at: now + HOLD_MS, permit });
      },
      () => {},
    );
    await immediate();
  }
  const stillWaiting = pendingOthers.size;
  for (const entry of pendingOthers) waits.push(RUN_MS - entry.since);
  pendingOthers = new Set();
  await l.close();
  waits.sort((x, y) => x - y);
  const at = (q) => waits[Math.min(waits.length - 1, Math.floor(q * waits.length))];
  return { n: waits.length, p50: at(0.5), p99: at(0.99), max: waits.at(-1), stillWaiting };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = [
    ['ordinary tenants alone (first come, first served)', { withHot: false, fair: false }],
    ['ordinary tenants alone, with fairness', { withHot: false, fair: true }],
    ['with the hot tenant, first come, first served', { withHot: true, fair: false }],
    ['with the hot tenant, with fairness', { withHot: true, fair: true }],
  ];
  console.log('| scenario | ordinary acquires | wait p50 (ms) | wait p99 (ms) | max (ms) | still waiting at the end |');
  console.log('|---|---|---|---|---|---|');
  for (const [name, options] of rows) {
    const r = await fairnessRun(options);
    const f = (x) => x.toFixed(1);
    console.log(`| ${name} | ${r.n} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.max)} | ${r.stillWaiting} |`);
  }
}
