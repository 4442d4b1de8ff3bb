// Contract: a pending read keeps the process alive, and nothing else does, for every cell (cells.mjs). Each
// cell runs in a child process: open, send, read one output, then leave the stream open (the default
// idleTimeout, 30 s, is far beyond the 15 s deadline, so exiting in time means nothing held the process);
// then a read left pending on a stream whose idle deadline (300 ms) will end it must settle before exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../helpers/child.mjs';
import { HANDLERS, KINDS, cells } from './cells.mjs';

const CELLS = new URL('./cells.mjs', import.meta.url).href;

/** Source text that finds `cell` in a child process. */
const pickCell = (cell) => `(await import(${JSON.stringify(CELLS)})).cells().find((c) => c.name === ${JSON.stringify(cell.name)})`;

for (const cell of cells()) {
  test(`${cell.name}: an open stream whose output was read lets the process exit; a pending read holds it until it settles`, async () => {
    const pick = pickCell(cell);
    const left = await run(
      [
        '--input-type=module',
        '-e',
        `const cell = ${pick}; const s = cell.make().open(); await s.send({ i: 1 }); console.log(JSON.stringify(await s.recv()));`,
      ],
      { timeout: 15_000 },
    );
    assert.deepEqual(left, { ...left, stdout: '{"i":1}\n', stderr: '' });
    const pending = await run(
      [
        '--input-type=module',
        '-e',
        `const cell = ${pick}; const s = cell.make({ idleTimeout: 300 }).open(); await s.send({ i: 1 }); await s.recv();
         console.log(await s.recv().then((v) => 'value', (e) => e.code));`,
      ],
      { timeout: 15_000 },
    );
    assert.deepEqual(pending, { ...pending, stdout: 'ERR_VELO_STREAM_CLOSED\n', stderr: '' });
  });
}

// A send refused because the handler left its input loop is answered when the handler finishes. The handler's
// cleanup (a timer) keeps an in-process stream's process alive until then; on a worker thread it cannot, so the
// library must: the script's `await` settles in every kind, nothing is left unsettled at exit. (`run` rejects on a
// non-zero exit code.)
for (const [name, kind] of Object.entries(KINDS).filter(([, k]) => k.handler)) {
  test(`${name}: a send waiting on a handler that left its loop settles before the process exits`, async () => {
    const make =
      name === 'generator'
        ? `streamFn((await import(${JSON.stringify(HANDLERS.href)})).leaveAfterOne)`
        : `workerFn(${JSON.stringify(HANDLERS.href)}, { export: 'leaveAfterOne', threads: 1${kind === KINDS['worker transfer'] ? ', transfer: true' : ''} })`;
    const out = await run(
      [
        '--input-type=module',
        '-e',
        `import { streamFn, workerFn } from 'velo-stream';
         const s = ${make}.open();
         await s.send({ i: 1 });
         console.log(JSON.stringify(await s.recv()));
         // Sends made before the handler's thread has left its loop are taken (and dropped): send until one is answered otherwise.
         for (let i = 2; ; i++) {
           const answer = await s.send({ i }).then(() => 'resolved', (e) => e.code);
           if (answer !== 'resolved') { console.log(answer); break; }
         }`,
      ],
      { timeout: 15_000 },
    );
    assert.deepEqual(out, { ...out, stdout: '{"i":1}\nERR_VELO_STREAM_CLOSED\n', stderr: '' });
  });
}

// Sends waiting for room in an output nobody reads are not reads: they hold nothing (the default idleTimeout, 30 s,
// is far beyond the 15 s deadline). A batch stage filling a batch for `maxWait` while its window is full too: its
// deadline cannot move anything until a result is read, and held the process once; so did a retry's.
const FULL = [
  ...cells().map((cell) => ({ name: cell.name, make: `${pickCell(cell)}.make({ buffer: 1 })` })),
  { name: 'batch (maxSize 4, maxWait 20 ms)', make: `batch((xs) => xs.length, { maxSize: 4, maxWait: 20, buffer: 1, concurrency: 1 })` },
  // The same with a window of several calls whose results leave as they complete, a minSize, async calls and no idle
  // clock (nothing else that could end it).
  {
    name: 'batch (maxSize 8, minSize 3, maxWait 20 ms, 4 async calls, unordered, no idle clock)',
    make: `batch(async (xs) => xs.length, { maxSize: 8, minSize: 3, maxWait: 20, buffer: 2, concurrency: 4, ordered: false, idleTimeout: 0 })`,
  },
  // Calls that fail wait a minute for their retry, the window full: a send waiting behind them holds nothing.
  { name: 'task (retries a minute apart)', make: `task(() => { throw new Error('x'); }, { retry: { attempts: 3, delay: 60_000 }, buffer: 1, concurrency: 2 })` },
  { name: 'batch (retries a minute apart)', make: `batch(() => { throw new Error('x'); }, { maxSize: 2, retry: { attempts: 3, delay: 60_000 }, buffer: 1, concurrency: 2 })` },
  { name: 'generator | batch (maxSize 4, maxWait 20 ms)', make: `streamFn(async function* (es) { for await (const e of es) yield e; }, { buffer: 1 }).pipe(batch((xs) => xs.length, { maxSize: 4, maxWait: 20, buffer: 1, concurrency: 1 }))` },
];
for (const { name, make } of FULL) {
  test(`${name}: sends waiting on a full output that is never read let the process exit`, async () => {
    const out = await run(
      [
        '--input-type=module',
        '-e',
        `import { batch, streamFn, task } from 'velo-stream';
         const s = (${make}).open();
         // Sends in rounds until some wait (every stage's buffer and a worker's lanes full).
         let waiting = 0;
         const settled = () => waiting--;
         for (let round = 0, i = 0; waiting === 0; round++) {
           if (round === 200) throw new Error('every send was taken');
           for (let j = 0; j < 256; j++, i++) s.send({ i }).then(settled, settled), waiting++;
           await new Promise((resolve) => setTimeout(resolve, 5));
         }
         console.log('sends wait');`,
      ],
      { timeout: 15_000 },
    );
    assert.deepEqual(out, { ...out, stdout: 'sends wait\n', stderr: '' });
  });
}
