// node bench/limiter-accuracy.mjs [seconds] [burst]   the in-process limiter's rate accuracy over real time.
//
// The in-process counterpart of `npm run bench:limiter`'s accuracy run: one `limiter()` with R = 200/s and a
// burst of `burst` (default 20), shared by 5 users in this process, each asking as fast as it can (4 acquires at
// once), for `seconds` (default 30). Prints the admitted rate between the first and the last grant against R, and
// the largest burst, max over windows [t_i, t_j] up to 5 s of (grants in it) - (t_j - t_i)/T, which GCRA bounds by
// the burst. Times are read when each acquire resolves (performance.now()), so the timer's lateness and the promise
// reactions between a grant and its reader are in the figures, as a user would see them (with a small burst, the
// first grants, made while the 20 acquires are still being called, are read together: up to about 2 above it).
import { limiter } from '../index.mjs';

const RATE = { limit: 200, period: 1000, burst: Number(process.argv[3] ?? 20) };
const seconds = Number(process.argv[2] ?? 30);
if (!(seconds > 0)) throw new Error(`seconds must be a positive number, not ${process.argv[2]}`);

const l = limiter({ name: 'accuracy', rate: RATE, maxWaiting: 100 });
const at = [];
const until = performance.now() + seconds * 1000;
await Promise.all(
  Array.from({ length: 5 * 4 }, async () => {
    while (performance.now() < until) {
      await l.acquire(undefined);
      at.push(performance.now());
    }
  }),
);
await l.close();
at.sort((a, b) => a - b);
const T = RATE.period / RATE.limit;
const span = at[at.length - 1] - at[0];
let burst = 0;
for (let i = 0; i < at.length; i++) {
  for (let j = i; j < at.length && at[j] - at[i] <= 5000; j++) burst = Math.max(burst, j - i + 1 - (at[j] - at[i]) / T);
}
const rate = ((at.length - 1) * 1000) / span;
console.log(
  `accuracy, in-process: 5 users x 4 acquires at once, R = ${RATE.limit}/s, burst ${RATE.burst}, ${seconds} s: ${at.length} admitted over ${(span / 1000).toFixed(2)} s = ${rate.toFixed(2)}/s (${(((rate - RATE.limit) / RATE.limit) * 100).toFixed(2)} % from R); largest burst ${burst.toFixed(2)} (bound ${RATE.burst})`,
);
