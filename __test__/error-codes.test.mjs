// One error registry (js/errors.ts): every error with a code is made there, its table lists every code it makes
// and nothing else, docs/errors.md is generated from the table, and the renamed codes keep their old names as
// documented aliases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorsDoc } from '../scripts/errors-doc.mjs';
import * as velo from 'velo-stream';

const require = createRequire(import.meta.url);
const { ERROR_CODES, ERROR_CODE_ALIASES } = require('../dist/errors.js');
const root = fileURLToPath(new URL('..', import.meta.url));
const REGISTRY = join(root, 'js', 'errors.ts');

/** Every .ts file of js/ with its text. */
function sources() {
  const files = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.ts')) files.push({ path, text: readFileSync(path, 'utf8') });
    }
  };
  walk(join(root, 'js'));
  return files;
}

test('every code the registry makes is in its table, and every code in the table is made there', () => {
  const registry = readFileSync(REGISTRY, 'utf8');
  const tableEnd = registry.indexOf('} as const satisfies Record<string, ErrorCodeInfo>;');
  const aliasesEnd = registry.indexOf('});', registry.indexOf('export const ERROR_CODE_ALIASES'));
  assert.ok(tableEnd > 0 && aliasesEnd > tableEnd);
  // What comes after the table and the aliases is the classes and factories: the codes they make.
  const made = new Set([...registry.slice(aliasesEnd).matchAll(/'(ERR_[A-Z_]+)'/g)].map(([, code]) => code));
  const table = new Set(Object.keys(ERROR_CODES));
  assert.deepEqual([...made].filter((c) => !table.has(c)).sort(), [], 'codes made in js/errors.ts but missing from its table');
  assert.deepEqual([...table].filter((c) => !made.has(c)).sort(), [], 'codes in the table that nothing makes');
  for (const [code, e] of Object.entries(ERROR_CODES)) {
    for (const field of ['from', 'when', 'action']) assert.ok(e[field].length > 10, `${code}.${field}`);
  }
});

test('no file of js/ but the registry makes an error with a code: elsewhere a code is only compared', () => {
  const outside = [];
  for (const { path, text } of sources()) {
    if (path === REGISTRY) continue;
    for (const line of text.split('\n')) {
      for (const m of line.matchAll(/'(ERR_[A-Z_]+)'/g)) {
        const before = line.slice(0, m.index).trimEnd();
        if (!/[!=]==$/.test(before)) outside.push(`${relative(root, path)}: ${line.trim()}`);
      }
      if (/code:\s*['"`]|Object\.assign\(new \w*Error/.test(line)) outside.push(`${relative(root, path)}: ${line.trim()}`);
    }
  }
  assert.deepEqual(outside, []);
});

test("the library's own codes have one prefix; Node's codes are kept where Node uses them", () => {
  const node = new Set([
    'ERR_INVALID_ARG_TYPE',
    'ERR_INVALID_ARG_VALUE',
    'ERR_OUT_OF_RANGE',
    'ERR_INVALID_RETURN_VALUE',
    'ERR_INVALID_STATE',
  ]);
  for (const code of Object.keys(ERROR_CODES)) {
    assert.ok(code.startsWith('ERR_VELO_') || node.has(code), `${code} has neither the prefix nor a code of Node's`);
  }
});

test('the renamed codes: each alias names a code of the table, is exported by velo-stream, and errors carry the new code', async () => {
  assert.ok(Object.isFrozen(ERROR_CODE_ALIASES));
  assert.deepEqual(velo.ERROR_CODE_ALIASES, ERROR_CODE_ALIASES);
  for (const [old, now] of Object.entries(ERROR_CODE_ALIASES)) {
    assert.ok(!(old in ERROR_CODES), `${old} is still a code`);
    assert.ok(now in ERROR_CODES, `${now} is not a code`);
  }
  const fn = velo.streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { maxConcurrent: 1 },
  );
  const s = fn.open();
  assert.throws(
    () => fn.open(),
    (e) => e.code === 'ERR_VELO_STREAM_LIMIT' && ERROR_CODE_ALIASES.ERR_STREAM_LIMIT === e.code,
  );
  await s.end();
  await assert.rejects(s.send(1), (e) => e.code === 'ERR_VELO_STREAM_CLOSED' && ERROR_CODE_ALIASES.ERR_STREAM_CLOSED === e.code);
});

test('docs/errors.md is the page generated from the table (node scripts/errors-doc.mjs)', () => {
  assert.equal(readFileSync(join(root, 'docs', 'errors.md'), 'utf8'), errorsDoc());
});
