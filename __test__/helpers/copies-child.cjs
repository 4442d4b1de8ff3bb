// Loads velo-stream twice in one process, as Jest does (a fresh module
// registry per test file; jest.resetModules(); clearing require.cache), and
// uses both copies side by side. Prints one JSON report.
// argv[2]: 'js' clears the JavaScript files from require.cache (the native
// addon stays cached, as under Jest); 'all' clears the addon too.
const path = require('node:path');
const root = path.resolve(__dirname, '../..');
const mode = process.argv[2];

function load() {
  for (const key of Object.keys(require.cache)) {
    if (!key.startsWith(root) || key.includes('node_modules')) continue;
    if (mode === 'all' || key.endsWith('.js')) delete require.cache[key];
  }
  return require(root);
}

const copies = [load(), load(), load()];
const echo = async function* (events) {
  for await (const e of events) yield e;
};
const values = (tag) => [{ tag }, `${tag}-string`, 1.5, [tag], null, 7, 8, { n: tag }];

(async () => {
  const report = { distinct: new Set(copies).size };
  // Interleaved streams of every copy, values of every kind, batch and one by one.
  const fns = copies.map((c, i) => c.streamFn(echo, { name: `copy${i}`, idleTimeout: 100 }));
  report.runs = await Promise.all(fns.map((fn, i) => fn.run(values(i))));
  const open = fns.map((fn) => fn.open());
  for (let k = 0; k < 3; k++) for (const [i, s] of open.entries()) await s.send({ copy: i, k });
  report.recv = [];
  for (const s of open) report.recv.push(await s.recv());
  // Idle deadlines of every copy end their streams.
  report.idle = await Promise.all(
    open.map(async (s) => {
      const out = [];
      for await (const v of s) out.push(v);
      return out.length;
    }),
  );
  report.stats = fns.map((fn) => fn.stats().completed);
  // Objects of one copy used by another: a pipe across copies, metrics of
  // every copy on one registry (through the last copy's subpath).
  const piped = fns[0].pipe(fns[1]).pipe(async function* (events) {
    for await (const e of events) yield { wrapped: e };
  });
  report.crossPipe = await piped.run([{ x: 1 }, 'two', 3]);
  const { Registry } = require('prom-client');
  const registry = new Registry();
  require(path.join(root, 'dist/integrations/prometheus.js')).registerStreamMetrics(registry, [...fns, piped]);
  report.metricsOpened = (await registry.metrics())
    .split('\n')
    .filter((line) => line.startsWith('velo_streams_opened_total{'));
  console.log(JSON.stringify(report));
})();
