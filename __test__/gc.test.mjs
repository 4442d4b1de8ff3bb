// An abandoned stream (never ended, never cancelled) is garbage collected with
// its handler, and gives its maxConcurrent slot back. Needs --expose-gc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { settle } from './helpers/util.mjs';

async function collectGarbage() {
  for (let i = 0; i < 10; i++) {
    global.gc();
    await settle(2);
  }
}

for (const idleTimeout of [0, 60_000]) {
  test(`abandoned streams are collected and free their slots (idleTimeout ${idleTimeout})`, async () => {
    assert.equal(typeof global.gc, 'function', 'run with --expose-gc');
    let finalized = 0;
    const registry = new FinalizationRegistry(() => finalized++);
    const fn = streamFn(
      async function* (events) {
        for await (const e of events) yield e;
      },
      { idleTimeout, maxConcurrent: 10_000 },
    );
    const N = 1000;
    (() => {
      for (let i = 0; i < N; i++) {
        const s = fn.open();
        void s.send({ payload: new Array(16).fill(i) });
        registry.register(s, i);
      }
    })();
    await settle();
    assert.equal(fn.stats().open, N);
    await collectGarbage();
    assert.equal(finalized, N, 'every stream object was collected');
    assert.equal(fn.stats().open, 0, 'and every slot came back');
    assert.equal(fn.stats().cancelled, N);
  });
}
