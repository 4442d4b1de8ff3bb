// velo-stream/dashboard names listed streams by the label given to open() or run(): sent as data (JSON; the page
// puts it in with textContent, checked in Chromium by dashboard-browser.test.mjs), cut to 200 characters, and a
// non-string refused at the open. (A redisWorker session's label, its sid: dashboard-redis.test.mjs.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { streamFn } from 'velo-stream';
import { dashboard } from 'velo-stream/dashboard';
import { firstSample, listen } from './helpers/dashboard-feed.mjs';

const relay = () =>
  streamFn(async function* relay(events) {
    for await (const e of events) yield e;
  });

test('open({ label }) and run(source, { label }): the label beside the stream id in the feed and in a stream\'s figures; hostile labels are data, cut to 200 characters', async () => {
  const fn = relay();
  const dash = dashboard({ functions: [fn] });
  const { root: base, close } = await listen(dash);
  const html = '<img src=x onerror="window.pwned=1">&amp;</td>';
  // The cut (199 characters and `…`) falls between the halves of the emoji: no lone half is sent.
  const long = `${'x'.repeat(198)}😀tail`;
  const streams = [fn.open({ label: html }), fn.open({ label: long }), fn.open(), fn.open({ label: '' })];
  // run() with a label: listed while it runs (its source waits until the sample is read).
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  const running = fn.run(
    (async function* () {
      yield 1;
      await gate;
    })(),
    { label: 'order 42' },
  );
  try {
    const sample = await firstSample(`${base}feed`);
    const rows = sample.functions[0].oldest;
    assert.deepEqual(
      rows.map((r) => r.label),
      [html, `${'x'.repeat(198)}…`, undefined, '', 'order 42'],
    );
    assert.deepEqual(
      rows.map((r) => r.id),
      [...streams.map((s) => s.id), rows[4].id],
    );
    assert.ok(rows[1].label.length <= 200);
    // One stream's figures carry it too.
    const res = await fetch(`${base}stream?fn=relay&id=${streams[0].id}`);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.equal((await res.json()).label, html);
  } finally {
    release();
    await running;
    await Promise.all(streams.map((s) => s.cancel()));
    await close();
  }
});

test('a label that is not a string is refused at the open (ERR_INVALID_ARG_TYPE), by open() and run(); unknown options name it', async () => {
  const fn = relay();
  for (const label of [42, null, { toString: () => 'x' }, ['a'], Symbol('s')]) {
    assert.throws(() => fn.open({ label }), { code: 'ERR_INVALID_ARG_TYPE', message: /"label" option must be a string/ });
    await assert.rejects(fn.run([1], { label }), { code: 'ERR_INVALID_ARG_TYPE' });
  }
  assert.throws(() => fn.open({ lable: 'x' }), { code: 'ERR_INVALID_ARG_VALUE', message: /Known options: signal, label/ });
  assert.equal(fn.stats().opened, 0, 'nothing opened');
  // A label changes nothing else: the outputs are the same.
  assert.deepEqual(await fn.run([1, 2], { label: 'x', signal: new AbortController().signal }), [1, 2]);
});

test("a function's and another make's limiter's long names are cut to 200 characters in the feed, as labels", async () => {
  const name = `${'n'.repeat(250)}`;
  const fn = streamFn(async function* (events) {
    for await (const e of events) yield e;
  }, { name });
  const custom = {
    name: `${'l'.repeat(198)}😀tail`,
    acquire: async () => ({ release() {} }),
    tryAcquire: () => undefined,
    stats: () => ({ name: 'x', inUse: 0, waiting: 0, admitted: 0, rejected: 0, waitedMs: { p50: 0, p99: 0 }, keys: 0 }),
  };
  const { root: base, close } = await listen(dashboard({ functions: [fn], limiters: [custom] }));
  try {
    const sample = await firstSample(`${base}feed`);
    assert.equal(sample.functions[0].name, `${'n'.repeat(199)}…`);
    assert.equal(sample.limiters[0].name, `${'l'.repeat(198)}…`);
  } finally {
    await close();
  }
});
