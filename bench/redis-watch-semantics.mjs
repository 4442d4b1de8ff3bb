// What a WATCH on a partition's lease or epoch key sees of the lease scripts (a private redis-server on a free port):
// node bench/redis-watch-semantics.mjs (BENCHMARKS.md, "The drain's Redis CPU").
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
const require = createRequire(import.meta.url);
const repo = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const { startRedis } = await import(`${repo}/__test__/helpers/redis-server.mjs`);
const { RedisLog, KeySpace } = require(`${repo}/dist/redis/log/redis-log.js`);
const redis = await startRedis();
const client = await redis.client();
const keys = new KeySpace('w');
const log = new RedisLog(client, keys, 1, (e) => console.error(e));
const tx = client.duplicate(); tx.on('error', () => {}); await tx.connect();

async function attempt(label, watchKey, between) {
  await tx.sendCommand(['WATCH', watchKey]);
  await between();
  const m = tx.multi().addCommand(['XADD', keys.output(0), '*', 'sid', 's', 'seq', '1', 'k', 'k', 'v', '1']);
  let outcome;
  try { outcome = JSON.stringify(await m.exec()); } catch (e) { outcome = `ABORTED (${e.constructor.name})`; }
  console.log(`${label.padEnd(62)} -> ${outcome.slice(0, 40)}`);
}
let lease = await log.acquire(0, 'w1', 2000);
await attempt('WATCH lease, nothing between', keys.lease(0), async () => {});
await attempt('WATCH lease, a renewal between (renew.lua)', keys.lease(0), () => log.renew(lease, 2000));
await attempt('WATCH epoch, a renewal between', keys.epoch(0), () => log.renew(lease, 2000));
await attempt('WATCH epoch, a takeover between (lease expires, acquire.lua)', keys.epoch(0), async () => {
  await sleep(2100);
  lease = await log.acquire(0, 'w2', 2000);
});
await attempt('WATCH lease, it expires between (no takeover)', keys.lease(0), () => sleep(2100));
lease = await log.acquire(0, 'w3', 2000);
await attempt('WATCH epoch, lease expires between (no takeover)', keys.epoch(0), () => sleep(2100));
lease = await log.acquire(0, 'w4', 60000);
await attempt('WATCH epoch, release (release.lua) between', keys.epoch(0), () => log.release(lease));
lease = await log.acquire(0, 'w5', 60000);
await attempt('WATCH lease, a commit.lua of the owner between', keys.lease(0), () =>
  log.commit(lease, { outputs: [{ sid: 'x', key: 'x', seq: 1, payload: '1' }], acks: [], ended: [], serial: 1, ids: false }));
await attempt('WATCH epoch+lease: renewal between', keys.lease(0), () => log.renew(lease, 60000));
console.log('server', redis.server.text);
await tx.destroy();
await log.close();
client.destroy();
await redis.stop();
