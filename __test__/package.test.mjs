// What a newcomer meets first: the lockfile that `npm ci` checks against
// package.json, dev dependencies that install without engine warnings on the
// Node versions the README promises, the published package's contents, and
// the per-platform packages in npm/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { run } from './helpers/child.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const readJson = (name) => JSON.parse(readFileSync(join(root, name), 'utf8'));
const pkg = readJson('package.json');
const lock = readJson('package-lock.json');

// The oldest Node that `npm install` must accept without an EBADENGINE
// warning: the README's "Node 20+", at the 20.x release that current dev
// tools need (README, Contributing).
const OLDEST_DEV_NODE = '20.19.0';

test('package-lock.json records what package.json declares (npm ci refuses a lock out of sync)', () => {
  const recorded = lock.packages[''];
  assert.equal(lock.name, pkg.name);
  assert.equal(lock.version, pkg.version);
  for (const field of [
    'name',
    'version',
    'license',
    'dependencies',
    'devDependencies',
    'optionalDependencies',
    'peerDependencies',
    'peerDependenciesMeta',
    'engines',
  ]) {
    assert.deepEqual(recorded[field], pkg[field], `lock root "${field}"`);
  }
  // Each override is what the lock installed.
  for (const [name, version] of Object.entries(pkg.overrides ?? {})) {
    const installed = Object.entries(lock.packages).filter(([path]) => path.endsWith(`node_modules/${name}`));
    assert.ok(installed.length > 0, `${name} is in the lock`);
    for (const [path, entry] of installed) assert.equal(entry.version, version, path);
  }
});

/** Whether `name`, required by the package at lock path `from`, is in the lock where Node would look. */
function lockHas(from, name) {
  for (let base = from; ; ) {
    if (lock.packages[`${base ? `${base}/` : ''}node_modules/${name}`]) return true;
    if (!base) return false;
    base = base.slice(0, Math.max(0, base.lastIndexOf('node_modules/') - 1));
  }
}

test('every dependency of every locked package is in the lock (npm ci: "Missing: ... from lock file")', () => {
  const missing = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    const wanted = { ...entry.dependencies, ...entry.optionalDependencies, ...(path === '' ? entry.devDependencies : {}) };
    for (const name of Object.keys(wanted)) if (!lockHas(path, name)) missing.push(`${path || '(root)'} -> ${name}`);
  }
  assert.deepEqual(missing, []);
});

test(`every locked package accepts Node ${OLDEST_DEV_NODE} and this Node (no EBADENGINE)`, () => {
  const refused = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    const wanted = entry.engines?.node;
    if (path === '' || !wanted) continue;
    for (const node of [OLDEST_DEV_NODE, process.versions.node]) {
      if (!semver.satisfies(node, wanted)) refused.push(`${path}@${entry.version} wants node ${wanted}, not ${node}`);
    }
  }
  assert.deepEqual(refused, []);
  assert.ok(semver.satisfies(OLDEST_DEV_NODE, pkg.engines.node), 'within the package\'s own engines');
});

test('the published package holds the MIT LICENSE, the README and every type entry point', async () => {
  // --ignore-scripts: listing the contents must not rebuild (prepare).
  const { stdout } = await run(['pack', '--dry-run', '--ignore-scripts', '--json'], { command: 'npm', cwd: root });
  const files = JSON.parse(stdout)[0].files.map((f) => f.path);
  const typeFiles = [pkg.types, ...Object.values(pkg.typesVersions['*']).flat()].map((p) => p.replace(/^\.\//, ''));
  for (const file of ['LICENSE', 'README.md', 'package.json', 'CHANGELOG.md', ...typeFiles]) assert.ok(files.includes(file), file);
  // The manual ships with the package: every page of docs/ the README links to is in it, so its links work from
  // node_modules (and every page those pages link to within docs/).
  const pages = files.filter((f) => f.startsWith('docs/'));
  const linked = [...readFileSync(join(root, 'README.md'), 'utf8').matchAll(/\]\((docs\/[^)#\s]+)/g)].map(([, path]) => path);
  assert.ok(linked.length > 10, 'the README links to its pages');
  for (const path of linked) assert.ok(files.includes(path), `${path}, linked from the README, is in the package`);
  assert.ok(
    pages.every((f) => f.endsWith('.md') || linked.includes(f)),
    'only the pages of docs/ and what the README links to (not the generated reference)',
  );
  assert.equal(pkg.license, 'MIT');
  const license = readFileSync(join(root, 'LICENSE'), 'utf8');
  assert.match(license, /^MIT License\n\nCopyright \(c\) \d{4} velo-stream contributors\n/);
});

test('npm/ holds what `napi create-npm-dirs` makes of napi.targets and the version, and the LICENSE in each', async () => {
  // Regenerated into a scratch copy: a target added to napi.targets without
  // its directory, or a version bumped without `napi version`, shows here.
  const scratch = mkdtempSync(join(tmpdir(), 'velo-npm-dirs-'));
  try {
    writeFileSync(join(scratch, 'package.json'), readFileSync(join(root, 'package.json')));
    const cli = join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js');
    await run([cli, 'create-npm-dirs', '--cwd', scratch]);
    const dirs = readdirSync(join(root, 'npm')).sort();
    assert.deepEqual(dirs, readdirSync(join(scratch, 'npm')).sort());
    const license = readFileSync(join(root, 'LICENSE'), 'utf8');
    for (const dir of dirs) {
      for (const file of ['package.json', 'README.md']) {
        const made = readFileSync(join(scratch, 'npm', dir, file), 'utf8');
        assert.equal(readFileSync(join(root, 'npm', dir, file), 'utf8'), made, `npm/${dir}/${file}`);
      }
      assert.equal(readFileSync(join(root, 'npm', dir, 'LICENSE'), 'utf8'), license, `npm/${dir}/LICENSE`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

test('release.yml builds every napi target and publishes the manifest that install.test installs', () => {
  const release = readFileSync(join(root, '.github', 'workflows', 'release.yml'), 'utf8');
  const built = [...release.matchAll(/target: ([\w-]+),/g)].map((m) => m[1]).sort();
  assert.deepEqual(built, [...pkg.napi.targets].sort());
  // The two changes to package.json that __test__/install.test.mjs makes
  // to the packed main package before installing it.
  assert.match(release, /^\s+npx napi pre-publish .*$/m);
  assert.match(release, /^\s+npm pkg delete scripts\.prepare$/m);
});
