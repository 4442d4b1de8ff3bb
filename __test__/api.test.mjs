// The package loads both ways and exports what the README lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as esm from 'velo-stream';
import { fileURLToPath } from 'node:url';
import { echo } from './helpers/util.mjs';
import { run } from './helpers/child.mjs';

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL('..', import.meta.url));

test('require() and import give the same runtime exports', () => {
  const cjs = require('velo-stream');
  for (const name of ['streamFn', 'StreamClosedError', 'StreamLimitError', 'SourceStalledError']) {
    assert.equal(typeof cjs[name], 'function', name);
    assert.equal(esm[name], cjs[name], name);
  }
});

test('config defaults are filled in and frozen', () => {
  const fn = esm.streamFn(echo);
  assert.deepEqual({ ...fn.config }, { buffer: 256, idleTimeout: 30_000, maxConcurrent: 10_000, name: 'echo' });
  assert.equal(fn.name, 'echo');
  assert.ok(Object.isFrozen(fn.config));
  const named = esm.streamFn(echo, { name: 'x', buffer: 4, idleTimeout: 0, maxConcurrent: 2 });
  assert.deepEqual({ ...named.config }, { buffer: 4, idleTimeout: 0, maxConcurrent: 2, name: 'x' });
  assert.equal(esm.streamFn(async function* () {}).name, 'anonymous');
});

test('error classes carry stable codes and are instances of Error', () => {
  const closed = new esm.StreamClosedError('m', { cause: 1 });
  assert.equal(closed.code, 'ERR_VELO_STREAM_CLOSED');
  assert.equal(closed.cause, 1);
  assert.ok(closed instanceof Error);
  assert.equal(new esm.StreamLimitError('m').code, 'ERR_VELO_STREAM_LIMIT');
});

test('a Rust panic surfaces as a JS error and the process carries on', async () => {
  // In a child process: Rust's panic hook prints the panic to stderr, which
  // must not reach the suite's output (a clean run has none). The child's
  // stderr must hold that one panic message and nothing else unclean.
  const script = `
    import { streamFn } from 'velo-stream';
    const { panicForTest } = await import('#testing');
    let message;
    try { panicForTest(); } catch (error) { message = error.message; }
    const out = await streamFn(async function* (xs) { for await (const x of xs) yield x; }).run([1, 2]);
    console.log(JSON.stringify({ message, out }));
  `;
  const { stdout } = await run(['--input-type=module', '-e', script], {
    cwd: root,
    env: { ...process.env, RUST_BACKTRACE: '0' },
    expectStderr: /thread [^\n]* panicked at [^\n]*\nvelo-stream: panic requested by __panicForTest\n(note: [^\n]*\n)?/,
  });
  const { message, out } = JSON.parse(stdout);
  assert.match(message, /panic requested by __panicForTest/);
  assert.deepEqual(out, [1, 2]);
});
