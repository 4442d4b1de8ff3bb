// What a user installs: the main package as release.yml publishes it and the
// platform package for this host, both packed by scripts/pack-release.mjs
// (what `npm run pack:release` runs after building the TypeScript), installed
// into an empty project with no registry to reach and no Rust toolchain on
// PATH. The other platforms' packages cannot be built here; the release
// workflow builds each on its own runner (README, Contributing).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/child.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

let dir;
/** This host's build: its file name (velo-stream.<target>.node), its target, and its platform package's name. */
let binary;
let target;
let platformPackage;
/** The main package's manifest as published. */
let published;
/** The project a user installs into. */
let app;
/** Paths of the two tarballs. */
const tarballs = {};
/** File lists of the two tarballs. */
const contents = {};

/**
 * The environment of npm and node children: npm's own settings from this
 * machine and from the `npm test` that runs us are left out (an empty user
 * and global config, an empty cache, so nothing can come from a registry),
 * and PATH holds no directory with `cargo` in it.
 */
function userEnv() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
  const userrc = join(dir, 'user-npmrc');
  const globalrc = join(dir, 'global-npmrc');
  for (const rc of [userrc, globalrc]) writeFileSync(rc, '');
  return {
    ...env,
    PATH: (process.env.PATH ?? '')
      .split(delimiter)
      .filter((p) => p && !existsSync(join(p, 'cargo')) && !existsSync(join(p, 'cargo.exe')))
      .join(delimiter),
    npm_config_userconfig: userrc,
    npm_config_globalconfig: globalrc,
    npm_config_cache: join(dir, 'npm-cache'),
    npm_config_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'velo-install-'));
  // The two tarballs, packed by the script `npm run pack:release` runs (how they are made is decided there).
  const { stdout } = await run([join(root, 'scripts', 'pack-release.mjs'), '--destination', join(dir, 'packed'), '--json'], {
    cwd: root,
    env: userEnv(),
  });
  const packed = JSON.parse(stdout);
  ({ binary, target, platformPackage } = packed);
  ({ path: tarballs.main, files: contents.main, manifest: published } = packed.main);
  ({ path: tarballs.platform, files: contents.platform } = packed.platform);
  assert.equal(binary, `velo-stream.${target}.node`);
  assert.ok(existsSync(join(root, 'native', binary)), 'packed from the local build');

  app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
  writeFileSync(
    join(app, 'run.mjs'),
    `import { createRequire } from 'node:module';
import { streamFn, workerFn } from 'velo-stream';
// The subpaths load without node-redis or pg installed: users pass their own client or pool.
import { redisWorker } from 'velo-stream/redis';
import { postgresLimiter } from 'velo-stream/postgres';
import { sessionWorker } from 'velo-stream/durable';
import { createServer } from 'node:http';
import { dashboard } from 'velo-stream/dashboard';
const double = streamFn(async function* (xs) {
  for await (const x of xs) yield x * 2;
});
const results = await double.run([1, 2, 3]);
// A worker thread loads the installed package's thread script and addon too.
const onThread = await workerFn(new URL('./triple.mjs', import.meta.url), { threads: 1 }).run([1, 2]);
const loaded = Object.keys(createRequire(import.meta.url).cache).filter((f) => f.endsWith('.node'));
// The dashboard serves its page and the uPlot bundled in the package (no network, no uplot dependency).
const server = createServer(dashboard({ functions: [double] })).listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const page = {};
for (const path of ['', 'page.js', 'uplot.js', 'uplot.css']) {
  const res = await fetch(\`http://127.0.0.1:\${server.address().port}/\${path}\`);
  page[path] = [res.status, (await res.text()).length > 100];
}
server.close();
console.log(JSON.stringify({ results, onThread, loaded, redis: typeof redisWorker, postgres: typeof postgresLimiter, durable: typeof sessionWorker, page }));
`,
  );
  writeFileSync(join(app, 'triple.mjs'), 'export default async function* (xs) {\n  for await (const x of xs) yield x * 3;\n}\n');
  writeFileSync(
    join(app, 'missing.cjs'),
    // require, not import: Node 20 reports a CommonJS module's throw under a
    // dynamic import as uncaught even when the import's promise is caught.
    `try {
  require('velo-stream');
  console.log(JSON.stringify({ loaded: true }));
} catch (error) {
  console.log(JSON.stringify({ code: error.code, message: error.message }));
}
`,
  );
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the main tarball holds the loader, the LICENSE, the Lua scripts and SQL files and no binary; it lists every platform package', () => {
  assert.ok(contents.main.includes('LICENSE'), 'LICENSE');
  assert.ok(contents.main.includes('native/index.js'), 'the generated loader');
  // Read beside the compiled modules when they load (copied by scripts/copy-assets.mjs: tsc does not).
  for (const [dir, ext] of [
    ['js/redis/log/lua', '.lua'],
    ['js/postgres/log/sql', '.sql'],
  ]) {
    const files = readdirSync(join(root, dir)).filter((f) => f.endsWith(ext));
    assert.ok(files.length > 0, dir);
    for (const f of files) assert.ok(contents.main.includes(`${dir.replace(/^js/, 'dist')}/${f}`), `${dir}/${f} is shipped`);
  }
  assert.deepEqual(
    contents.main.filter((f) => f.endsWith('.node')),
    [],
  );
  assert.equal(published.scripts?.prepare, undefined, 'no build from source at install');
  const listed = Object.keys(published.optionalDependencies).sort();
  const packages = readdirSync(join(root, 'npm')).map((t) =>
    JSON.parse(readFileSync(join(root, 'npm', t, 'package.json'), 'utf8')),
  );
  assert.deepEqual(listed, packages.map((p) => p.name).sort(), 'one optional dependency per npm/<target> package');
  for (const p of packages) assert.equal(published.optionalDependencies[p.name], p.version, `${p.name} at the main version`);
  assert.ok(listed.includes(platformPackage), platformPackage);
});

test('the platform tarball holds the binary and the LICENSE', () => {
  assert.deepEqual(contents.platform.sort(), [binary, 'LICENSE', 'README.md', 'package.json'].sort());
});

test('both install offline, without Rust, with nothing on stderr; streamFn().run() and a workerFn work on the platform package; velo-stream/redis, velo-stream/postgres and velo-stream/durable load; velo-stream/dashboard serves its page and the bundled uPlot', async () => {
  const env = userEnv();
  const installed = await run(['install', tarballs.main, tarballs.platform], { command: 'npm', cwd: app, env });
  assert.equal(installed.stderr, '', 'npm install wrote to stderr');
  assert.ok(existsSync(join(app, 'node_modules', 'velo-stream', 'dist', 'index.js')));

  const { stdout, stderr } = await run(['run.mjs'], { cwd: app, env });
  assert.equal(stderr, '');
  const { results, onThread, loaded, redis, postgres, durable, page } = JSON.parse(stdout);
  for (const path of ['', 'page.js', 'uplot.js', 'uplot.css']) assert.deepEqual(page[path], [200, true], `dashboard /${path}`);
  assert.ok(!existsSync(join(app, 'node_modules', 'uplot')), 'uPlot is bundled, not a dependency');
  assert.deepEqual(results, [2, 4, 6]);
  assert.deepEqual(onThread, [3, 6], 'workerFn runs on the installed package');
  assert.equal(redis, 'function', 'velo-stream/redis loads (without node-redis installed)');
  assert.equal(durable, 'function', 'velo-stream/durable loads (without node-redis or pg installed)');
  assert.ok(!existsSync(join(app, 'node_modules', 'redis')), 'the optional peer dependency is not installed');
  assert.equal(postgres, 'function', 'velo-stream/postgres loads (its SQL files read, without pg installed)');
  assert.ok(!existsSync(join(app, 'node_modules', 'pg')), 'pg is not installed');
  assert.deepEqual(loaded, [join(app, 'node_modules', platformPackage, binary)]);
});

test('without the platform package the import fails with ERR_VELO_ADDON_NOT_FOUND, naming the platform, the package and the fix', async () => {
  rmSync(join(app, 'node_modules', platformPackage), { recursive: true });
  const { stdout, stderr } = await run(['missing.cjs'], { cwd: app, env: userEnv() });
  assert.equal(stderr, '');
  const { code, message } = JSON.parse(stdout);
  assert.equal(code, 'ERR_VELO_ADDON_NOT_FOUND');
  assert.ok(message.includes(`for ${target} (Node ${process.version})`), message);
  assert.ok(message.includes(`the package ${platformPackage}.`), message);
  assert.ok(message.includes('is an optional dependency of velo-stream that is not installed'), message);
  assert.ok(message.includes('--omit=optional'), message);
});
