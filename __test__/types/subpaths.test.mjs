// The package as users install it (npm pack, unpacked into a scratch
// project's node_modules) type-checks subpaths.ts under each TypeScript
// module resolution: node10 (what "module": "commonjs" implies, where only
// typesVersions maps `velo-stream/http`), node16 and bundler. The type tests
// of usage.mts and friends resolve the package by self-reference, which only
// works with "exports"; this one sees what a CommonJS user sees.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../helpers/child.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tsc = join(root, 'node_modules/typescript/bin/tsc');
let project;

before(async () => {
  project = mkdtempSync(join(tmpdir(), 'velo-types-'));
  const pkg = join(project, 'node_modules/velo-stream');
  mkdirSync(pkg, { recursive: true });
  // --ignore-scripts: packing must not rebuild (prepare); dist/ is built already.
  const { stdout } = await run(['pack', '--ignore-scripts', '--json', '--pack-destination', project], { command: 'npm', cwd: root });
  const [{ filename }] = JSON.parse(stdout);
  await run(['-xzf', join(project, filename), '-C', pkg, '--strip-components=1'], { command: 'tar' });
  // The project's other dependencies, as a user would have them installed.
  mkdirSync(join(project, 'node_modules/@types'));
  symlinkSync(join(root, 'node_modules/@types/node'), join(project, 'node_modules/@types/node'));
  symlinkSync(join(root, 'node_modules/prom-client'), join(project, 'node_modules/prom-client'));
  symlinkSync(join(root, 'node_modules/redis'), join(project, 'node_modules/redis'));
  symlinkSync(join(root, 'node_modules/@redis'), join(project, 'node_modules/@redis'));
  copyFileSync(fileURLToPath(new URL('./subpaths.ts', import.meta.url)), join(project, 'subpaths.ts'));
});

after(() => rmSync(project, { recursive: true, force: true }));

/** Compiles subpaths.ts with these module options; tsc must exit 0 and print nothing. */
async function compiles(name, options) {
  const config = join(project, `tsconfig.${name}.json`);
  const compilerOptions = { target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'], ...options };
  writeFileSync(config, JSON.stringify({ compilerOptions, files: ['subpaths.ts'] }));
  const { stdout } = await run([tsc, '-p', config], { cwd: project });
  assert.equal(stdout, '');
}

test('CommonJS project ("module": "commonjs", moduleResolution node10) resolves the subpaths', async () => {
  await compiles('node10', { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true });
});

test('Node16 CommonJS project resolves the subpaths', async () => {
  await compiles('node16', { module: 'node16', moduleResolution: 'node16' });
});

test('bundler project resolves the subpaths', async () => {
  await compiles('bundler', { module: 'esnext', moduleResolution: 'bundler' });
});
