// A journaled call's own cost, apart from the drain: `Journal.run` as a durable session calls it for
// `await ctx.run('svc', () => compute(i))`, over 100 sessions, with a commit's share (each session's entry taken,
// its value built as the log stores it, and dropped as written) every 100 calls; or, `awaited`, the same loop with
// `await compute(i)` alone. For instruction counts of two copies of the package under callgrind:
//
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//     node --single-threaded bench/journal-calls.mjs <journal|awaited> <calls> [package dir]
//
// Instructions per call = the difference of two runs' counts (say 10,000 and 30,000 calls) over the difference of
// their calls: Node's start, the modules' load and the compiler's first work cancel out.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const [mode = 'journal', calls = '20000', dir = path.join(here, '..')] = process.argv.slice(2);
if (mode !== 'journal' && mode !== 'awaited') throw new Error(`mode: journal or awaited, not ${mode}`);
const N = Number(calls);
const from = (module) => import(pathToFileURL(path.join(path.resolve(dir), 'dist', module)).href);
const { Journal } = await from('durable/engine/journal.js');
const { jsonCodec } = await from('durable/common/codec.js');
const { journalValue } = await from('durable/common/stored.js');

const host = { codec: jsonCodec, maxEventBytes: 1 << 20, maxJournalBytes: 1 << 30, report() {} };
// What `Journal.run` takes of the handler's signal: the signal itself in copies before CallSignal, a `{ signal,
// aborted }` since. A signal that names itself is both.
const signal = new AbortController().signal;
signal.signal = signal;
/** A service's answer: a small object, as in `node bench/redis.mjs drains --journal`. */
const compute = (i) => ({ n: i, half: i / 2 });
const sessions = Array.from({ length: 100 }, (_, k) => {
  const journal = new Journal(`k${k}@1-0`, 0, undefined, host, (e) => JSON.stringify({ message: String(e) }));
  const queued = [];
  journal.queue = (entry) => queued.push(entry);
  return { journal, queued };
});
let sink = 0;
for (let i = 0; i < N; i++) {
  const { journal } = sessions[i % 100];
  const c = mode === 'journal' ? await journal.run('svc', () => compute(i), signal) : await compute(i);
  sink += c.n;
  if (i % 100 === 99)
    for (const s of sessions) {
      for (const entry of s.queued) {
        sink += journalValue(entry.take()).length;
        entry.written();
      }
      s.queued.length = 0;
    }
}
if (!(sink > 0)) throw new Error('nothing was called');
