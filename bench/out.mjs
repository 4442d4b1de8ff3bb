// Where a benchmark writes its results and charts. A full run writes where
// BENCHMARKS.md and the README read them (committed with the figures they
// publish); a quick run is a smoke check whose figures are never published,
// so it writes the same names under bench/quick/ (gitignored) and leaves a
// contributor's tree clean.
import { mkdirSync, writeFileSync } from 'node:fs';

const BENCH = new URL('./', import.meta.url);

/** The file a run writes for `name` (a path under bench/, such as 'charts/redis.svg'): under bench/quick/ for a quick run. */
export function outPath(name, quick) {
  return new URL(quick ? `quick/${name}` : name, BENCH);
}

/** Writes `text` to `name`'s file for this kind of run (making its folder); returns the path, relative to the repository. */
export function writeOut(name, quick, text) {
  const url = outPath(name, quick);
  mkdirSync(new URL('./', url), { recursive: true });
  writeFileSync(url, text);
  return `bench/${quick ? 'quick/' : ''}${name}`;
}
