// Run before the JS tests (`pretest:js`): the browser tests (__test__/dashboard-browser.test.mjs) need a Chromium.
// Looks for it as the tests do (__test__/helpers/chromium.mjs: $CHROMIUM_PATH, then PATH); when none is found and
// this runs as root with apt-get, installs Debian's `chromium` (a fresh CI machine); otherwise fails, saying what
// to install. Never a silent skip.
import { spawnSync } from 'node:child_process';
import { findChromium } from '../__test__/helpers/chromium.mjs';

const HOW = 'Install it: apt-get install -y chromium (as root), or set CHROMIUM_PATH to a Chromium or Chrome binary.';

let found = findChromium();
if (found === undefined) {
  const apt = spawnSync('apt-get', ['--version'], { stdio: 'ignore' });
  if (process.getuid?.() !== 0 || apt.status !== 0) {
    console.error(`The browser tests need Chromium, and none was found. ${HOW}`);
    process.exit(1);
  }
  console.log('Chromium not found: installing Debian\'s chromium with apt-get (for the browser tests)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // With its recommended packages (fonts among them), as the browser tests were run against.
  for (const args of [['update'], ['install', '-y', 'chromium']]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0) {
      console.error(`apt-get ${args.join(' ')} failed (exit ${r.status}). ${HOW}`);
      process.exit(1);
    }
  }
  found = findChromium();
  if (found === undefined) {
    console.error(`apt-get installed chromium, yet none is on PATH. ${HOW}`);
    process.exit(1);
  }
}
console.log(`Chromium for the browser tests: ${found}`);
