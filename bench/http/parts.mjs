// Variants of the S9 endpoint, for measuring a request's cost part by part
// (`node bench/http/inprocess.mjs <variant> N` under callgrind; the slope
// between two N is the cost per request). Each differs from its neighbour in
// one part, so the difference of two slopes is that part's cost:
//   plain        -> parsed   the request's parser: ndjsonEvents instead of the plain generator
//   parsed       -> streamed the stream: opened, fed by the parser, read by a plain for-await loop writing each line
//   streamed     -> velo     the writer: sendNdjson instead of that loop
import { once } from 'node:events';
import { ndjsonEvents } from 'velo-stream/http';
import { score } from './endpoints.mjs';

/** The plain endpoint's loop, with ndjsonEvents as its reader. */
export async function parsed(req, res) {
  res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8' });
  let sum = 0;
  let n = 0;
  try {
    for await (const e of ndjsonEvents(req)) {
      sum += e.amount;
      n++;
      if (!res.write(JSON.stringify({ id: e.id, n, mean: sum / n }) + '\n')) await once(res, 'drain');
    }
  } catch (error) {
    res.write(JSON.stringify({ error: { message: error.message } }) + '\n');
  }
  res.end();
}

/** The stream of the velo endpoint, read by the plain endpoint's writing loop. */
export async function streamed(req, res) {
  res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8' });
  try {
    for await (const o of score.open().feed(ndjsonEvents(req))) {
      if (!res.write(JSON.stringify(o) + '\n')) await once(res, 'drain');
    }
  } catch (error) {
    res.write(JSON.stringify({ error: { message: error.message } }) + '\n');
  }
  res.end();
}
