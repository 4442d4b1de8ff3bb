// The error-code table (js/error-codes.ts) is complete and docs/errors.md is generated from it: every `ERR_*` code
// written in js/ is in the table, every code in the table is made somewhere in js/, and the page is up to date.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorsDoc } from '../scripts/errors-doc.mjs';

const require = createRequire(import.meta.url);
const { ERROR_CODES } = require('../dist/error-codes.js');
const root = fileURLToPath(new URL('..', import.meta.url));

/** code -> files of js/ (the table's own file left out) that write it as a string literal. */
function codesInSource() {
  const found = new Map();
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.ts') && name !== 'error-codes.ts') {
        for (const [, code] of readFileSync(path, 'utf8').matchAll(/'(ERR_[A-Z_]+)'/g)) {
          found.set(code, [...(found.get(code) ?? []), path]);
        }
      }
    }
  };
  walk(join(root, 'js'));
  return found;
}

test('every code the library writes is in the table, and every code in the table is written somewhere', () => {
  const inSource = codesInSource();
  const table = new Set(Object.keys(ERROR_CODES));
  assert.deepEqual([...inSource.keys()].filter((c) => !table.has(c)).sort(), [], 'codes missing from js/error-codes.ts');
  assert.deepEqual([...table].filter((c) => !inSource.has(c)).sort(), [], 'codes in the table that nothing makes');
  for (const [code, e] of Object.entries(ERROR_CODES)) {
    for (const field of ['from', 'when', 'action']) assert.ok(e[field].length > 10, `${code}.${field}`);
  }
});

test('docs/errors.md is the page generated from the table (node scripts/errors-doc.mjs)', () => {
  assert.equal(readFileSync(join(root, 'docs', 'errors.md'), 'utf8'), errorsDoc());
});
