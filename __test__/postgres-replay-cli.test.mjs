// `velo-replay export --postgres` (and `run --postgres`) on a private postgres: sessions run by a real
// postgresWorker are exported by the CLI, in a child process (exit status and a clean stderr asserted), to a file
// (or stdout) that equals what postgresRecording returns; the bounds flags bound it as on Redis; `run` reads the
// same recording from Postgres directly. `pg` is loaded only for --postgres: without it the CLI says so with
// ERR_VELO_PEER_MISSING.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { postgresProducer, postgresRecording, postgresWorker } from 'velo-stream/postgres';
import handlers from './fixtures/replay-handlers.mjs';
import { start } from './helpers/child.mjs';
import { eventually } from './helpers/redis-fixtures.mjs';
import { pool, postgres, usePostgres } from './helpers/postgres-suite.mjs';

usePostgres();

const CLI = fileURLToPath(new URL('../dist/replay-cli.js', import.meta.url));
const HANDLERS = fileURLToPath(new URL('./fixtures/replay-handlers.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'velo-pg-replay-cli-'));
const SCHEMA = 'velo_cli';
const PARTITIONS = 2;
const NAME = `carts-${process.pid}`;
/** A node-postgres connection string of the file's postgres. */
const url = () => `postgresql://${postgres.config.user}@${postgres.config.host}:${postgres.config.port}/${postgres.config.database}`;

/** Runs velo-replay in a child; its exit status is asserted (`code`), and its stderr is clean but for `expectStderr`. */
async function cli(args, { code = 0, expectStderr, nodeArgs = [] } = {}) {
  const child = start([...nodeArgs, CLI, ...args], { code, timeout: 120_000, expectStderr });
  const { stdout, stderr } = await child.finished();
  if (expectStderr === undefined) assert.equal(stderr, '', 'velo-replay wrote nothing on stderr');
  return stdout;
}

let recorded;
/** Four carts' sessions run by a postgresWorker (checkReplay: their ends are kept), recorded once for the file. */
const record = () =>
  (recorded ??= (async () => {
    const shared = { pool: pool(), schema: SCHEMA, name: NAME, partitions: PARTITIONS };
    const errors = [];
    const worker = postgresWorker(handlers, { ...shared, leaseTtl: 1500, trimInterval: 0, checkReplay: true, onError: (e) => errors.push(e) });
    try {
      await postgresProducer(shared).sendMany([
        ['ada', { item: 'book', price: 10 }],
        ['ada', { item: 'pen', price: 2 }],
        ['bob', { item: 'book', price: 10 }],
        ['bob', { checkout: true }],
        ['bob', { item: 'pen', price: 2 }],
        ['cy', { item: 'hat', price: 4 }],
      ]);
      const count = async (table) =>
        Number((await pool().query(`SELECT count(*)::int AS n FROM ${SCHEMA}.${table} WHERE fn = $1`, [NAME])).rows[0].n);
      await eventually(async () => (await count('ends')) === 4 && (await count('pending')) === 0, 'four sessions ended, all acked', 60_000);
    } finally {
      await worker.close();
    }
    assert.deepEqual(errors, []);
    return { shared, recording: await postgresRecording(shared) };
  })());

test('velo-replay export --postgres writes the recording postgresRecording returns: to a file, to stdout, one partition, keys', async () => {
  const { shared, recording } = await record();
  assert.equal(recording.parts.length, PARTITIONS);
  const file = join(dir, 'carts.json');
  const base = ['export', '--postgres', url(), '--schema', SCHEMA, '--name', NAME, '--partitions', String(PARTITIONS)];
  const said = await cli([...base, '--out', file]);
  assert.match(said, /^recorded 2 partitions, \d+ input entries to .*carts\.json\n$/);
  assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), recording);
  assert.deepEqual(JSON.parse(await cli(base)), recording, 'to stdout');
  const bob = await postgresRecording({ ...shared, only: [0, 1], keys: ['bob'] });
  assert.ok(bob.parts.some((p) => p.input.length > 0));
  assert.deepEqual(JSON.parse(await cli([...base, '--partition', '0', '--partition', '1', '--key', 'bob'])), bob);
  const since = await postgresRecording({ ...shared, since: 86_400_000 });
  assert.deepEqual(JSON.parse(await cli([...base, '--since', '1970-01-02T00:00:00Z'])), since, '--since, an ISO time');
});

test('velo-replay export --postgres: the bounds refuse a larger recording (ERR_VELO_RECORDING_TOO_LARGE, exit 2); a wrong schema or mixed sources exit 2', async () => {
  await record();
  const base = ['export', '--postgres', url(), '--schema', SCHEMA, '--name', NAME, '--partitions', String(PARTITIONS)];
  await cli([...base, '--max-entries', '1'], { code: 2, expectStderr: /^velo-replay: ERR_VELO_RECORDING_TOO_LARGE: .*\n$/ });
  await cli([...base, '--max-outputs', '1'], { code: 2, expectStderr: /^velo-replay: ERR_VELO_RECORDING_TOO_LARGE: .*\n$/ });
  // --max-bytes bounds the file written (as it bounds a file read by run): none is written past it.
  const size = Buffer.byteLength(JSON.stringify((await record()).recording));
  const file = join(dir, 'bounded.json');
  await cli([...base, '--max-bytes', String(size - 1), '--out', file], {
    code: 2,
    expectStderr: new RegExp(`^velo-replay: ERR_VELO_RECORDING_TOO_LARGE: the recording is ${size} bytes, more than --max-bytes \\(${size - 1}\\)\\n$`),
  });
  assert.equal(existsSync(file), false);
  await cli([...base, '--max-bytes', String(size), '--out', file]);
  assert.equal(readFileSync(file, 'utf8').length, size);
  await cli(['export', '--postgres', url(), '--schema', 'Bad', '--name', NAME], {
    code: 2,
    expectStderr: /^velo-replay: ERR_INVALID_ARG_VALUE: .*"schema" option.*\n$/,
  });
  await cli(['export', '--postgres', url(), '--redis', 'redis://127.0.0.1:1', '--name', NAME], {
    code: 2,
    expectStderr: /^velo-replay: ERR_INVALID_ARG_VALUE: give either --redis or --postgres, not both\n$/,
  });
  await cli(['export', '--redis', 'redis://127.0.0.1:1', '--schema', SCHEMA, '--name', NAME], {
    code: 2,
    expectStderr: /^velo-replay: ERR_INVALID_ARG_VALUE: --schema goes with --postgres\n$/,
  });
  await cli(['export', '--postgres', url()], { code: 2, expectStderr: /^velo-replay: ERR_INVALID_ARG_VALUE: --name is required with --postgres\n$/ });
  // Not a connection string: refused before any connection (not a host lookup's ENOTFOUND).
  await cli(['export', '--postgres', 'not a url', '--name', NAME], {
    code: 2,
    expectStderr: /^velo-replay: ERR_INVALID_ARG_VALUE: --postgres must be a connection string .*, not "not a url"\n$/,
  });
  // A schema the database does not have (a mistyped --schema) is refused, for export and run: not an empty OK.
  const absent = /^velo-replay: ERR_INVALID_ARG_VALUE: --schema: the database has no schema "velo_absent" .*\n$/;
  await cli(['export', '--postgres', url(), '--schema', 'velo_absent', '--name', NAME], { code: 2, expectStderr: absent });
  await cli(['run', '--handler', HANDLERS, '--postgres', url(), '--schema', 'velo_absent', '--name', NAME], { code: 2, expectStderr: absent });
  // A function never recorded in a schema that exists is an empty recording, as documented.
  assert.match(await cli(['run', '--handler', HANDLERS, '--postgres', url(), '--schema', SCHEMA, '--name', 'never-recorded']), /^OK: 0 recorded sessions/);
});

test('velo-replay run --postgres replays the handler over the sessions read from Postgres: exit 0 unchanged, 1 changed', async () => {
  await record();
  const from = ['--postgres', url(), '--schema', SCHEMA, '--name', NAME, '--partitions', String(PARTITIONS)];
  assert.match(await cli(['run', '--handler', HANDLERS, ...from]), /^OK: 4 recorded sessions in 2 partitions replayed .*0 differences\n$/);
  await cli(['run', '--handler', `${HANDLERS}#returnsEarly`, ...from], { code: 1 });
});

test('without the package pg, --postgres exits 2 with ERR_VELO_PEER_MISSING (pg is loaded only when asked: --help runs)', async () => {
  // A loader hook that finds no `pg`, as in a project that did not install it.
  const hooks = `export async function resolve(specifier, context, next) {
    if (specifier === 'pg') throw Object.assign(new Error("Cannot find package 'pg'"), { code: 'ERR_MODULE_NOT_FOUND' });
    return next(specifier, context);
  }`;
  const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
  const nodeArgs = ['--import', `data:text/javascript,${encodeURIComponent(register)}`];
  await cli(['export', '--postgres', url(), '--name', NAME], {
    code: 2,
    nodeArgs,
    expectStderr: /^velo-replay: ERR_VELO_PEER_MISSING: --postgres needs the package "pg" \(node-postgres\) installed: Cannot find package 'pg'\n$/,
  });
  assert.match(await cli(['--help'], { nodeArgs }), /--postgres <connection string>/);
});
