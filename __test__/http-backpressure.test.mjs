// sendNdjson/sendSse on a long response to a slow reader: every full socket
// is a wait for 'drain' (thousands here), and no wait may leave a listener
// behind (a leak of one 'close' and one 'error' listener per wait used to
// grow memory and print MaxListenersExceededWarning).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { streamFn } from 'velo-stream';
import { sendNdjson, sendSse } from 'velo-stream/http';
import { client, deadline, listen, recordWarnings } from './helpers/server.mjs';

const OUTPUTS = 2500;
// Larger than a Node response's 16 KiB high-water mark: there every write
// reports a full socket, so every output is followed by a wait. (Bun's
// responses report one less often: a wait every few outputs, hundreds in all.)
const PAD = 'x'.repeat(17 * 1024);

const long = streamFn(async function* long() {
  for (let i = 0; i < OUTPUTS; i++) yield { i, pad: PAD };
});

const counts = (res) => ({ close: res.listenerCount('close'), drain: res.listenerCount('drain'), error: res.listenerCount('error') });

for (const [format, send] of [
  ['ndjson', sendNdjson],
  ['sse', sendSse],
]) {
  test(`${format}: thousands of backpressure waits leave no listener behind, no warning`, async () => {
    const warnings = recordWarnings();
    const seen = { waits: 0, writesWhileFull: 0, baseline: undefined, atWrites: new Set(), after: undefined, done: undefined };
    const srv = await listen((_req, res) => {
      seen.baseline = counts(res);
      // Listener counts at every write (between waits), and the waits counted.
      const write = res.write;
      res.write = function (...args) {
        seen.atWrites.add(JSON.stringify(counts(res)));
        // A write made before the 'drain' that a full response asked for: the writer did not wait.
        if (res.writableNeedDrain) seen.writesWhileFull++;
        const ok = write.apply(this, args);
        if (!ok) seen.waits++;
        return ok;
      };
      seen.done = send(res, long.open()).then(() => (seen.after = counts(res)));
    });
    try {
      const c = client(srv.url);
      const res = await c.response;
      // A slow reader: each chunk is followed by a pause until the next turn,
      // and now and then a collection while the server waits for drain.
      let chunks = 0;
      res.on('data', () => {
        res.pause();
        if (++chunks % 500 === 0) global.gc();
        setImmediate(() => res.resume());
      });
      await deadline(once(res, 'end'), 60_000, 'the end of the long response');
      await deadline(seen.done, 5000, `${format} to resolve`);
      assert.equal(received(c.text, format), OUTPUTS, 'every output arrived');
      // Every full write was waited for ('drain' before the next write), and there were many of them: one per
      // output on Node, where each output fills the response.
      assert.equal(seen.writesWhileFull, 0, 'no write before the drain a full response asked for');
      if (typeof process.versions.bun === 'string') assert.ok(seen.waits >= 500, `hundreds of waits (${seen.waits} waits)`);
      else assert.ok(seen.waits >= OUTPUTS - 1, `one wait per output (${seen.waits} waits)`);
      const { close, drain, error } = seen.baseline;
      // During: only the response's own 'close' listener, never one per wait.
      assert.deepEqual([...seen.atWrites].map((s) => JSON.parse(s)), [{ close: close + 1, drain, error }]);
      // After: back to the baseline.
      assert.deepEqual(seen.after, seen.baseline);
      assert.equal(long.stats().open, 0);
      assert.deepEqual(warnings.seen, []);
    } finally {
      warnings.stop();
      await srv.close();
    }
  });
}

function received(text, format) {
  return text.split(format === 'sse' ? '\n\n' : '\n').length - 1;
}
