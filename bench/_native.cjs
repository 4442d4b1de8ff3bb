const addon = require('../native/index.js');
const f = new addon.NativeFunction(1e9);
function best(label, n, fn) {
  let min = Infinity;
  for (let r = 0; r < 7; r++) { const t0 = performance.now(); fn(n); min = Math.min(min, (performance.now() - t0) * 1e6 / n); }
  console.log(label.padEnd(34), min.toFixed(0), 'ns');
}
const held = [];
best('NativeFunction.open (instance)', 20000, (n) => { for (let i = 0; i < n; i++) held.push(f.open(256, 0)); held.length = 0; });
const s = f.open(256, 0);
const buf = [];
best('stream.room() (derived method)', 1e6, (n) => { for (let i = 0; i < n; i++) s.room(); });
best('stream.phase (derived getter)', 1e6, (n) => { for (let i = 0; i < n; i++) s.phase; });
best('send+takeInput (2 calls, number)', 1e6, (n) => { for (let i = 0; i < n; i++) { s.send(i); s.takeInput(buf, 256); } });
const o = { a: 1 };
best('send+takeInput (2 calls, object)', 1e6, (n) => { for (let i = 0; i < n; i++) { s.send(o); s.takeInput(buf, 256); } });
best('yieldOutput+takeOutput', 1e6, (n) => { for (let i = 0; i < n; i++) { s.yieldOutput(i); s.takeOutput(buf, 256); } });
const arr = Array.from({ length: 256 }, (_, i) => i);
best('sendBatch 256 + takeInput, per ev', 4000, (n) => { for (let i = 0; i < n; i++) { s.sendBatch(arr, 0, 256); s.takeInput(buf, 256); s.takeInput(buf, 256);} });
best('  (per event)', 4000 * 256, () => {});
best('new WeakRef + map set/delete', 1e6, (n) => { const m = new Map(); for (let i = 0; i < n; i++) { m.set(i, new WeakRef(o)); m.delete(i); } });
best('FinalizationRegistry register', 1e6, (n) => { const fr = new FinalizationRegistry(() => {}); for (let i = 0; i < n; i++) fr.register({}, i); });
