// Child-process scenarios for idle.test.mjs: does the process exit by itself?
import { streamFn } from 'velo-stream';

const scenario = process.argv[2];

if (scenario === 'idle-open') {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
      console.log('idle-ended');
    },
    { idleTimeout: 10_000 },
  );
  const s = fn.open();
  await s.send(1);
  console.log('opened');
} else if (scenario === 'pending-read') {
  const fn = streamFn(
    async function* (events) {
      for await (const e of events) yield e;
      yield 'end';
    },
    { idleTimeout: 200 },
  );
  const s = fn.open();
  await s.send('a');
  await s.send('b');
  const out = [];
  for await (const v of s) out.push(v);
  console.log(`outputs: ${out.join(',')}`);
} else if (scenario === 'pending-send') {
  const fn = streamFn(
    async function* (events) {
      await new Promise(() => {}); // never reads, never settles: only a promise, no handle
      for await (const e of events) yield e;
    },
    { buffer: 1, idleTimeout: 10_000 },
  );
  const s = fn.open();
  await s.send(1);
  void s.send(2);
  process.on('exit', () => console.log(`exit with state ${s.state}, waits ${s.metrics.backpressureWaits}`));
}
