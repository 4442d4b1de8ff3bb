// The addon's declarations (native/index.d.ts) are generated from the Rust
// source by the native build and committed: the TypeScript layer is checked
// against them, so a Rust change must come with the regenerated file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import test from 'node:test';
import { run } from './helpers/child.mjs';

const root = path.resolve(import.meta.dirname, '..');
const declarations = path.join(root, 'native', 'index.d.ts');
const addon = createRequire(import.meta.url)(path.join(root, 'native', 'index.js'));

test('native/index.d.ts as the build generated it is the committed one', async () => {
  // The build (npm install, npm run build:native) rewrites the file from the
  // Rust source: any difference from what git has is a Rust change whose
  // declarations were not committed.
  const { stdout } = await run(['diff', '--stat', '--', 'native/index.d.ts'], { command: 'git', cwd: root, timeout: 20_000 });
  assert.equal(
    stdout,
    '',
    `native/index.d.ts differs from the committed one: the Rust side changed; commit the regenerated file (npm run build:native).\n${stdout}`,
  );
});

/** `{ name: value }` of a generated `export declare const enum name { ... }`. */
function declaredEnum(source, name) {
  const body = new RegExp(`export declare const enum ${name} \\{([^}]*)\\}`).exec(source)?.[1];
  assert.ok(body !== undefined, `enum ${name} not declared`);
  const members = {};
  for (const [, key, value] of body.matchAll(/^\s*(\w+) = ('[^']*'|-?\d+),?$/gm)) {
    members[key] = value.startsWith("'") ? value.slice(1, -1) : Number(value);
  }
  return members;
}

test('the declarations describe the loaded addon: every entry point, every code', () => {
  const source = readFileSync(declarations, 'utf8');
  const ops = /export interface StreamOps \{([\s\S]*?)\n\}/.exec(source)?.[1];
  assert.ok(ops !== undefined, 'StreamOps not declared');
  const declaredOps = [...ops.matchAll(/^ {2}(\w+): \(/gm)].map((m) => m[1]);
  assert.deepEqual(declaredOps.toSorted(), Object.keys(addon.stream).toSorted());
  for (const name of ['PushStatus', 'TakeStatus', 'PhaseCode', 'Outcome']) {
    assert.deepEqual(declaredEnum(source, name), { ...addon[name] }, name);
  }
});
