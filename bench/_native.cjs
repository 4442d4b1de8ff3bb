const addon = require('../native/index.js');
const S = addon.stream;
const f = new addon.NativeFunction(1e9);
function best(label, n, per, fn) {
  let min = Infinity;
  for (let r = 0; r < 9; r++) { const t0 = performance.now(); fn(n); min = Math.min(min, (performance.now() - t0) * 1e6 / (n * per)); }
  console.log(label.padEnd(44), min.toFixed(1), 'ns');
}
best('open + free', 20000, 1, (n) => { for (let i = 0; i < n; i++) S.free(f.open(256, 0)); });
const h = f.open(256, 0);
const buf = [];
best('room(h)', 1e6, 1, (n) => { for (let i = 0; i < n; i++) S.room(h); });
best('send+takeInput (number), per pair', 1e6, 1, (n) => { for (let i = 0; i < n; i++) { S.send(h, i); S.takeInput(h, buf, 256); } });
const o = { a: 1 };
best('send+takeInput (object), per pair', 1e6, 1, (n) => { for (let i = 0; i < n; i++) { S.send(h, o); S.takeInput(h, buf, 256); } });
const arr = Array.from({ length: 256 }, (_, i) => i);
const objs = Array.from({ length: 256 }, (_, i) => ({ i }));
S.takeInput(h, buf, 256);
best('sendBatch 256 numbers, per event', 4000, 256, (n) => { for (let i = 0; i < n; i++) { S.sendBatch(h, arr, 0, 256); S.takeInput(h, buf, 256); S.takeInput(h, buf, 256); } });
best('sendBatch 256 objects, per event', 4000, 256, (n) => { for (let i = 0; i < n; i++) { S.sendBatch(h, objs, 0, 256); S.takeInput(h, buf, 256); S.takeInput(h, buf, 256); } });
best('  takeInput only (numbers, 256), per event', 4000, 256, (n) => { for (let i = 0; i < n; i++) { S.sendBatch(h, arr, 0, 256); S.takeInput(h, buf, 256); S.takeInput(h, buf, 256); } });
best('yieldOutput + takeOutput (number)', 1e6, 1, (n) => { for (let i = 0; i < n; i++) { S.yieldOutput(h, i); S.takeOutput(h, buf, 256); } });
best('JS: array push+index loop (baseline)', 1e6, 1, (n) => { const a = []; for (let i = 0; i < n; i++) { a.push(i); } });
