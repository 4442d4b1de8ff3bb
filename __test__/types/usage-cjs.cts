// The CommonJS entry has the same types.
import velo = require('velo-stream');

const fn = velo.streamFn(async function* (xs: AsyncIterable<number>) {
  for await (const x of xs) yield x + 1;
});
const out: Promise<number[]> = fn.run([1]);
void out;
const err: velo.StreamClosedError = new velo.StreamClosedError('closed');
void err;
