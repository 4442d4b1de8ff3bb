// Writes docs/errors.md from the error-code table (js/error-codes.ts, built to dist/error-codes.js).
// `node scripts/errors-doc.mjs --check` exits 1 when docs/errors.md differs from what it would write.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { ERROR_CODES } = require('../dist/error-codes.js');
const target = fileURLToPath(new URL('../docs/errors.md', import.meta.url));

export function errorsDoc() {
  const cell = (text) => text.replace(/\|/g, '\\|');
  const rows = Object.entries(ERROR_CODES).map(
    ([code, e]) => `| \`${code}\` | ${e.class === '' ? '' : `\`${e.class}\``} | ${cell(e.from)} | ${cell(e.when)} | ${cell(e.action)} |`,
  );
  return [
    '# Errors',
    '',
    '[← the README](../README.md)',
    '',
    'Every error velo-stream makes has a stable `code`; compare it rather than the class (under Jest, copies of the module have classes of their own).',
    'The codes with a class are exported where you may want `instanceof`: the core ones by `velo-stream`, the HTTP ones by `velo-stream/http`, the Redis ones by `velo-stream/redis`.',
    'Node\'s own argument codes (`ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE`, `ERR_OUT_OF_RANGE`, `ERR_INVALID_RETURN_VALUE`, `ERR_INVALID_STATE`) are used where Node uses them.',
    '',
    'This page is generated from `js/error-codes.ts` by `node scripts/errors-doc.mjs`; `__test__/error-codes.test.mjs` fails when it is out of date, or when a code of the library is missing from it.',
    '',
    '| code | class | from | when | what to do |',
    '|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = errorsDoc();
  if (process.argv.includes('--check')) {
    if (readFileSync(target, 'utf8') !== text) {
      console.error('docs/errors.md is out of date: run node scripts/errors-doc.mjs');
      process.exit(1);
    }
  } else writeFileSync(target, text);
}
