// Runs the Node test suite (__test__/, node:test files) under Bun or Deno:
//
//   node scripts/test-runtime.mjs bun  [file...]    (npm run test:bun)
//   node scripts/test-runtime.mjs deno [file...]    (npm run test:deno)
//
// The runtimes are the exact versions pinned in package.json's
// devDependencies (`bun`, `deno`: the npm packages that carry their
// binaries), so `npm ci` installs them; nothing is downloaded here. Each test
// file runs in its own `bun test` / `deno test` process (as `node --test`
// runs each in its own process), one after another. The last line is the
// summary: files, tests passed, failed, skipped, known failures.
//
// Exit code 0 when every test of the runtime's suite passed or is a known
// failure listed below (with its reason); 1 when any other test failed, a
// file crashed or timed out, or the runtime is missing.
//
// Harness shims (not library changes): Bun has no `--expose-gc`, so the
// tests' `global.gc()` is `Bun.shrink()` then `Bun.gc(true)` there (a full
// collection through which no pending JIT compilation holds objects: see
// scripts/runtime-shims/bun-gc.mjs, preloaded); Deno gets `--v8-flags=--expose-gc`. Bun's `bun test` has a
// 5 s per-test default, raised to node --test's 300 s as in `npm run test:js`.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

// Files left out of a runtime's suite, each with why. A file here tests
// something of Node itself (or of this repository's Node tooling), not what
// the library does on that runtime.
const COMMON_EXCLUDED = {
  'install.test.mjs': 'packs the package with npm and installs it offline: packaging, not the runtime',
  'package.test.mjs': 'the lockfile, npm engines and the npm/ platform packages: packaging, not the runtime',
  'declarations.test.mjs': 'rebuilds the addon with the napi CLI and diffs native/index.d.ts: the build, not the runtime',
  'clean-output.test.mjs': "runs `npm run test:js` on sample files: Node's own test runner and reporters, not the library",
  'valkey-runner.test.mjs':
    "checks how scripts/test-valkey.mjs (a Node tool of this repository: npm run test:valkey runs under Node) finds or installs Valkey, through `node -e` children: the repository's tooling, not the library",
  'paper.test.mjs':
    "the paper benchmark's server and client compare process.hrtime() across two processes; Bun's and Deno's hrtime count from their own process's start, so the penalty is not a fraction: bench/'s clock, not the library",
};

const SIGNALS =
  "starts Redis worker processes and stops them by signals (SIGTERM hand-off, kill -9, SIGSTOP/SIGCONT); under Deno's node:child_process they are reported killed by SIGTERM or process.kill fails with ESRCH: Node's child-process semantics, which the harness checks";
const INPUT_TYPE =
  "starts `node --input-type=module -e` children (process.execPath is deno), which Deno's node:child_process runs as a script, not a module: `import` is a SyntaxError there";

const SUITES = {
  bun: {
    command: 'bun',
    args: (file) => ['test', '--timeout', '300000', '--preload', './scripts/runtime-shims/bun-gc.mjs', `./${file}`],
    excluded: {
      ...COMMON_EXCLUDED,
    },
    // Tests of included files expected to fail on this runtime: file -> { test name: why }. None on Bun: what
    // Bun cannot do is refused with ERR_VELO_RUNTIME_UNSUPPORTED, and the tests assert that there
    // (docs/runtimes.md).
    known: {},
  },
  deno: {
    command: 'deno',
    // A `skipped` test is left out by --filter (it hangs, so a failure would cost the file's other tests).
    args: (file, skipped) => [
      'test',
      '--allow-all',
      '--no-check',
      '--v8-flags=--expose-gc',
      ...(skipped.length ? ['--filter', notStartingWith(skipped)] : []),
      `./${file}`,
    ],
    excluded: {
      ...COMMON_EXCLUDED,
      'redis-bounds.test.mjs': SIGNALS,
      'redis-call-timeout.test.mjs': SIGNALS,
      'redis-cluster.test.mjs': SIGNALS,
      'redis-server-helper.test.mjs': SIGNALS,
      'redis-faults.test.mjs': SIGNALS,
      'redis-join.test.mjs': SIGNALS,
      'redis-limiter-failures.test.mjs': SIGNALS,
      'redis-limiter-fleet.test.mjs': SIGNALS,
      'redis-partition.test.mjs': SIGNALS,
      'redis-restart.test.mjs': SIGNALS,
      'redis-resume-faults.test.mjs': SIGNALS,
      'redis-soak.test.mjs': SIGNALS,
      'redis-throw-crash.test.mjs': SIGNALS,
      'conformance/exit.test.mjs': INPUT_TYPE,
    },
    known: {
      'api.test.mjs': { 'a Rust panic surfaces as a JS error and the process carries on': INPUT_TYPE },
      'worker-delivery.test.mjs': {
        'transfer: true: reads waiting for transferred output buffers keep the process alive until they arrive (child processes)':
          INPUT_TYPE,
        "cancel(reason): the worker handler's ctx.signal.reason is the reason, cloned (an error rebuilt with its class and code; an uncloneable reason as a documented Error)":
          "Deno ends the test with 'Promise resolution is still pending but the event loop has already resolved': a read waiting on a worker stream does not keep Deno's event loop alive",
      },
      'worker-fn.test.mjs': {
        'cancel, break and an abort signal stop the handler on its thread (finally runs, ctx.signal aborts)':
          "as cancel(reason) in worker-delivery: 'Promise resolution is still pending but the event loop has already resolved'",
        'worker threads never keep the process alive; a read waiting for a worker does': INPUT_TYPE,
      },
      'worker-lifecycle.test.mjs': {
        'close() cancels the open streams, refuses new ones with StreamClosedError, and resolves once its threads have exited':
          "counts the process's OS threads: Deno's terminated Worker threads are not all gone when close() resolves (11, not 9)",
        'a module that never loads does not keep the process alive past its loadTimeout (child process)': INPUT_TYPE,
        'Symbol.asyncDispose closes too': 'as close() above (passes in some runs)',
        'a thread that hosts no stream stops after threadIdleTimeout; the next stream starts a new one':
          'as close() above: the stopped thread is not always seen to exit (passes in some runs)',
        'close() waits for a thread already stopping as idle whose handler never finishes (terminated 5 s after its stop began)':
          'as close() above: counts OS threads, and a terminated Deno Worker thread is not gone when close() resolves',
        'workerFns used once and dropped release their threads once collected (as Jest module copies and hot reload make them)':
          "counts OS threads: 40 Deno Workers added 8 threads (8 -> 16), so the test's premise (a thread per Worker) does not hold",
        'a thread that cannot start (new Worker() refused) fails each stream with WorkerCrashedError and frees its slot; in a pipe, the pipe fails':
          "Deno's Worker ignores resourceLimits: the 100 GB stack the test asks for, to make the system refuse the thread, does not stop it starting",
      },
      'tracing.test.mjs': {
        'without a registered tracer provider nothing is traced, and the handler sees the context of its open()': INPUT_TYPE,
      },
      'conformance/gc.test.mjs': {
        'worker transfer | generator: a read that alone references its stream settles across collections':
          'failed in one of two runs (that one under CPU load from a concurrent Bun run), not investigated further',
      },
      'conformance/values.test.mjs': {
        'worker: a send made after a refused event settles in a script that does nothing else (in-process it rejects at once)':
          INPUT_TYPE,
      },
      'exit.test.mjs': {
        'a pipe left open after its output was read lets the process exit at once, for every kind of stage at every position':
          "a `node -e` child holding an open task|generator pipe is still running after 10 s under Deno: something keeps Deno's event loop alive that does not keep Node's (not investigated further)",
      },
      'http-backpressure.test.mjs': {
        'ndjson: thousands of backpressure waits leave no listener behind, no warning':
          "asserts that Node's http res.write() returns false at every output; Deno's returns false less often, so there are fewer waits (every output still arrives, checked first)",
        'sse: thousands of backpressure waits leave no listener behind, no warning': 'as ndjson',
      },
      'examples.test.mjs': {
        'worker HTTP example: uploads processed in-process and on worker threads give whole, correct results; its server children exit cleanly':
          'the example stops its server children by a signal; under Deno they end by the signal (exit null), not with code 0',
        'Redis feature store: per-user rolling features in hashes, on a private redis-server or on REDIS_URL (its keys removed after)':
          SIGNALS,
        'Redis fraud cluster: HTTP gateway + two worker processes, one killed -9 mid-run, a replacement joins: outputs identical to a crash-free run, every child gone':
          SIGNALS,
        'Redis fraud cluster gateway: 202 for JSON and NDJSON once Redis has them; 400, 413 (declared and streamed), 415, 404, 405 with a code and nothing written; 503 ERR_VELO_LAG_LIMIT at maxLag':
          SIGNALS,
      },
    },
    // Tests not run at all (they hang on this runtime): file -> { test name: why }.
    skipped: {
      'worker-fn.test.mjs': {
        'a thread that runs out of memory (resourceLimits) fails its streams with WorkerCrashedError, and the function goes on with a new thread':
          "Deno's Worker ignores resourceLimits: the thread allocates until the file's timeout",
      },
    },
  },
};

const TIMEOUT = 600_000; // per file

/**
 * A `deno test --filter` regex matching every test name but the one given.
 * Deno's filter is a Rust regex, which has no lookahead, so it says "does not
 * start with the name": at some position, the name's text so far, then another character.
 */
function notStartingWith(names) {
  if (names.length !== 1) throw new Error('one skipped test per file (a Rust regex cannot intersect two exclusions)');
  const [text] = names;
  const esc = (t) => t.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const alternatives = [...text].map((ch, i) => `${esc(text.slice(0, i))}[^${ch.replace(/[\]\\^-]/g, '\\$&')}]`);
  return `/^(?:${alternatives.join('|')})/`;
}

const name = process.argv[2];
const suite = SUITES[name];
if (!suite) {
  console.error(`usage: node scripts/test-runtime.mjs <${Object.keys(SUITES).join('|')}> [test file...]`);
  process.exit(2);
}

const binary = join(root, 'node_modules', '.bin', suite.command);
const probe = existsSync(binary) ? spawnSync(binary, ['--version'], { encoding: 'utf8' }) : null;
if (!probe || probe.status !== 0) {
  console.error(
    [
      '',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      `!!! ${suite.command} is NOT INSTALLED: ${binary} ${probe ? `fails (exit ${probe.status}): ${probe.stderr}` : 'does not exist'}`,
      `!!! It comes from the npm package "${suite.command}" (package.json devDependencies), whose`,
      '!!! postinstall script links the platform binary: run `npm ci` without --ignore-scripts.',
      `!!! NO TEST RAN UNDER ${suite.command.toUpperCase()}.`,
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '',
    ].join('\n'),
  );
  process.exit(1);
}
const version = probe.stdout.split('\n')[0].trim();

function allFiles() {
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.test.mjs')) files.push(path);
    }
  };
  walk('__test__');
  return files.sort();
}

const excludedName = (file) => relative('__test__', file);
const chosen = process.argv.slice(3).map((f) => relative(root, join(process.cwd(), f)));
const files = chosen.length > 0 ? chosen : allFiles().filter((f) => !(excludedName(f) in suite.excluded));

/** Per-test outcomes from a runtime's output: { passed: [names], failed: [names], skipped: count }. */
function parse(text) {
  // eslint-disable-next-line no-control-regex
  const output = text.replace(/\x1b\[[0-9;]*m/g, '');
  const passed = [];
  const failed = [];
  let skipped = 0;
  if (name === 'bun') {
    // (After its last test, bun repeats the failed ones under "N tests failed:".)
    for (const line of output.split('\n')) {
      if (/^\d+ tests? failed:$/.test(line)) break;
      const m = /^\((pass|fail|skip|todo)\) (.*?)(?: \[[\d.]+m?s\])?$/.exec(line);
      if (!m) continue;
      if (m[1] === 'pass') passed.push(m[2]);
      else if (m[1] === 'fail') failed.push(m[2]);
      else skipped++;
    }
  } else {
    // Deno: `name ... ok (3ms)`, `name ... FAILED (3ms)`, `name ... ignored (0ms)`.
    for (const line of output.split('\n')) {
      const m = /^(.*?) \.\.\. (ok|FAILED|ignored)(?: \(.*\))?$/.exec(line);
      if (!m) continue;
      if (m[2] === 'ok') passed.push(m[1]);
      else if (m[2] === 'FAILED') failed.push(m[1]);
      else skipped++;
    }
  }
  // The runtime's own count of failures: one not attributed to a test (an uncaught error between tests) is a failure too.
  const counted = name === 'bun' ? /^\s*(\d+) fail$/m.exec(output) : /^(?:ok|FAILED) \| \d+ passed \| (\d+) failed/m.exec(output);
  const unnamed = Math.max(0, Number(counted?.[1] ?? 0) - failed.length);
  for (let i = 0; i < unnamed; i++) failed.push('(a failure not attributed to a test: see the output)');
  return { passed, failed, skipped };
}

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(binary, suite.args(file, Object.keys(suite.skipped?.[excludedName(file)] ?? {})), {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (t) => (output += t));
    child.stderr.setEncoding('utf8').on('data', (t) => (output += t));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, TIMEOUT);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ file, code, signal, timedOut, output, seconds: (Date.now() - started) / 1000 });
    });
  });
}

const totals = { files: 0, passed: 0, failed: 0, skipped: 0, known: 0, broken: 0 };
const unexpected = [];
const started = Date.now();
console.log(
  `${version}: ${files.length} test files (${Object.keys(suite.excluded).length} excluded, see scripts/test-runtime.mjs)`,
);
for (const file of files) {
  const result = await runFile(file);
  const parsed = parse(result.output);
  const { passed, failed } = parsed;
  const skipped = parsed.skipped + Object.keys(suite.skipped?.[excludedName(file)] ?? {}).length;
  const known = suite.known[excludedName(file)] ?? {};
  const knownFailed = failed.filter((t) => t in known);
  const newFailed = failed.filter((t) => !(t in known));
  // A file that exits non-zero with no failed test in its output crashed (or timed out).
  const broken = result.timedOut || (result.code !== 0 && newFailed.length === 0 && knownFailed.length === 0);
  totals.files++;
  totals.passed += passed.length;
  totals.failed += newFailed.length;
  totals.skipped += skipped;
  totals.known += knownFailed.length;
  if (broken) totals.broken++;
  const status = broken
    ? result.timedOut
      ? 'TIMED OUT'
      : `CRASHED (exit ${result.code ?? result.signal})`
    : newFailed.length
      ? 'FAIL'
      : 'ok';
  const knownNote = knownFailed.length ? `, ${knownFailed.length} known failure(s)` : '';
  console.log(
    `${status.padEnd(9)} ${file}: ${passed.length} passed, ${newFailed.length} failed, ${skipped} skipped${knownNote} (${result.seconds.toFixed(1)} s)`,
  );
  for (const t of newFailed) console.log(`          failed: ${t}`);
  if (broken || newFailed.length) unexpected.push(result);
}
for (const result of unexpected) {
  console.log(`\n----- output of ${result.file} -----\n${result.output.trimEnd()}\n`);
}
const seconds = Math.round((Date.now() - started) / 1000);
console.log(
  `\n${name} summary (${version}): ${totals.files} files, ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped, ` +
    `${totals.known} known failures, ${totals.broken} files crashed or timed out, in ${seconds} s`,
);
process.exitCode = totals.failed > 0 || totals.broken > 0 ? 1 : 0;
