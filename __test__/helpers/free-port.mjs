// A free TCP port on 127.0.0.1 for the private servers the tests start (postgres-server.mjs, redis-server.mjs).
import { createServer } from 'node:net';

/** A port that was free a moment ago (a server started on it retries on another if it was taken meanwhile). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}
