// The suite's own guards can fail: `npm run test:js` fails when a test file
// writes to stderr (a warning, a panic message), and the child-process and
// worker helpers reject every way a child can end badly. Scenarios run in
// child processes, so their warnings never reach this suite's output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, runWorker, start } from './helpers/child.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The test:js script of package.json, as arguments of node, aimed at `file` instead of __test__/. */
function testJsArgs(file) {
  const script = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts['test:js'];
  const [command, ...args] = script.split(' ');
  assert.equal(command, 'node');
  assert.equal(args.at(-1), '__test__/', 'test:js ends with the test directory');
  return [...args.slice(0, -1), file];
}

/** Runs test:js over one test file with `body`, in a temporary directory. */
async function testJsOver(body, options) {
  const dir = mkdtempSync(join(tmpdir(), 'velo-clean-output-'));
  try {
    const file = join(dir, 'scenario.test.mjs');
    writeFileSync(file, `import { test } from 'node:test';\n${body}\n`);
    // Without the variable by which the runner tells a test file it runs
    // under `node --test` (a nested run would skip its files).
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    return await run(testJsArgs(file), { cwd: root, env, ...options });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const FAILED = /FAILED: test output must be clean, but 1 test file\(s\) wrote to stderr:[\s\S]*/;

test('test:js fails when a passing test prints a warning, and shows it', async () => {
  const { stdout, stderr } = await testJsOver(
    `import { EventEmitter } from 'node:events';
     test('leaks listeners', () => {
       const e = new EventEmitter();
       for (let i = 0; i < 11; i++) e.on('x', () => {});
     });`,
    { code: 1, expectStderr: FAILED },
  );
  assert.match(stdout, /pass 1/);
  assert.match(stdout, /fail 0/);
  assert.match(stderr, /scenario\.test\.mjs\n\(node:\d+\) MaxListenersExceededWarning/);
});

test('test:js fails on text written straight to fd 2 (as a native panic is)', async () => {
  const { stderr } = await testJsOver(
    `import { writeSync } from 'node:fs';
     test('prints like a Rust panic', () => {
       writeSync(2, "thread '<unnamed>' panicked at src/lib.rs:1:1:\\n");
     });`,
    { code: 1, expectStderr: FAILED },
  );
  assert.match(stderr, /panicked at src\/lib\.rs/);
});

test('test:js passes a clean test file, with nothing on stderr', async () => {
  const { stdout, stderr } = await testJsOver(`test('clean', () => {});`);
  assert.match(stdout, /pass 1/);
  assert.equal(stderr, '');
});

test('the child helper rejects a bad exit code, a signal, unclean stderr and a hang', async () => {
  await assert.rejects(run(['-e', 'process.exitCode = 3']), /exit code/);
  await assert.rejects(run(['-e', "process.kill(process.pid, 'SIGKILL')"]), /killed by SIGKILL/);
  await assert.rejects(run(['-e', "process.emitWarning('careful')"]), /unclean stderr[\s\S]*Warning: careful/);
  await assert.rejects(run(['-e', "console.error('thread main panicked')"]), /unclean stderr/);
  await assert.rejects(run(['-e', 'setInterval(() => {}, 1000)'], { timeout: 300 }), /still running after 300 ms/);
  // What a test provokes on purpose is allowed, and only that.
  await run(['-e', "console.error('expected: Warning: x')"], { expectStderr: /expected: Warning: x\n/ });
  await assert.rejects(
    run(['-e', "console.error('expected: Warning: x'); process.emitWarning('other')"], { expectStderr: /expected: Warning: x\n/ }),
    /unclean stderr/,
  );
  await assert.rejects(run(['-e', '0'], { expectStderr: /something/ }), /expected stderr not found/);
  const child = start(['-e', "console.log('ready'); process.stdin.resume().on('end', () => {})"]);
  assert.equal((await child.waitFor(/ready/))[0], 'ready');
  child.child.stdin.end();
  await child.finished();
  await assert.rejects(start(['-e', '0']).waitFor(/never/), /ended before printing/);
});

test('the worker helper rejects an error event, a bad exit code and unclean stderr', async () => {
  const worker = (code) => runWorker(code, { eval: true });
  assert.deepEqual(await worker("require('node:worker_threads').parentPort.postMessage(1)"), [1]);
  await assert.rejects(worker("throw new Error('boom')"), /worker emitted errors/);
  await assert.rejects(worker('process.exit(2)'), /worker exit code/);
  await assert.rejects(worker("process.emitWarning('careful')"), /unclean stderr/);
  await assert.rejects(runWorker('setInterval(() => {}, 1000)', { eval: true, timeout: 300 }), /still running after 300 ms/);
});
