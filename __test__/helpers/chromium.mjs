// The Chromium the browser tests drive (playwright-core, pointed at a system binary). Looked for in
// $CHROMIUM_PATH, then on PATH; when missing, installed with apt-get (Debian's `chromium` package) if this
// process can (root, apt-get present). Otherwise the tests fail, never skip, saying what to install.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { run } from './child.mjs';

const NAMES = ['chromium', 'chromium-browser', 'google-chrome-stable', 'google-chrome'];
const INSTALL = 'apt-get install -y chromium (as root), or set CHROMIUM_PATH to a Chromium or Chrome binary';

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first Chromium found: $CHROMIUM_PATH, else a known name on PATH; undefined if none. */
export function findChromium() {
  const given = process.env.CHROMIUM_PATH;
  if (given) {
    if (!executable(given)) throw new Error(`CHROMIUM_PATH is ${given}, which is not an executable file. ${INSTALL}.`);
    return given;
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of NAMES) if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** A Chromium binary: found, or installed now with apt-get when this process can; else an error naming the command. */
export async function chromium() {
  const found = findChromium();
  if (found !== undefined) return found;
  const canInstall = process.getuid?.() === 0 && findOnPath('apt-get');
  if (!canInstall) {
    throw new Error(
      `The browser tests need Chromium, and none was found (looked for ${NAMES.join(', ')} on PATH). Install it: ${INSTALL}.`,
    );
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // apt-get writes notices to stderr; its exit code is what counts here.
  const options = { command: 'apt-get', env, timeout: 900_000, expectStderr: /[\s\S]*/ };
  await run(['update'], options);
  await run(['install', '-y', '--no-install-recommends', 'chromium'], options);
  const installed = findChromium();
  if (installed === undefined) throw new Error(`apt-get installed chromium, yet no Chromium is on PATH. ${INSTALL}.`);
  return installed;
}

function findOnPath(name) {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir && executable(join(dir, name)));
}
