// Contract: memory is bounded for every cell (cells.mjs). With nobody reading, a sender running ahead gets at most
// a fixed number of sends resolved, then waits: what a stream (or a pipe of them) holds is bounded by its stages'
// buffers (an input and an output buffer each, the task window, a worker's lanes), never by the sender. Counted,
// not timed: the sends resolved once they stop resolving, against 8 x the stages' buffers + 64 (measured
// 26-2,340 here, by kind and composition; the same sender into an unbounded queue resolves all 20,000).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { cells } from './cells.mjs';

const BUFFER = 4;
/** Stages after a pipe's first keep the default buffer. */
const DEFAULT_BUFFER = 256;
const SENDS = 20_000;

for (const cell of cells()) {
  test(`${cell.name}: with nobody reading, sends stop resolving within the stages' bounds`, async () => {
    const stages = cell.name.split('|').length;
    const bound = 8 * (BUFFER + (stages - 1) * DEFAULT_BUFFER) + 64;
    const s = cell.make({ buffer: BUFFER }).open();
    let resolved = 0;
    const sending = (async () => {
      for (let i = 0; i < SENDS; i++) {
        await s.send({ i });
        resolved++;
      }
    })().catch(() => {});
    // Until no send has resolved for 30 turns of the event loop (with a short sleep each: a worker thread runs on
    // its own time), or past the bound.
    for (let last = -1, still = 0; still < 30 && resolved <= bound; ) {
      await turn();
      await new Promise((resolve) => setTimeout(resolve, 2));
      still = resolved === last ? still + 1 : 0;
      last = resolved;
    }
    assert.ok(resolved <= bound, `${resolved} sends resolved with nobody reading (bound ${bound})`);
    assert.ok(resolved >= BUFFER, `${resolved}: at least the first stage's buffer is accepted`);
    assert.ok(s.metrics.bufferedIn <= BUFFER, 'the first stage holds at most its buffer');
    await s.cancel();
    await sending;
  });
}
