// velo-replay's flags checked before any connection, and a server it cannot reach: `--since` takes ms since the
// epoch (a whole number) or an ISO 8601 date-time with its zone, and refuses every other form (Date.parse would
// read them as this machine's local time, or roll an impossible day over) with exit 2 and the forms it takes; a
// Redis address nothing listens on exits 2 at once with the connection's error, as a Postgres one does (node-redis
// would reconnect without end). No server is started: the addresses are of a port found closed. `run --max-bytes`
// bounds a recording read from a pipe: refused at the first byte past the bound, never read to the pipe's end.
// `--handler` takes a path with a `#` in it, and a module that throws while loading exits 2 with a code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { start } from './helpers/child.mjs';
import { freePort } from './helpers/free-port.mjs';

const CLI = fileURLToPath(new URL('../dist/replay-cli.js', import.meta.url));
const HANDLER = fileURLToPath(new URL('./fixtures/replay-handlers.mjs', import.meta.url));
/** A recording of no session, as a file's text. */
const EMPTY_RECORDING = JSON.stringify({ format: 'velo-stream-recording', version: 1, name: 'x', partitions: 1, parts: [] });

/** Runs velo-replay; exit status 2 and stderr matching `expected` asserted. Its stderr. */
async function fails(args, expected, timeout = 20_000) {
  const child = start([CLI, ...args], { code: 2, timeout, expectStderr: expected });
  return (await child.finished()).stderr;
}

const FORMS =
  /must be ms since the epoch \(a whole number\) or an ISO 8601 time with its zone \(2024-06-01T00:00:00Z, 2024-06-01T02:00:00\+02:00\)/;

test('--since: forms Date.parse would read as local time, a negative number, an impossible date: refused, exit 2, saying the forms taken', async () => {
  const closed = `redis://127.0.0.1:${await freePort()}`;
  const refused = (text, why) =>
    fails(
      ['export', '--redis', closed, '--name', 'x', `--since=${text}`],
      new RegExp(`^velo-replay: ERR_INVALID_ARG_VALUE: --since.*\\n$`),
    ).then((stderr) => assert.match(stderr, why, text));
  for (const text of [
    'Sat, 28 Nov 2026 02:39:26',
    '2026/11/28 02:39:26',
    '11/28/2026 02:39:26',
    'November 28, 2026 02:39:26',
    '-5',
    '1.5',
    '2026-11-28',
    '2026-11-28 02:39:26Z',
    '2026-11-28T02:39:26+0100',
    'yesterday',
  ])
    await refused(text, FORMS);
  await refused('2026-11-28T02:39:26', /give the time zone of "2026-11-28T02:39:26" \(Z for UTC, or \+hh:mm\)/);
  for (const text of [
    '2026-02-30T00:00:00Z',
    '2026-02-29T00:00:00Z',
    '2026-13-01T00:00:00Z',
    '2026-11-28T24:00:00Z',
    '2026-11-28T02:60:00Z',
    '2026-11-28T02:39:26+01:60',
  ])
    await refused(text, /is no time of the calendar/);
  await refused('1969-12-31T23:59:59Z', /is before 1970/);
});

test('--since: ms and ISO date-times with their zone are taken (the command goes on to connect: to a closed port, exit 2 with ECONNREFUSED)', async () => {
  const closed = `redis://127.0.0.1:${await freePort()}`;
  for (const text of [
    '0',
    '1780000000000',
    '2026-11-28T02:39:26Z',
    '2024-02-29T00:00:00.123Z',
    '2026-11-28T02:39+01:00',
    '2026-11-28T02:39:26.5-05:30',
  ])
    await fails(
      ['export', '--redis', closed, '--name', 'x', '--since', text],
      /^velo-replay: ECONNREFUSED: connect ECONNREFUSED 127\.0\.0\.1:\d+\n$/,
    );
});

test('a Redis address nothing listens on: export and run exit 2 at once with the connection error (no reconnecting)', async () => {
  const closed = `redis://127.0.0.1:${await freePort()}`;
  const handler = fileURLToPath(new URL('./fixtures/replay-handlers.mjs', import.meta.url));
  for (const args of [
    ['export', '--redis', closed, '--name', 'x', '--partitions', '1'],
    ['run', '--handler', handler, '--redis', closed, '--name', 'x', '--partitions', '1'],
  ]) {
    const began = performance.now();
    // (The child's own deadline: killed past it, the test fails.)
    await fails(args, /^velo-replay: ECONNREFUSED: connect ECONNREFUSED 127\.0\.0\.1:\d+\n$/, 15_000);
    assert.ok(performance.now() - began < 10_000, `${args[0]} exited at its first failed connection`);
  }
});

test('run --max-bytes bounds what is read from a pipe: refused at the first byte past the bound, never read to its end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'velo-replay-args-'));
  const fifo = join(dir, 'recording.fifo');
  execFileSync('mkfifo', [fifo]);
  // Opened for reading and writing: the open does not wait for a reader, and the pipe never ends while it is open,
  // so only a read that stops at the bound lets the command exit.
  const writer = await open(fifo, 'r+');
  try {
    await writer.write(Buffer.alloc(4096, 0x20));
    await fails(
      ['run', '--handler', HANDLER, '--recording', fifo, '--max-bytes', '1000'],
      /^velo-replay: ERR_VELO_RECORDING_TOO_LARGE: .*recording\.fifo holds 1001 bytes or more, more than --max-bytes \(1000\)\n$/,
    );
  } finally {
    await writer.close();
  }
  // A pipe of exactly --max-bytes is read whole and replayed; one byte less is refused by the same rule.
  const file = join(dir, 'empty.json');
  writeFileSync(file, EMPTY_RECORDING);
  const size = Buffer.byteLength(EMPTY_RECORDING);
  const piped = (maxBytes) => [
    '-c',
    'cat "$1" | "$2" "$3" run --handler "$4" --recording /dev/stdin --max-bytes "$5"',
    'sh',
    file,
    process.execPath,
    CLI,
    HANDLER,
    String(maxBytes),
  ];
  const ok = await start(piped(size), { command: 'sh', timeout: 20_000 }).finished();
  assert.equal(ok.stdout, 'OK: 0 recorded sessions in 0 partitions replayed (0 events): 0 the same, 0 differences\n');
  assert.equal(ok.stderr, '');
  await start(piped(size - 1), {
    command: 'sh',
    code: 2,
    timeout: 20_000,
    expectStderr: new RegExp(
      `^velo-replay: ERR_VELO_RECORDING_TOO_LARGE: /dev/stdin holds ${size} bytes or more, more than --max-bytes \\(${size - 1}\\)\\n$`,
    ),
  }).finished();
});

test('--handler: a path with a # is the module when a file is there; else the text after its last # names the export', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'velo-replay-args-'));
  const nested = join(dir, 'dir#1');
  mkdirSync(nested);
  const module = join(nested, 'cart.mjs');
  writeFileSync(module, `export { default, changedOutput } from ${JSON.stringify(pathToFileURL(HANDLER).href)};\n`);
  const recording = join(dir, 'empty.json');
  writeFileSync(recording, EMPTY_RECORDING);
  const OK = 'OK: 0 recorded sessions in 0 partitions replayed (0 events): 0 the same, 0 differences\n';
  for (const spec of [module, `${module}#default`, `${module}#changedOutput`]) {
    const { stdout, stderr } = await start([CLI, 'run', '--handler', spec, '--recording', recording], {
      timeout: 20_000,
    }).finished();
    assert.equal(stdout, OK, spec);
    assert.equal(stderr, '', spec);
  }
  await fails(
    ['run', '--handler', `${module}#nothing`, '--recording', recording],
    /^velo-replay: ERR_INVALID_ARG_VALUE: --handler: .*dir#1\/cart\.mjs has no export named "nothing"\n$/,
  );
});

test('--handler: a module that throws while loading exits 2 with a code, whatever it threw', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'velo-replay-args-'));
  const recording = join(dir, 'empty.json');
  writeFileSync(recording, EMPTY_RECORDING);
  const thrower = (name, statement) => {
    const path = join(dir, name);
    writeFileSync(path, `${statement}\nexport default 1;\n`);
    return path;
  };
  const cases = [
    [
      thrower('string.mjs', "throw 'a string';"),
      /^velo-replay: ERR_INVALID_ARG_VALUE: --handler: the module .*string\.mjs threw while loading: a string\n$/,
    ],
    [
      thrower('number.mjs', 'throw 42;'),
      /^velo-replay: ERR_INVALID_ARG_VALUE: --handler: the module .*number\.mjs threw while loading: 42\n$/,
    ],
    [
      thrower('null-proto.mjs', 'throw Object.create(null);'),
      /^velo-replay: ERR_INVALID_ARG_VALUE: --handler: the module .*null-proto\.mjs threw while loading: an instance of Object\n$/,
    ],
    [
      thrower('plain-error.mjs', "throw new RangeError('boom');"),
      /^velo-replay: ERR_INVALID_ARG_VALUE: --handler: the module .*plain-error\.mjs threw while loading: RangeError: boom\n$/,
    ],
    // An error with a code of its own keeps it.
    [thrower('coded.mjs', "throw Object.assign(new Error('boom'), { code: 'E_MINE' });"), /^velo-replay: E_MINE: boom\n$/],
  ];
  for (const [path, expected] of cases) await fails(['run', '--handler', path, '--recording', recording], expected);
});
