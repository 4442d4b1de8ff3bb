// Micro-experiments: redis-server instructions (callgrind) per output / per entry for candidate command shapes.
// Candidates for the Redis tier's commit and read, not the product's code paths (BENCHMARKS.md, "The drain's Redis CPU").
// CALLGRIND_OUT=<dir> VELO_REDIS_SERVER=<wrapper> node bench/redis-commit-shapes.mjs [outputsPerCommit=320] [sessions=62]
//   [commits=32] [only=comma list]
// The wrapper runs `valgrind --tool=callgrind --callgrind-out-file=<dir>/callgrind.out.%p /usr/bin/redis-server "$@"`
// (and `/usr/bin/redis-server --version` for --version); the counts are zeroed before each experiment and dumped after
// it (callgrind_control), and read from the dump's `summary:` line.
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
const require = createRequire(import.meta.url);
const repo = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const { startRedis } = await import(`${repo}/__test__/helpers/redis-server.mjs`);
const { RedisLog, KeySpace } = require(`${repo}/dist/redis/log/redis-log.js`);
const { createClient, RESP_TYPES } = require(`${repo}/node_modules/redis`);

const [B = 320, S = 62, C = 32] = process.argv.slice(2, 5).map(Number);
const only = process.argv[5] ? new Set(process.argv[5].split(',')) : null;
const OUT = process.env.CALLGRIND_OUT;
if (!OUT || !process.env.VELO_REDIS_SERVER) throw new Error('set CALLGRIND_OUT and VELO_REDIS_SERVER (a callgrind wrapper of redis-server)');
const BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.MAP]: Array } };

const redis = await startRedis();
const pid = String(redis.pid);
const client = await redis.client();
const cmd = (args, opts) => client.sendCommand(args, opts);
const results = [];

async function dumpSummary(label) {
  for (let t = 0; t < 200; t++) {
    const found = findDump(label);
    if (found !== undefined) return found;
    await sleep(100);
  }
  throw new Error(`no dump ${label}`);
}
function findDump(label) {
  for (const f of readdirSync(OUT).filter((f) => f.startsWith(`callgrind.out.${pid}.`))) {
    const text = readFileSync(`${OUT}/${f}`, 'utf8');
    if (text.includes(`Trigger: dump ${label}\n`) && /^totals: /m.test(text)) return Number(/^summary: (\d+)/m.exec(text)[1]);
  }
  return undefined;
}
let seqNo = 0;
async function measure(name, units, fn) {
  if (only && !only.has(name) && !only.has(name.split(':')[0])) return;
  const label = `${++seqNo}-${name.replace(':', '-')}`;
  console.error(execFileSync('callgrind_control', ['-z', pid]).toString().trim());
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  console.error(execFileSync('callgrind_control', [`--dump=${label}`, pid]).toString().trim());
  const ir = await dumpSummary(label);
  const r = { name, units, ir, perUnit: Math.round(ir / units), ms: Math.round(ms) };
  results.push(r);
  console.log(`${name.padEnd(34)} ${String(r.perUnit).padStart(7)} Ir/unit  (${units} units, ${ir} Ir, ${r.ms} ms)`);
}

// Idle cost of the measuring window (serverCron while the client waits on callgrind_control).
await measure('idle:1s', 1, () => sleep(1000));

// ---- commit shapes ------------------------------------------------------------------------------
const sids = Array.from({ length: S }, (_, i) => `k${i}@1764270000000-${i}`);
const keysOf = Array.from({ length: S }, (_, i) => `k${i}`);
// One commit's outputs: B outputs round-robin over the S sessions, each session's seq rising over all commits.
const seqs = new Array(S).fill(0);
function commitOutputs() {
  const outs = [];
  for (let j = 0; j < B; j++) {
    const s = j % S;
    const seq = ++seqs[s];
    outs.push({ s, sid: sids[s], key: keysOf[s], seq, payload: JSON.stringify({ total: seq * 7 + 123456 }) });
  }
  return outs;
}
function resetSeqs() {
  seqs.fill(0);
}
const units = B * C;

// today's commit through RedisLog (a partition of its own, a lease taken)
async function veloLog(name) {
  const keys = new KeySpace(name);
  const log = new RedisLog(client, keys, 1, () => {});
  const lease = await log.acquire(0, 'w1', 3_600_000);
  return { keys, log, lease };
}
function placeOf(seq) {
  return `${seq} ${seq} ${seq * 2}`;
}

{
  const { log, lease } = await veloLog('today');
  // warm: the script loaded
  resetSeqs();
  await log.commit(lease, { outputs: [], acks: [], ended: [], serial: 0, ids: false });
  await measure('commit:lua-today', units, async () => {
    for (let c = 0; c < C; c++) {
      const outputs = commitOutputs().map((o) => ({ sid: o.sid, key: o.key, seq: o.seq, payload: o.payload, place: { seq: o.seq, inputs: o.seq, position: o.seq * 2 } }));
      await log.commit(lease, { outputs, acks: [], ended: [], serial: c + 1, ids: false });
    }
  });
  const hwLen = await cmd(['HLEN', 'velo:{today:p0}:hw']);
  const outLen = await cmd(['XLEN', 'velo:{today:p0}:out']);
  console.log(`  today: hw fields ${hwLen}, outputs ${outLen}`);
}

// naive: pipelined XADD k v to one output stream
{
  resetSeqs();
  await measure('commit:naive-xadd-pipeline', units, async () => {
    for (let c = 0; c < C; c++) {
      const outs = commitOutputs();
      await Promise.all(outs.map((o) => cmd(['XADD', 'naive:{n}:out', '*', 'k', o.key, 'v', o.payload])));
    }
  });
}

// velo's fields, plain pipelined XADDs, no marks
{
  resetSeqs();
  await measure('commit:plain-xadd4-pipeline', units, async () => {
    for (let c = 0; c < C; c++) {
      const outs = commitOutputs();
      await Promise.all(outs.map((o) => cmd(['XADD', 'velo:{plain:p0}:out', '*', 'sid', o.sid, 'seq', String(o.seq), 'k', o.key, 'v', o.payload])));
    }
  });
}

// marks: one HSET per commit, owner-computed (sid -> seq, "sid p" -> place)
function marksArgs(outs, withPlace = true) {
  const last = new Map();
  for (const o of outs) last.set(o.sid, o.seq);
  const args = [];
  for (const [sid, seq] of last) {
    args.push(sid, String(seq));
    if (withPlace) args.push(`${sid} p`, placeOf(seq));
  }
  return args;
}

// candidate 1: WATCH epoch + GET lease, then MULTI [XADD x B, HSET hw] EXEC on a dedicated connection
async function multiCandidate(name, { watchKey, withPlace = true, fields = 4, watch = true, marks = true, multi: useMulti = true, hwFill = 0 }) {
  const { keys, lease } = await veloLog(name);
  const dedicated = client.duplicate();
  dedicated.on('error', () => {});
  await dedicated.connect();
  const out = keys.output(0);
  const hw = keys.hw(0);
  const watched = watchKey === 'epoch' ? keys.epoch(0) : keys.lease(0);
  if (hwFill > 0) await cmd(['HSET', hw, ...Array.from({ length: hwFill }, (_, i) => [`filler${i}@1764270000000-0`, '1']).flat()]);
  resetSeqs();
  let aborted = 0;
  await measure(`commit:${name}`, units, async () => {
    for (let c = 0; c < C; c++) {
      const outs = commitOutputs();
      // the fence: WATCH, then the lease read (its reply is awaited before the transaction is sent)
      if (watch) {
        const [, holder] = await Promise.all([dedicated.sendCommand(['WATCH', watched]), dedicated.sendCommand(['GET', keys.lease(0)])]);
        if (String(holder) !== lease.token) throw new Error('fenced');
      }
      if (!useMulti) {
        const calls = outs.map((o) => dedicated.sendCommand(['XADD', out, '*', 'sid', o.sid, 'seq', String(o.seq), 'k', o.key, 'v', o.payload]));
        if (marks) calls.push(dedicated.sendCommand(['HSET', hw, ...marksArgs(outs, withPlace)]));
        await Promise.all(calls);
        continue;
      }
      const multi = dedicated.multi();
      for (const o of outs) {
        if (fields === 4) multi.addCommand(['XADD', out, '*', 'sid', o.sid, 'seq', String(o.seq), 'k', o.key, 'v', o.payload]);
        else multi.addCommand(['XADD', out, '*', 'o', `${o.sid} ${o.seq}`, 'v', o.payload]);
      }
      if (marks) multi.addCommand(['HSET', hw, ...marksArgs(outs, withPlace)]);
      try {
        await multi.exec();
      } catch (e) {
        aborted++;
        throw e;
      }
    }
  });
  await dedicated.destroy();
  if (aborted) console.log(`  ${name}: ${aborted} aborted`);
}
await multiCandidate('multi-watch-epoch', { watchKey: 'epoch' });
await multiCandidate('multi-watch-epoch-noplace', { watchKey: 'epoch', withPlace: false });
await multiCandidate('multi-nowatch', { watchKey: 'epoch', watch: false });
await multiCandidate('multi-nowatch-nomarks', { watchKey: 'epoch', watch: false, marks: false });
await multiCandidate('pipeline-xadd4-hset', { watchKey: 'epoch', watch: false, multi: false });
await multiCandidate('pipeline-xadd4-hset-noplace', { watchKey: 'epoch', watch: false, multi: false, withPlace: false });
await multiCandidate('multi-watch-epoch-hwtable', { watchKey: 'epoch', hwFill: 200 });
await multiCandidate('multi-watch-epoch-2fields', { watchKey: 'epoch', fields: 2 });

// candidate 2: a minimal fenced Lua commit (marks computed by the owner): XADD per output, one HSET
const LUA_MIN = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('VELO_FENCED') end
local n = tonumber(ARGV[2])
local i = 3
for _ = 1, n do
  redis.call('XADD', KEYS[2], '*', 'sid', ARGV[i], 'seq', ARGV[i + 1], 'k', ARGV[i + 2], 'v', ARGV[i + 3])
  i = i + 4
end
redis.call('HSET', KEYS[3], unpack(ARGV, i + 1, i + tonumber(ARGV[i])))
return n
`;
// the same, outputs pre-packed per session: ARGV sid, key, count, then count x (seq, v)
const LUA_PACKED = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('VELO_FENCED') end
local m = tonumber(ARGV[2])
local i = 3
local call = redis.call
local out = KEYS[2]
for _ = 1, m do
  local sid, key, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  for _ = 1, n do
    call('XADD', out, '*', 'sid', sid, 'seq', ARGV[i], 'k', key, 'v', ARGV[i + 1])
    i = i + 2
  end
end
call('HSET', KEYS[3], unpack(ARGV, i + 1, i + tonumber(ARGV[i])))
return m
`;
const LUA_PCALL = LUA_MIN.replace("redis.call('XADD'", "redis.pcall('XADD'");
const LUA_RESP3 = 'redis.setresp(3)\n' + LUA_MIN;
// the loop alone: ARGV walked, no call (the interpreter's share)
const LUA_LOOP_ONLY = LUA_MIN.replace("redis.call('XADD', KEYS[2], '*', 'sid', ARGV[i], 'seq', ARGV[i + 1], 'k', ARGV[i + 2], 'v', ARGV[i + 3])", "local a, b, c, d = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]");
// the call with its arguments but a cheap command (the redis.call overhead with 10 args)
const LUA_CALL_ECHO = LUA_MIN.replace("redis.call('XADD', KEYS[2], '*', 'sid', ARGV[i], 'seq', ARGV[i + 1], 'k', ARGV[i + 2], 'v', ARGV[i + 3])", "redis.call('ECHO', ARGV[i])");

async function luaCandidate(name, source, { packed = false, fcall = false, noplace = false } = {}) {
  const { keys, lease } = await veloLog(name);
  const K = [keys.lease(0), keys.output(0), keys.hw(0)];
  let sha;
  if (fcall) {
    const body = source.replace(/KEYS/g, 'keys').replace(/ARGV/g, 'args').replace(/unpack\(args/g, 'unpack(args');
    const lib = `#!lua name=velo_${name.replace(/-/g, '_')}\nredis.register_function('commit_${name.replace(/-/g, '_')}', function(keys, args)\n${body}\nend)`;
    await cmd(['FUNCTION', 'LOAD', 'REPLACE', lib]);
  } else sha = String(await cmd(['SCRIPT', 'LOAD', source]));
  resetSeqs();
  await measure(`commit:${name}`, units, async () => {
    for (let c = 0; c < C; c++) {
      const outs = commitOutputs();
      const args = [lease.token];
      if (packed) {
        const bySession = new Map();
        for (const o of outs) {
          let l = bySession.get(o.s);
          if (!l) bySession.set(o.s, (l = []));
          l.push(o);
        }
        args.push(String(bySession.size));
        for (const [s, l] of bySession) {
          args.push(sids[s], keysOf[s], String(l.length));
          for (const o of l) args.push(String(o.seq), o.payload);
        }
      } else {
        args.push(String(outs.length));
        for (const o of outs) args.push(o.sid, String(o.seq), o.key, o.payload);
      }
      const marks = marksArgs(outs, !noplace);
      args.push(String(marks.length), ...marks);
      if (fcall) await cmd(['FCALL', `commit_${name.replace(/-/g, '_')}`, '3', ...K, ...args]);
      else await cmd(['EVALSHA', sha, '3', ...K, ...args]);
    }
  });
}
await luaCandidate('lua-min', LUA_MIN);
await luaCandidate('lua-min-noplace', LUA_MIN, { noplace: true });
await luaCandidate('lua-packed', LUA_PACKED, { packed: true });
await luaCandidate('lua-pcall', LUA_PCALL);
await luaCandidate('lua-resp3', LUA_RESP3);
await luaCandidate('fcall-min', LUA_MIN, { fcall: true });
await luaCandidate('lua-loop-only', LUA_LOOP_ONLY);
await luaCandidate('lua-call-echo', LUA_CALL_ECHO);

// ---- reads, per entry ----------------------------------------------------------------------------
const E = B * C; // entries
async function fillInput(keys) {
  const input = keys.input(0);
  for (let i = 0; i < E; i += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, E - i) }, (_, j) => cmd(['XADD', input, '*', 'k', `k${(i + j) % 1000}`, 'v', JSON.stringify({ n: i + j })])),
    );
  }
}
const READ = 1000;
{
  const { keys } = await veloLog('rx');
  await fillInput(keys);
  const input = keys.input(0);
  await measure('read:xread-cursor', E, async () => {
    let from = '0-0';
    for (;;) {
      const r = await cmd(['XREAD', 'COUNT', String(READ), 'STREAMS', input, from], BUFFERS);
      if (!r) break;
      const entries = r[1];
      if (entries.length === 0) break;
      from = entries[entries.length - 1][0].toString();
      if (entries.length < READ) break;
    }
  });
  await measure('read:xrange-cursor', E, async () => {
    let from = '-';
    for (;;) {
      const entries = await cmd(['XRANGE', input, from, '+', 'COUNT', String(READ)], BUFFERS);
      if (entries.length === 0) break;
      from = `(${entries[entries.length - 1][0].toString()}`;
      if (entries.length < READ) break;
    }
  });
}
async function groupRead(name, noack) {
  const { keys, lease } = await veloLog(name);
  await fillInput(keys);
  const input = keys.input(0);
  const fence = keys.fence(0, lease.token.slice(lease.token.lastIndexOf(':') + 1));
  const ids = [];
  await measure(`read:${name}`, E, async () => {
    for (;;) {
      const args = ['XREADGROUP', 'GROUP', 'velo', 'owner', 'COUNT', String(READ)];
      if (noack) args.push('NOACK');
      const r = await cmd([...args, 'STREAMS', fence, input, '>', '>'], BUFFERS);
      if (!r) break;
      let entries = [];
      for (let j = 0; j + 1 < r.length; j += 2) if (r[j].toString() === input) entries = r[j + 1];
      for (const e of entries) ids.push(e[0].toString());
      if (entries.length < READ) break;
    }
  });
  if (!noack) {
    await measure('ack:xack-1000', ids.length, async () => {
      for (let i = 0; i < ids.length; i += 1000) await cmd(['XACK', input, 'velo', ...ids.slice(i, i + 1000)]);
    });
  }
  return ids.length;
}
console.log(`  xreadgroup entries ${await groupRead('xreadgroup-fenced', false)}`);
await groupRead('xreadgroup-noack', true);

// naive: one XREAD over 1000 streams, COUNT 100
{
  const names = Array.from({ length: 1000 }, (_, i) => `naive:{r}:s:k${i}`);
  for (let i = 0; i < E; i += 1000) {
    await Promise.all(Array.from({ length: Math.min(1000, E - i) }, (_, j) => cmd(['XADD', names[(i + j) % 1000], '*', 'v', JSON.stringify({ n: i + j })])));
  }
  await measure('read:naive-xread-1000-streams', E, async () => {
    const last = names.map(() => '0-0');
    let got = 0;
    while (got < E) {
      const r = await cmd(['XREAD', 'COUNT', '100', 'STREAMS', ...names, ...last], BUFFERS);
      for (let j = 0; j + 1 < r.length; j += 2) {
        const idx = names.indexOf(r[j].toString());
        const entries = r[j + 1];
        got += entries.length;
        last[idx] = entries[entries.length - 1][0].toString();
      }
    }
  });
}

console.log(JSON.stringify({ B, S, C, results }));
client.destroy();
await redis.stop();
process.exit(0);
