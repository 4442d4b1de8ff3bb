// The replay test before a deploy (docs/redis/replay-before-deploy.md): sessions recorded by a real redisWorker on a
// private Redis are exported (exportRecording, velo-replay export), and handlers replayed over them in the
// simulator: the same handler finds no difference; a changed output, a handler that ends sessions elsewhere and a
// longer idleTimeout are each reported as exactly what changed; a file round trip gives the same recording; a
// recording that is not one, or too large, is refused with a stable code, by the API and by the command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { exportRecording, redisProducer, redisWorker } from 'velo-stream/redis';
import { checkRecording, formatReplayReport, parseRecording, replayRecording } from 'velo-stream/testing';
import handlers, { changedOutput, longerIdle, returnsEarly } from './fixtures/replay-handlers.mjs';
import { start } from './helpers/child.mjs';
import { eventually, pendingCount } from './helpers/redis-fixtures.mjs';
import { client, fresh, redis, useRedis } from './helpers/redis-suite.mjs';

useRedis();

const CLI = fileURLToPath(new URL('../dist/replay-cli.js', import.meta.url));
const HANDLERS = fileURLToPath(new URL('./fixtures/replay-handlers.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'velo-replay-'));
const PARTITIONS = 2;

/** What the recorded run was given: entry ids by name, and the function's name. */
const recorded = { name: '', ids: {} };
let recording;

/** Runs velo-replay; its exit status is asserted (`code`), and its stderr is clean but for `expectStderr`. */
async function cli(args, { code = 0, expectStderr } = {}) {
  const child = start([CLI, ...args], { code, timeout: 120_000, expectStderr });
  const { stdout, stderr } = await child.finished();
  if (expectStderr === undefined) assert.equal(stderr, '', 'velo-replay wrote nothing on stderr');
  return { stdout, stderr };
}

/** Records the sessions once, for every test of the file (on its first call). */
let recordingOnce;
const recorded$ = () => (recordingOnce ??= record());
async function record() {
  recorded.name = fresh('carts');
  const worker = redisWorker(handlers, {
    client,
    name: recorded.name,
    partitions: PARTITIONS,
    leaseTtl: 1500,
    // The input kept for the recording (the default trims it to the live sessions' every 5 s), and the ends.
    trimInterval: 0,
    checkReplay: true,
  });
  try {
    const producer = redisProducer({ client, name: recorded.name, partitions: PARTITIONS });
    const [book, gift, pen] = await producer.sendMany([
      ['ada', { item: 'book', price: 10 }],
      ['ada', { item: 'gift', price: 5 }],
      ['ada', { item: 'pen', price: 2 }],
    ]);
    const [bobBook, bobCheckout, bobPen] = await producer.sendMany([
      ['bob', { item: 'book', price: 10 }],
      ['bob', { checkout: true }],
      ['bob', { item: 'pen', price: 2 }],
    ]);
    const [hat] = await producer.sendMany([['cy', { item: 'hat', price: 4 }]]);
    // Past ada's idleTimeout (300 ms): her next item opens a session of its own.
    await new Promise((resolve) => setTimeout(resolve, 800));
    const [cup] = await producer.sendMany([['ada', { item: 'cup', price: 3 }]]);
    Object.assign(recorded.ids, { book, gift, pen, bobBook, bobCheckout, bobPen, hat, cup });
    const ends = async () => {
      let n = 0;
      for (let p = 0; p < PARTITIONS; p++) n += await client.hLen(`velo:{${recorded.name}:p${p}}:ends`);
      return n;
    };
    await eventually(async () => (await ends()) === 5, 'the five sessions ended');
    await eventually(async () => (await pendingCount(client, recorded.name, PARTITIONS)) === 0, 'everything acked');
  } finally {
    await worker.close();
  }
  recording = await exportRecording({ client, name: recorded.name, partitions: PARTITIONS });
}

test('the export holds each partition\'s input, outputs, ends; replaying the recorded handler finds no difference', async () => {
  await recorded$();
  const { ids } = recorded;
  assert.equal(recording.format, 'velo-stream-recording');
  assert.equal(recording.parts.length, PARTITIONS);
  const all = recording.parts.flatMap((p) => p.input.filter((e) => e.v !== undefined && e.wake === undefined));
  assert.deepEqual(all.map((e) => e.id).sort(), Object.values(ids).sort(), 'every event, with its entry id');
  const ada = recording.parts.find((p) => p.input.some((e) => e.id === ids.book && e.key === 'ada'));
  assert.deepEqual(JSON.parse(Buffer.from(ada.input.find((e) => e.id === ids.gift).v, 'base64')), { item: 'gift', price: 5 });
  const ends = recording.parts.flatMap((p) => p.ends).sort((a, b) => (a.sid < b.sid ? -1 : 1));
  assert.deepEqual(ends, [
    { sid: `ada@${ids.book}`, reason: 'idle', last: ids.pen },
    { sid: `ada@${ids.cup}`, reason: 'idle', last: ids.cup },
    { sid: `bob@${ids.bobBook}`, reason: 'return', last: ids.bobCheckout },
    { sid: `bob@${ids.bobPen}`, reason: 'idle', last: ids.bobPen },
    { sid: `cy@${ids.hat}`, reason: 'idle', last: ids.hat },
  ]);
  assert.ok(recording.parts.every((p) => p.endsKept && p.live.length === 0));
  assert.equal(recording.parts.flatMap((p) => p.outputs).length, 8);

  const report = await replayRecording(handlers, recording);
  assert.deepEqual(report.differences, []);
  assert.equal(report.ok, true);
  assert.deepEqual(report.summary, { partitions: 2, events: 8, sessions: 5, same: 5, open: 0, endsKept: 2, empty: 0, differences: 0 });
  assert.deepEqual(report.notReplayable, []);
  assert.deepEqual(report.unverified, []);
  assert.match(formatReplayReport(report), /^OK: 5 recorded sessions in 2 partitions replayed \(8 events\): 5 the same, 0 differences$/);
});

test('a deliberately changed output is reported as exactly that output: its session, seq, recorded and replayed value', async () => {
  await recorded$();
  const report = await replayRecording(changedOutput, recording);
  assert.equal(report.ok, false);
  const p = recording.parts.find((part) => part.input.some((e) => e.key === 'ada')).partition;
  assert.deepEqual(report.differences, [
    {
      kind: 'output',
      partition: p,
      key: 'ada',
      sid: `ada@${recorded.ids.book}`,
      seq: 2,
      recorded: { value: { item: 'gift', price: 5, count: 2 } },
      replayed: { value: { item: 'gift', price: 10, count: 2 } },
    },
  ]);
  assert.equal(report.summary.same, 4);
  assert.deepEqual(await replayRecording(changedOutput, recording), report, 'the same report again: nothing depends on the machine clock');
  assert.match(
    formatReplayReport(report),
    new RegExp(`output p${p} ada@${recorded.ids.book} #2: recorded \\{"item":"gift","price":5,"count":2\\}, replayed \\{"item":"gift","price":10,"count":2\\}`),
  );
});

test('a handler that ends a session early: the end (reason, last input), the session split off and the output it lost', async () => {
  await recorded$();
  const { ids } = recorded;
  const report = await replayRecording(returnsEarly, recording);
  const p = recording.parts.find((part) => part.input.some((e) => e.key === 'ada')).partition;
  const sid = `ada@${ids.book}`;
  assert.deepEqual(report.differences, [
    {
      kind: 'missing-output',
      partition: p,
      key: 'ada',
      sid,
      seq: 3,
      recorded: { value: { item: 'pen', price: 2, count: 3 } },
    },
    {
      kind: 'end',
      partition: p,
      key: 'ada',
      sid,
      recordedEnd: { reason: 'idle', last: ids.pen },
      replayedEnd: { reason: 'return', last: ids.gift },
    },
    { kind: 'split', partition: p, key: 'ada', sid: `ada@${ids.pen}`, within: sid, outputs: 1 },
  ]);
  const text = formatReplayReport(report);
  assert.match(text, new RegExp(`end p${p} ${sid}: recorded idle after ${ids.pen}, replayed return after ${ids.gift}`));
  assert.match(text, new RegExp(`split p${p} ada@${ids.pen}: the replay began a session there, inside recorded session ${sid}`));
});

test('a longer idleTimeout joins two recorded sessions: the later one merged, the earlier one ending after its input', async () => {
  await recorded$();
  const { ids } = recorded;
  const report = await replayRecording(longerIdle, recording);
  const p = recording.parts.find((part) => part.input.some((e) => e.key === 'ada')).partition;
  const sid = `ada@${ids.book}`;
  assert.deepEqual(report.differences, [
    { kind: 'extra-output', partition: p, key: 'ada', sid, seq: 4, replayed: { value: { item: 'cup', price: 3, count: 4 } } },
    { kind: 'end', partition: p, key: 'ada', sid, recordedEnd: { reason: 'idle', last: ids.pen }, replayedEnd: { reason: 'idle', last: ids.cup } },
    { kind: 'merged', partition: p, key: 'ada', sid: `ada@${ids.cup}`, into: sid, outputs: 1 },
  ]);
});

test('since: a recording from that time on; the sessions wholly before it leave no trace, their ends included', async () => {
  await recorded$();
  const { ids } = recorded;
  const since = Number(ids.cup.split('-')[0]);
  const late = await exportRecording({ client, name: recorded.name, partitions: PARTITIONS, since });
  assert.deepEqual(
    late.parts.flatMap((p) => p.ends),
    [{ sid: `ada@${ids.cup}`, reason: 'idle', last: ids.cup }],
    'the ends of the four sessions that began (and ended) before it are left out, as a trim leaves them out',
  );
  const report = await replayRecording(handlers, late);
  assert.equal(report.ok, true);
  assert.equal(report.summary.sessions, 1, "only ada's second session began in it");
  assert.deepEqual(report.notReplayable, [], 'nothing of the sessions before it is in it');
  // The changed output is in a session before it: not in the recording, not reported.
  assert.equal((await replayRecording(changedOutput, late)).ok, true);
  // velo-replay --since: the same time as ms, or as an ISO date-time in another zone (+02:00), the same recording.
  const iso = new Date(since + 2 * 3_600_000).toISOString().replace('Z', '+02:00');
  for (const text of [String(since), iso]) {
    const { stdout } = await cli(['export', '--redis', redis.url, '--name', recorded.name, '--partitions', String(PARTITIONS), '--since', text]);
    assert.deepEqual(JSON.parse(stdout), late, `--since ${text}`);
  }
});

test('keys: a recording of some keys holds only their partitions, events, outputs and sessions', async () => {
  await recorded$();
  const only = await exportRecording({ client, name: recorded.name, partitions: PARTITIONS, keys: ['bob'] });
  assert.equal(only.parts.length, 1);
  assert.deepEqual(new Set(only.parts[0].input.map((e) => e.key)), new Set(['bob']));
  assert.ok(only.parts[0].outputs.every((o) => o.key === 'bob'));
  const report = await replayRecording(returnsEarly, only);
  assert.equal(report.ok, true, formatReplayReport(report));
  assert.equal(report.summary.sessions, 2);
});

test('velo-replay: export to a file and run from it (round trip), from Redis directly, --json; exit 1 on differences', async () => {
  await recorded$();
  const file = join(dir, 'carts.json');
  const exported = await cli(['export', '--redis', redis.url, '--name', recorded.name, '--partitions', String(PARTITIONS), '--out', file]);
  assert.match(exported.stdout, /^recorded 2 partitions, \d+ input entries to /);
  const read = parseRecording(readFileSync(file));
  assert.deepEqual(read, recording, 'the file holds the same recording as the API returned');

  const same = await cli(['run', '--handler', HANDLERS, '--recording', file]);
  assert.match(same.stdout, /^OK: 5 recorded sessions in 2 partitions replayed \(8 events\): 5 the same, 0 differences\n$/);

  const changed = await cli(['run', '--handler', `${HANDLERS}#changedOutput`, '--recording', file, '--json'], { code: 1 });
  const report = JSON.parse(changed.stdout);
  assert.deepEqual(
    report.differences.map((d) => [d.kind, d.sid, d.seq]),
    [['output', `ada@${recorded.ids.book}`, 2]],
  );

  const live = await cli(
    ['run', '--handler', `${HANDLERS}#returnsEarly`, '--redis', redis.url, '--name', recorded.name, '--partitions', '2'],
    { code: 1 },
  );
  assert.match(live.stdout, /^DIFFERENT: 5 recorded sessions .* 3 differences/);
  assert.match(live.stdout, /\n {2}split p\d ada@/);
});

test('recordings that are not one, or too large, are refused with stable codes, naming the field', async () => {
  await recorded$();
  const good = JSON.parse(JSON.stringify(recording));
  const refused = (value, code, message) =>
    assert.throws(() => (typeof value === 'string' ? parseRecording(value) : checkRecording(value)), (error) => {
      assert.equal(error.code, code);
      assert.match(error.message, message);
      return true;
    });
  const edit = (change) => {
    const copy = JSON.parse(JSON.stringify(good));
    change(copy);
    return copy;
  };
  refused('{"format": ', 'ERR_VELO_RECORDING_INVALID', /not JSON/);
  refused('[]', 'ERR_VELO_RECORDING_INVALID', /the recording must be an object/);
  refused(edit((r) => (r.format = 'other')), 'ERR_VELO_RECORDING_INVALID', /format must be "velo-stream-recording"/);
  refused(edit((r) => (r.version = 2)), 'ERR_VELO_RECORDING_INVALID', /version must be 1/);
  refused(
    JSON.stringify(good).replace('{"format"', '{"__proto__":{"polluted":true},"format"'),
    'ERR_VELO_RECORDING_INVALID',
    /__proto__ is not a field of the format/,
  );
  assert.equal({}.polluted, undefined);
  refused(edit((r) => r.parts[0].input.reverse()), 'ERR_VELO_RECORDING_INVALID', /parts\[0\]\.input\[1\]\.id .* must come after the entry before it/);
  refused(edit((r) => (r.parts[0].input[0].v = 'not base64!')), 'ERR_VELO_RECORDING_INVALID', /parts\[0\]\.input\[0\]\.v must be base64/);
  refused(edit((r) => (r.parts[0].input[0].key = '')), 'ERR_VELO_RECORDING_INVALID', /parts\[0\]\.input\[0\]\.key is not a key/);
  refused(edit((r) => (r.parts[0].outputs[0].sid = 'no-at-sign')), 'ERR_VELO_RECORDING_INVALID', /outputs\[0\]\.sid must be a sid/);
  refused(edit((r) => delete r.parts[0].outputs[0].v), 'ERR_VELO_RECORDING_INVALID', /must have either v \(a value\) or error/);
  refused(edit((r) => (r.parts[0].outputs[0].seq = -1)), 'ERR_VELO_RECORDING_INVALID', /seq must be an integer from 1/);
  refused(edit((r) => (r.parts[1].partition = r.parts[0].partition)), 'ERR_VELO_RECORDING_INVALID', /repeats partition/);
  refused(edit((r) => (r.parts[0].partition = 99)), 'ERR_VELO_RECORDING_INVALID', /partition must be an integer from 0 to 1/);
  refused(edit((r) => (r.parts[0].ends[0].last = 'x')), 'ERR_VELO_RECORDING_INVALID', /ends\[0\]\.last must be an entry id, t<n> or empty/);
  refused(edit((r) => (r.parts[0].input[0].id = '1e3-0')), 'ERR_VELO_RECORDING_INVALID', /input\[0\]\.id must be an entry id/);
  assert.throws(() => parseRecording(JSON.stringify(good), { maxBytes: 100 }), { code: 'ERR_VELO_RECORDING_TOO_LARGE' });
  assert.throws(() => checkRecording(good, { maxEntries: 1 }), { code: 'ERR_VELO_RECORDING_TOO_LARGE', message: /more than maxEntries \(1\)/ });
});

test('formatReplayReport refuses what is not a report with ERR_INVALID_ARG_TYPE, naming what is missing', () => {
  const report = { ok: true, summary: { partitions: 0 }, differences: [], notReplayable: [], unverified: [] };
  const refused = (value, message) =>
    assert.throws(() => formatReplayReport(value), (error) => {
      assert.ok(error instanceof TypeError);
      assert.equal(error.code, 'ERR_INVALID_ARG_TYPE');
      assert.match(error.message, message);
      return true;
    });
  refused(undefined, /^formatReplayReport\(\) takes the report replayRecording\(\) resolves with, not type undefined \(undefined\)$/);
  refused({}, /^formatReplayReport\(\) takes the report replayRecording\(\) resolves with: its summary is missing$/);
  refused({ ...report, differences: undefined }, /: its differences is missing$/);
  refused({ ...report, unverified: {} }, /: its unverified is an instance of Object$/);
  // eslint-disable-next-line no-sparse-arrays
  refused({ ...report, notReplayable: [, {}] }, /: its notReplayable\[0\] is missing$/);
  refused({ ...report, differences: [null] }, /: its differences\[0\] is null$/);
});

test('velo-replay refuses a malformed or too large file with its code on stderr and exit status 2', async () => {
  await recorded$();
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{"format":"velo-stream-recording","version":1,"name":"x","partitions":1,"parts":[{"partition":0}]}');
  await cli(['run', '--handler', HANDLERS, '--recording', bad], {
    code: 2,
    expectStderr: /^velo-replay: ERR_VELO_RECORDING_INVALID: Not a recording: parts\[0\]\.from must be a string\n$/,
  });
  const file = join(dir, 'carts-big.json');
  writeFileSync(file, JSON.stringify(recording));
  await cli(['run', '--handler', HANDLERS, '--recording', file, '--max-bytes', '10'], {
    code: 2,
    expectStderr: /^velo-replay: ERR_VELO_RECORDING_TOO_LARGE: .* more than --max-bytes \(10\)\n$/,
  });
  await cli(['run', '--handler', `${HANDLERS}#nothing`, '--recording', file], {
    code: 2,
    expectStderr: /^velo-replay: ERR_INVALID_ARG_VALUE: --handler: .* has no export named "nothing"\n$/,
  });
  // A server address not in a URL's form is refused before any connection (not a host lookup's ENOTFOUND).
  for (const address of ['localhost:6379', 'not a url'])
    await cli(['export', '--redis', address, '--name', 'x'], {
      code: 2,
      expectStderr: new RegExp(`^velo-replay: ERR_INVALID_ARG_VALUE: --redis must be a Redis URL .*, not "${address}"\\n$`),
    });
  // A time of day without its zone would be this machine's local time, not Redis' clock: refused before any connection.
  await cli(['export', '--redis', redis.url, '--name', 'x', '--since', '2024-06-01T00:00:00'], {
    code: 2,
    expectStderr: /^velo-replay: ERR_INVALID_ARG_VALUE: --since: give the time zone of "2024-06-01T00:00:00" \(Z for UTC, or \+hh:mm\)\n$/,
  });
});

test('velo-replay: a TypeScript handler Node cannot load says to add a loader (--import tsx), exit 2; empty partitions are not blamed on checkReplay', async () => {
  await recorded$();
  const file = join(dir, 'carts-ts.json');
  writeFileSync(file, JSON.stringify(recording));
  // (An enum: not loadable by a Node that strips types either.)
  const ts = join(dir, 'handler.ts');
  writeFileSync(ts, "enum Kind { A }\nexport default Kind;\n");
  await cli(['run', '--handler', ts, '--recording', file], {
    code: 2,
    expectStderr:
      /^velo-replay: ERR_INVALID_ARG_VALUE: --handler: Node could not load the TypeScript module .*handler\.ts \(.*\)\. Run velo-replay with a loader: NODE_OPTIONS="--import tsx" velo-replay run \.\.\. \(npm i -D tsx\), or give --handler the compiled \.js\n$/,
  });
  // A partition with nothing recorded (no event, no output) has no ends to keep: the summary says it is empty.
  const padded = join(dir, 'carts-padded.json');
  const empty = { partition: PARTITIONS, from: '0-0', delivered: '0-0', endsKept: false, input: [], outputs: [], ends: [], live: [] };
  writeFileSync(padded, JSON.stringify({ ...recording, partitions: PARTITIONS + 1, parts: [...recording.parts, empty] }));
  const same = await cli(['run', '--handler', HANDLERS, '--recording', padded]);
  assert.match(same.stdout, /^OK: 5 recorded sessions in 3 partitions replayed \(8 events\): 5 the same, 0 differences; 1 empty\n$/);
  // What a loader makes of a .ts module in a CommonJS package: its exports under `default`, marked __esModule.
  const cjs = join(dir, 'handler-compiled.cjs');
  const velo = JSON.stringify(createRequire(import.meta.url).resolve('velo-stream'));
  writeFileSync(
    cjs,
    `const { streamFn } = require(${velo});\nexports.__esModule = true;\nexports.default = streamFn(async function* (events) { for await (const e of events) yield e; });\n`,
  );
  const onlyEmpty = join(dir, 'empty.json');
  writeFileSync(onlyEmpty, JSON.stringify({ ...recording, partitions: 1, parts: [{ ...empty, partition: 0 }] }));
  const compiled = await cli(['run', '--handler', cjs, '--recording', onlyEmpty]);
  assert.match(compiled.stdout, /^OK: 0 recorded sessions in 1 partitions replayed \(0 events\): 0 the same, 0 differences; 1 empty\n$/);
});
