// An HTTP server process for the resumable-stream tests: `GET /sse/<key>` serves that key's outputs with
// redisSse (heartbeat and retry on, as in production). Args: url name partitions. Prints `listening <port>`;
// at the end of its stdin it closes its HTTP server and its Redis client, prints `closed` and lets the process
// end by itself: a reader, a timer or a connection left behind by redisSse would keep it running.
import { createServer } from 'node:http';
import { createClient } from 'redis';
import { redisSse } from 'velo-stream/redis';

const [url, name, partitions] = process.argv.slice(2);
const client = createClient({ url });
client.on('error', (error) => console.log(`redis error ${error.message}`));
await client.connect();
const served = [];
const server = createServer((req, res) => {
  const key = decodeURIComponent(req.url.split('/')[2] ?? '');
  served.push(redisSse(req, res, { client, name, partitions: Number(partitions), key, heartbeat: 200, retry: 50 }));
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.stdin.resume();
process.stdin.on('end', async () => {
  server.close();
  await Promise.all(served);
  await client.close();
  console.log(`closed ${served.length}`);
  process.stdin.pause();
});
