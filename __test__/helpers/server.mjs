// A plain node:http server on 127.0.0.1 for the integration tests, and real
// clients that can stop reading or disconnect at a chosen moment.
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';

export function listen(handler) {
  return new Promise((resolve) => {
    const server = createServer(handler);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        server,
        port,
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections?.();
            server.close(r);
          }),
      });
    });
  });
}

/** Polls `check` (sync) every few ms until true, or fails after `ms`. */
export async function until(check, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Rejects if `promise` has not settled after `ms` (a guard against hangs, not a timing assertion). */
export function deadline(promise, ms, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/**
 * A GET (or other) request on its own connection (no keep-alive agent), so
 * that `destroy()` closes the socket as a client that leaves would. Its body
 * is counted as it arrives (`client.text`); `client.response` resolves with
 * the response, `client.closed` when the socket has closed. Errors from the
 * disconnect itself are expected and recorded, never thrown.
 */
export function client(url, { method = 'GET', headers = {}, body } = {}) {
  const req = request(url, { method, headers, agent: false });
  const c = { req, text: '', errors: [], res: undefined };
  req.on('error', (e) => c.errors.push(e));
  c.closed = new Promise((resolve) => req.once('close', resolve));
  c.response = new Promise((resolve) => {
    req.once('response', (res) => {
      c.res = res;
      res.setEncoding('utf8');
      res.on('data', (s) => (c.text += s));
      res.on('error', (e) => c.errors.push(e));
      resolve(res);
    });
  });
  if (body !== undefined) req.end(body);
  else if (method === 'GET') req.end();
  c.destroy = () => req.destroy();
  return c;
}

/**
 * A raw HTTP/1.1 request written on a TCP socket: `head` is sent as given,
 * then `sendBody(socket)` may write the body at its own pace. Resolves with
 * everything the server sent until it closed the connection.
 */
export function rawExchange(port, head, sendBody) {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const parts = [];
    let failure;
    socket.on('data', (b) => parts.push(b));
    socket.on('error', (e) => (failure = e));
    socket.on('close', () => resolve({ text: Buffer.concat(parts).toString('utf8'), error: failure, socket }));
    socket.once('connect', () => {
      socket.write(head);
      Promise.resolve(sendBody?.(socket)).catch(reject);
    });
  });
}

/**
 * A raw TCP connection to 127.0.0.1:`port`, resolved once connected: what the server sends goes to `onText` as
 * latin1 text, socket errors are swallowed (the test reads the outcome), and `closed` resolves when it closes.
 */
export async function rawConnection(port, onText) {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.setEncoding('latin1');
  socket.on('data', onText);
  socket.on('error', () => {});
  const closed = new Promise((resolve) => socket.on('close', resolve));
  return { socket, closed };
}

/** Records process warnings (MaxListenersExceededWarning and the like) until `stop()`. */
export function recordWarnings() {
  const seen = [];
  const onWarning = (w) => seen.push(w);
  process.on('warning', onWarning);
  return { seen, stop: () => process.off('warning', onWarning) };
}
