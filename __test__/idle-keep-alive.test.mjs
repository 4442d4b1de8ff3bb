// A read that keeps the process alive (it waits on a stream whose idle deadline runs) lets it go once nothing
// will settle it by a deadline any more: here `end()` stops the idle clock of a stream fed by sends, which has no
// side state (`Extras`), and the read is then answered by the handler's return. `#syncKeepAlive` skips such a
// stream only when it holds nothing: were the process hold forgotten there, the script would never exit (the
// deadline is stopped, so nothing else lets it go). Each case runs in a child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from './helpers/child.mjs';

/** A script whose read waits on `s` (idle deadline 60 s), then ends its input `when`; it prints how the read settled. */
function script(when) {
  const endIt = when === 'same turn' ? 's.end();' : 'setTimeout(() => s.end(), 20);';
  return `
    const { streamFn } = require('velo-stream');
    const s = streamFn(async function* (events) { for await (const e of events) yield e; }, { idleTimeout: 60_000 }).open();
    let at;
    process.on('exit', () => console.log(JSON.stringify({ state: s.state, exitMs: Math.round(performance.now() - at) })));
    // (An iteration's read, not recv(): recv()'s refusal names the stream, and making its id gives it side state.)
    s[Symbol.asyncIterator]().next().then((r) => { at = performance.now(); console.log('read settled:', JSON.stringify(r)); });
    ${endIt}
  `;
}

for (const when of ['same turn', 'a later turn']) {
  test(`a read held the process alive: end() in ${when} stops the idle clock, and the process exits once the read settles`, async () => {
    // (Without the release, the child never exits by itself: the 60 s deadline is stopped, so killed at 20 s.)
    const r = await run(['-e', script(when)], { timeout: 20_000 });
    const [read, exit] = r.stdout.trim().split('\n');
    assert.equal(read, 'read settled: {"done":true}');
    const { state, exitMs } = JSON.parse(exit);
    assert.equal(state, 'done');
    assert.ok(exitMs < 15_000, `exited ${exitMs} ms after the read settled`);
  });
}

test('a read pending on a stream fed by sends, whose idle clock runs, keeps the process alive until the deadline settles it', async () => {
  // (Were the stream skipped for having no side state, nothing would hold the process: it would exit at once, the
  // read never settled.)
  const r = await run(
    [
      '-e',
      `
      const { streamFn } = require('velo-stream');
      const s = streamFn(async function* (events) { for await (const e of events) yield e; }, { idleTimeout: 200 }).open();
      process.on('exit', () => console.log('exit', s.state));
      s[Symbol.asyncIterator]().next().then((r) => console.log('read settled:', JSON.stringify(r)));
    `,
    ],
    { timeout: 20_000 },
  );
  assert.equal(r.stdout, 'read settled: {"done":true}\nexit done\n');
});
