// A node:test reporter (npm run test:js passes it next to `spec`) that fails
// the run when a test file writes anything to its stderr: a Node warning
// (MaxListenersExceededWarning...), a Rust panic message, output of a child
// or worker that was not captured. Each test file runs in its own process and
// the runner reports that process's stderr as `test:stderr` events, so this
// sees what the file's own code, its workers and the native addon print, by
// whatever route. The runner sets exit code 1 when a test fails and never
// resets it, so setting it here fails `npm test` too.
//
// A test that provokes such output on purpose runs it in a child process and
// checks it there (helpers/child.mjs), so the suite's own output stays clean.
export default async function* cleanOutput(source) {
  const written = new Map();
  for await (const event of source) {
    if (event.type !== 'test:stderr') continue;
    const file = event.data.file ?? '(unknown file)';
    written.set(file, (written.get(file) ?? '') + event.data.message);
  }
  if (written.size === 0) return;
  process.exitCode = 1;
  let report = `\nFAILED: test output must be clean, but ${written.size} test file(s) wrote to stderr:\n`;
  for (const [file, text] of written) report += `\n--- ${file}\n${text.trimEnd()}\n`;
  yield `${report}\n`;
}
