// What a user installs: the main package as release.yml publishes it and the
// platform package for this host, both from `npm pack`, installed into an
// empty project with no registry to reach and no Rust toolchain on PATH.
// The other platforms' packages cannot be built here; the release workflow
// builds each on its own runner (README, Contributing).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readNapiConfig } from '@napi-rs/cli';
import { run } from './helpers/child.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

// The local build names this host's target: native/velo-stream.<target>.node.
const built = readdirSync(join(root, 'native')).filter((f) => /^velo-stream\..+\.node$/.test(f));
assert.equal(built.length, 1, `one local build in native/: ${built}`);
const binary = built[0];
const target = binary.slice('velo-stream.'.length, -'.node'.length);
const platformPackage = `velo-stream-${target}`;

let dir;
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

/** `npm pack --ignore-scripts` of `from` into `dir`: the tarball's path and its file list. */
async function pack(from) {
  const { stdout } = await run(['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
    command: 'npm',
    cwd: from,
    env: userEnv(),
  });
  const [result] = JSON.parse(stdout);
  return { path: join(dir, result.filename), files: result.files.map((f) => f.path) };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'velo-install-'));
  const env = userEnv();

  // The main package: packed from the checkout, then given the two changes
  // release.yml's publish step makes to package.json. `napi pre-publish`
  // lists each target's package, at this version, in optionalDependencies
  // (npm installs the one whose os/cpu/libc match); `npm pkg delete
  // scripts.prepare` drops the contributors' build from source, which npm
  // would otherwise report to every user installing from a tarball.
  const raw = await pack(root);
  const staged = join(dir, 'main');
  mkdirSync(staged);
  await run(['-xzf', raw.path, '-C', staged], { command: 'tar' });
  rmSync(raw.path);
  const { targets, packageName } = await readNapiConfig(join(root, 'package.json'));
  const sets = targets.map((t) => `optionalDependencies.${packageName}-${t.platformArchABI}=${pkg.version}`);
  await run(['pkg', 'set', ...sets], { command: 'npm', cwd: join(staged, 'package'), env });
  await run(['pkg', 'delete', 'scripts.prepare'], { command: 'npm', cwd: join(staged, 'package'), env });
  ({ path: tarballs.main, files: contents.main } = await pack(join(staged, 'package')));

  // The platform package: npm/<target> with the binary in it, which is what
  // `napi artifacts` does with each runner's build.
  const platformDir = join(dir, 'platform');
  mkdirSync(platformDir);
  for (const file of readdirSync(join(root, 'npm', target))) {
    writeFileSync(join(platformDir, file), readFileSync(join(root, 'npm', target, file)));
  }
  writeFileSync(join(platformDir, binary), readFileSync(join(root, 'native', binary)));
  ({ path: tarballs.platform, files: contents.platform } = await pack(platformDir));

  app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
  writeFileSync(
    join(app, 'run.mjs'),
    `import { createRequire } from 'node:module';
import { streamFn, workerFn } from 'velo-stream';
// The subpath loads without node-redis installed: users pass their own client.
import { redisWorker } from 'velo-stream/redis';
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
console.log(JSON.stringify({ results, onThread, loaded, redis: typeof redisWorker, page }));
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

test('the main tarball holds the loader, the LICENSE and no binary; it lists every platform package', () => {
  assert.ok(contents.main.includes('LICENSE'), 'LICENSE');
  assert.ok(contents.main.includes('native/index.js'), 'the generated loader');
  assert.deepEqual(
    contents.main.filter((f) => f.endsWith('.node')),
    [],
  );
  const published = JSON.parse(readFileSync(join(dir, 'main', 'package', 'package.json'), 'utf8'));
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

test('both install offline, without Rust, with nothing on stderr; streamFn().run() and a workerFn work on the platform package; velo-stream/redis loads; velo-stream/dashboard serves its page and the bundled uPlot', async () => {
  const env = userEnv();
  const installed = await run(['install', tarballs.main, tarballs.platform], { command: 'npm', cwd: app, env });
  assert.equal(installed.stderr, '', 'npm install wrote to stderr');
  assert.ok(existsSync(join(app, 'node_modules', 'velo-stream', 'dist', 'index.js')));

  const { stdout, stderr } = await run(['run.mjs'], { cwd: app, env });
  assert.equal(stderr, '');
  const { results, onThread, loaded, redis, page } = JSON.parse(stdout);
  for (const path of ['', 'page.js', 'uplot.js', 'uplot.css']) assert.deepEqual(page[path], [200, true], `dashboard /${path}`);
  assert.ok(!existsSync(join(app, 'node_modules', 'uplot')), 'uPlot is bundled, not a dependency');
  assert.deepEqual(results, [2, 4, 6]);
  assert.deepEqual(onThread, [3, 6], 'workerFn runs on the installed package');
  assert.equal(redis, 'function', 'velo-stream/redis loads (without node-redis installed)');
  assert.ok(!existsSync(join(app, 'node_modules', 'redis')), 'the optional peer dependency is not installed');
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
