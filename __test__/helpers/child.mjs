// Child processes and worker threads for the tests, each with a deadline, and
// checked the same way whenever one ends: it ended by itself (no signal, no
// kill at the deadline), with the expected exit code, and nothing on its
// stderr that says something went wrong (a Rust panic, an abort, a Node
// warning). A crash at exit (a SIGABRT after the last line of output) or a
// warning in a child is otherwise invisible to the test that started it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';

/** Text that must never appear on a child's or a worker's stderr. */
export const UNCLEAN = [/panicked/, /Thread Local Storage/, /Abort/, /Warning:/, /MaxListenersExceeded/, /DeprecationWarning/];

/**
 * Fails if `stderr` holds any UNCLEAN text. `expected`: a pattern that
 * `stderr` must match (a message the test provokes on purpose); the matched
 * text is removed before the check, so anything else is still caught.
 */
export function assertCleanStderr(stderr, what, expected) {
  let rest = stderr;
  if (expected) {
    assert.match(stderr, expected, `${what}: expected stderr not found`);
    rest = stderr.replace(expected, '');
  }
  for (const pattern of UNCLEAN) {
    assert.doesNotMatch(rest, pattern, `${what}: unclean stderr:\n${rest}`);
  }
}

function describe(command, args) {
  return [command === process.execPath ? 'node' : command, ...args].join(' ');
}

/**
 * Starts `command args` (default command: this Node) with stdout and stderr
 * collected (stdin stays a pipe: `child.stdin.end()` is a way to ask a server
 * child to finish). Returns the ChildProcess, the output so far,
 * `waitFor(pattern)` (for a line on stdout) and `finished()`, which waits for
 * the exit and asserts it (see `run`). At the deadline (`timeout` ms after
 * the start) the child is killed and `finished()` fails, with its output in
 * the message.
 *
 * Options: `code` (expected exit code, default 0), `timeout` (default
 * 60 s), `expectStderr` (see assertCleanStderr), and spawn's `cwd`, `env`.
 */
export function start(args, { command = process.execPath, code = 0, timeout = 60_000, expectStderr, ...spawnOptions } = {}) {
  const what = describe(command, args);
  const child = spawn(command, args, { ...spawnOptions, stdio: ['pipe', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  // Checks of waitFor(), run again on each piece of stdout and at the exit.
  const waiters = new Set();
  let closed = false;
  const wake = () => waiters.forEach((check) => check());
  child.stdout.setEncoding('utf8').on('data', (text) => {
    output.stdout += text;
    wake();
  });
  child.stderr.setEncoding('utf8').on('data', (text) => (output.stderr += text));
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeout);
  const exited = new Promise((resolve, reject) => {
    child.once('error', (error) => {
      clearTimeout(deadline);
      reject(error);
    });
    // 'close', not 'exit': by then stdout and stderr are fully read.
    child.once('close', (exitCode, signal) => {
      clearTimeout(deadline);
      closed = true;
      wake();
      resolve({ code: exitCode, signal });
    });
  });
  const shown = () => `\n--- stdout\n${output.stdout}\n--- stderr\n${output.stderr}`;
  return {
    child,
    get stdout() {
      return output.stdout;
    },
    get stderr() {
      return output.stderr;
    },
    /** Resolves with the match once stdout matches `pattern`; rejects if the child ends first. */
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(output.stdout);
          if (match || closed) waiters.delete(check);
          if (match) resolve(match);
          else if (closed) reject(new Error(`${what}: ended before printing ${pattern}${shown()}`));
        };
        waiters.add(check);
        check();
      });
    },
    async finished() {
      const end = await exited;
      assert.ok(!timedOut, `${what}: still running after ${timeout} ms, killed${shown()}`);
      assert.equal(end.signal, null, `${what}: killed by ${end.signal}${shown()}`);
      assert.equal(end.code, code, `${what}: exit code${shown()}`);
      assertCleanStderr(output.stderr, what, expectStderr);
      return { stdout: output.stdout, stderr: output.stderr };
    },
  };
}

/**
 * Runs `command args` to its end (default command: this Node) and asserts
 * that it ended by itself within `timeout` ms, with exit code `code`
 * (default 0) and a clean stderr. Resolves with { stdout, stderr }.
 */
export function run(args, options) {
  const started = start(args, options);
  // Nothing to send: a child that reads stdin sees its end, not a hang.
  started.child.stdin.end();
  return started.finished();
}

/**
 * Runs a worker thread to its end. Resolves with the messages it posted once
 * it has exited with code 0, having emitted no 'error' and written nothing
 * unclean to its stderr; rejects otherwise, or at the deadline (`timeout` ms,
 * the worker is terminated). Other options go to `new Worker`.
 */
export function runWorker(source, { timeout = 60_000, ...workerOptions } = {}) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(source, { ...workerOptions, stderr: true });
    const messages = [];
    const errors = [];
    let stderr = '';
    let timedOut = false;
    worker.stderr.setEncoding('utf8').on('data', (text) => (stderr += text));
    worker.on('message', (m) => messages.push(m));
    worker.on('error', (error) => errors.push(error));
    const deadline = setTimeout(() => {
      timedOut = true;
      void worker.terminate();
    }, timeout);
    worker.once('exit', (code) => {
      clearTimeout(deadline);
      // The worker's stderr stream ends after 'exit'; read it to the end.
      const check = () => {
        try {
          assert.ok(!timedOut, `worker still running after ${timeout} ms, terminated`);
          assert.deepEqual(errors, [], 'worker emitted errors');
          assert.equal(code, 0, `worker exit code; stderr:\n${stderr}`);
          assertCleanStderr(stderr, 'worker');
          resolve(messages);
        } catch (error) {
          reject(error);
        }
      };
      if (worker.stderr.readableEnded) check();
      else worker.stderr.once('end', check);
    });
  });
}
