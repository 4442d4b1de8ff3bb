// Per-user fraud scoring: one stream per user session, state in locals
// (count, spend, last country, timestamps), a score for every transaction.
//
//   node examples/fraud-scoring.mjs
import { pathToFileURL } from 'node:url';
import { streamFn } from 'velo-stream';

export const fraudScorer = streamFn(
  async function* score(transactions) {
    let count = 0;
    let total = 0;
    let lastCountry;
    const recent = []; // timestamps within the last 60 s
    for await (const tx of transactions) {
      count++;
      const average = count > 1 ? total / (count - 1) : tx.amount;
      while (recent.length > 0 && tx.at - recent[0] > 60_000) recent.shift();
      recent.push(tx.at);
      const reasons = [];
      if (count > 3 && tx.amount > 5 * average) reasons.push('amount far above this user\'s average');
      if (lastCountry !== undefined && tx.country !== lastCountry) reasons.push(`country changed ${lastCountry} -> ${tx.country}`);
      if (recent.length > 5) reasons.push(`${recent.length} transactions within 60 s`);
      total += tx.amount;
      lastCountry = tx.country;
      const risk = Math.min(1, reasons.length * 0.4);
      yield { id: tx.id, risk, flagged: risk >= 0.4, reasons };
    }
  },
  { buffer: 64, idleTimeout: 15 * 60_000, maxConcurrent: 10_000 },
);

/** A normal user, then a takeover: a foreign country and a burst of big purchases. */
export function* session() {
  let at = 0;
  for (let i = 0; i < 6; i++) yield { id: `n${i}`, amount: 20 + i, country: 'DE', at: (at += 3_600_000) };
  yield { id: 'x1', amount: 900, country: 'BR', at: (at += 1_000) };
  for (let i = 2; i <= 6; i++) yield { id: `x${i}`, amount: 850, country: 'BR', at: (at += 5_000) };
}

export async function main() {
  const results = await fraudScorer.run(session());
  for (const r of results) console.log(JSON.stringify(r));
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
