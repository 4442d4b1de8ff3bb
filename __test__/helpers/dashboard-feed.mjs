// A dashboard's page and feed as the tests reach them: a server on a free port of 127.0.0.1, and the SSE feed read
// sample by sample.
import assert from 'node:assert/strict';
import http from 'node:http';

/** Serves `handler` on a free port: `base` its URL, `root` the same with its `/`, `url` its feed's, `close()` stops it (open connections too). */
export async function listen(handler) {
  const server = http.createServer(handler);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  return { server, base, root: `${base}/`, url: `${base}/feed`, close: () => closeServer(server) };
}

/** The fleet route's view under `root` (a URL ending in `/`), asserted a 200 with a JSON body. */
export async function fleetView(root) {
  const res = await fetch(`${root}fleet`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  return res.json();
}

/** The first sample of a feed at `url`, read through fetch; the connection is cancelled after it. */
export async function firstSample(url) {
  const res = await fetch(url);
  const reader = res.body.getReader();
  let text = '';
  while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
  await reader.cancel();
  return JSON.parse(text.slice(text.indexOf('data: ') + 6, text.indexOf('\n\n')));
}

export function closeServer(server) {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(resolve));
}

/** A feed connection: `next()` resolves with the next sample; `close()` disconnects. */
export function openFeed(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      const samples = [];
      const waiting = [];
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
        let at;
        while ((at = text.indexOf('\n\n')) >= 0) {
          const block = text.slice(0, at);
          text = text.slice(at + 2);
          const data = block.split('\n').find((l) => l.startsWith('data: '));
          if (data === undefined) continue;
          const sample = JSON.parse(data.slice(6));
          if (waiting.length) waiting.shift()(sample);
          else samples.push(sample);
        }
      });
      res.on('error', () => {});
      resolve({
        status: res.statusCode,
        headers: res.headers,
        // A sample comes every interval: one not there within 10 s is a failure, not a hang.
        next: () =>
          samples.length
            ? Promise.resolve(samples.shift())
            : new Promise((resolve, fail) => {
                const timer = setTimeout(() => fail(new Error('no sample within 10 s')), 10_000);
                waiting.push((sample) => (clearTimeout(timer), resolve(sample)));
              }),
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}
