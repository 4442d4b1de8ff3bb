// npm run bench:http [-- --quick]   (a quick run writes under bench/quick/, see out.mjs)
//
// S9, end to end: an HTTP endpoint that opens a stream per request, feeds it
// the NDJSON body and streams results back (velo-stream), against the same
// endpoint written with a plain async generator and no library, on Node's
// http and on Fastify, driven by autocannon on loopback at 1 and 100
// connections; and `measured`, the plain endpoint with a stream of its own per
// request written by hand (bench/http/endpoints.mjs), to tell what keeping a
// stream per request costs from what the library adds. Each server runs in a
// child process (the load generator has this process's event loop); the
// variants take turns, their order rotating each round, and the medians of
// their requests/s are compared. Each server's CPU time per request (user +
// system, from /proc) is compared too: at 100 connections a server is
// CPU-bound, and its CPU per request does not count the time another tenant
// of the machine takes from it, where requests/s does.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { writeOut } from './out.mjs';
import autocannon from 'autocannon';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const rounds = args.quick ? 2 : 3;
const seconds = args.quick ? 3 : 5;
const SERVER = new URL('./http/server.mjs', import.meta.url).pathname;
const LINES = 10;
const VARIANTS = ['velo', 'plain', 'measured'];
const body = Array.from({ length: LINES }, (_, i) => JSON.stringify({ id: i, amount: i * 1.5 })).join('\n') + '\n';
const expected = Array.from({ length: LINES }, (_, i) => ({ id: i, n: i + 1, mean: (1.5 * i) / 2 }));

async function startServer(framework, variant) {
  const child = spawn(process.execPath, [SERVER, framework, variant], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  for await (const chunk of child.stdout) {
    out += chunk;
    const m = /listening (\d+)/.exec(out);
    if (m) return { child, port: Number(m[1]) };
  }
  throw new Error(`server ${framework}/${variant} did not start: ${out}`);
}

async function checkAnswer(port) {
  const r = await fetch(`http://127.0.0.1:${port}/score`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/x-ndjson' },
  });
  const got = (await r.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  if (r.status !== 200 || JSON.stringify(got) !== JSON.stringify(expected))
    throw new Error(`wrong answer: ${r.status} ${JSON.stringify(got)}`);
}

/** A process's CPU time so far (user + system), µs; from /proc (Linux), else NaN. */
function cpuMicros(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
  } catch {
    return NaN;
  }
}

async function load({ port, child }, connections, duration) {
  const cpu0 = cpuMicros(child.pid);
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/score`,
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body,
    connections,
    duration,
  });
  if (result.errors > 0 || result.non2xx > 0 || result.timeouts > 0)
    throw new Error(`errors ${result.errors}, non-2xx ${result.non2xx}, timeouts ${result.timeouts}`);
  const cpuPerRequest = (cpuMicros(child.pid) - cpu0) / result.requests.total;
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, cpuPerRequest };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = [];
for (const framework of ['http', 'fastify']) {
  const servers = {};
  for (const variant of VARIANTS) {
    servers[variant] = await startServer(framework, variant);
    await checkAnswer(servers[variant].port);
    await load(servers[variant], 10, 1); // warm-up
  }
  for (const connections of [1, 100]) {
    const runs = Object.fromEntries(VARIANTS.map((v) => [v, []]));
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < VARIANTS.length; k++) {
        const variant = VARIANTS[(k + r) % VARIANTS.length];
        runs[variant].push(await load(servers[variant], connections, seconds));
      }
    }
    const row = { framework, connections };
    for (const v of VARIANTS)
      row[v] = {
        rps: median(runs[v].map((x) => x.rps)),
        p50: median(runs[v].map((x) => x.p50)),
        p99: median(runs[v].map((x) => x.p99)),
        cpuPerRequest: median(runs[v].map((x) => x.cpuPerRequest)),
      };
    row.ratio = row.velo.rps / row.plain.rps;
    row.ratioMeasured = row.velo.rps / row.measured.rps;
    // Requests per CPU second, velo-stream / plain: the plain server's CPU per request over velo-stream's.
    row.cpuRatio = row.plain.cpuPerRequest / row.velo.cpuPerRequest;
    results.push(row);
    const show = (v) =>
      `${v} ${row[v].rps.toFixed(0)} req/s (p50 ${row[v].p50} ms, p99 ${row[v].p99} ms, ${row[v].cpuPerRequest.toFixed(1)} µs CPU)`;
    console.log(
      `${framework.padEnd(8)} ${String(connections).padStart(3)} conn: ${VARIANTS.map(show).join(', ')}: ` +
        `velo/plain ${row.ratio.toFixed(3)} (per CPU µs ${row.cpuRatio.toFixed(3)}), velo/measured ${row.ratioMeasured.toFixed(3)}`,
    );
  }
  for (const { child } of Object.values(servers)) {
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    if (code !== 0) throw new Error(`a server exited with ${code}`);
  }
}
console.log(
  `written: ${writeOut('http-results.json', args.quick, JSON.stringify({ rounds, seconds, lines: LINES, results }, null, 2))}`,
);
