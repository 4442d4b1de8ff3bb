// The two S9 endpoints (bench/http/server.mjs serves them, bench/http/inprocess.mjs
// calls them without a socket): POST /score takes an NDJSON body, runs a small
// stateful per-request computation over its lines (a running sum and a count),
// and streams one NDJSON line back per input line. `velo` uses velo-stream (a
// stream per request, ndjsonEvents + sendNdjson); `plain` is the same endpoint
// as a careful user writes it with no library: line splitting with an async
// generator, JSON per line, res.write with 'drain' backpressure. `measured`
// is the plain endpoint with a stream of its own per request written by hand
// (baseline (f) of bench/baselines.mjs: bounded both ways with a pump, the
// counts, each line's queue wait and an idle deadline), what velo-stream's
// stream keeps, to tell its cost from the library's.
import { once } from 'node:events';
import { streamFn } from 'velo-stream';
import { ndjsonEvents, sendNdjson } from 'velo-stream/http';
import { RESOLVED, openMeasured } from '../baselines.mjs';

async function* scoring(events) {
  let sum = 0;
  let n = 0;
  for await (const e of events) {
    sum += e.amount;
    n++;
    yield { id: e.id, n, mean: sum / n };
  }
}

/** The velo endpoint's stream function (parts.mjs opens it too). */
export const score = streamFn(
  scoring,
  // `IDLE_TIMEOUT=<ms>` in the environment: that `idleTimeout` (0: no idle clock), to measure what the clock costs a request.
  { maxConcurrent: 10_000, ...(process.env.IDLE_TIMEOUT === undefined ? {} : { idleTimeout: Number(process.env.IDLE_TIMEOUT) }) },
);

/** NDJSON lines of a request body, parsed (the plain variant's reader). */
async function* lines(req) {
  let rest = '';
  req.setEncoding('utf8');
  for await (const chunk of req) {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      if (line.trim() !== '') yield JSON.parse(line);
    }
  }
  if (rest.trim() !== '') yield JSON.parse(rest);
}

export async function plain(req, res) {
  res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8' });
  let sum = 0;
  let n = 0;
  try {
    for await (const e of lines(req)) {
      sum += e.amount;
      n++;
      if (!res.write(JSON.stringify({ id: e.id, n, mean: sum / n }) + '\n')) await once(res, 'drain');
    }
  } catch (error) {
    res.write(JSON.stringify({ error: { message: error.message } }) + '\n');
  }
  res.end();
}

export async function velo(req, res) {
  await sendNdjson(res, score.open().feed(ndjsonEvents(req)));
}

export async function measured(req, res) {
  res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8' });
  const { queue, outputs } = openMeasured(scoring);
  void (async () => {
    try {
      for await (const e of lines(req)) {
        const p = queue.send(e);
        if (p !== RESOLVED) await p;
      }
      queue.end();
    } catch (error) {
      queue.fail(error);
    }
  })();
  try {
    for await (const o of outputs) {
      if (!res.write(JSON.stringify(o) + '\n')) await once(res, 'drain');
    }
  } catch (error) {
    res.write(JSON.stringify({ error: { message: error.message } }) + '\n');
  }
  res.end();
}
