// Writes docs/errors.md from the error registry (js/errors.ts, built to dist/errors.js).
// `node scripts/errors-doc.mjs --check` exits 1 when docs/errors.md differs from what it would write.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { ERROR_CODES, ERROR_CODE_ALIASES } = require('../dist/errors.js');
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
    'The codes with a class of the library are exported where you may want `instanceof`: the core ones by `velo-stream`, the HTTP ones by `velo-stream/http`, the Redis ones by `velo-stream/redis`.',
    'The worker clone failures are `DOMException`s named `DataCloneError`, as `postMessage` makes them, with the library\'s string code in place of their numeric one.',
    'Node\'s own argument codes (`ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE`, `ERR_OUT_OF_RANGE`, `ERR_INVALID_RETURN_VALUE`, `ERR_INVALID_STATE`) are used where Node uses them.',
    '',
    'This page is generated from `js/errors.ts`, the one module that makes the library\'s errors, by `node scripts/errors-doc.mjs`; `__test__/error-codes.test.mjs` fails when it is out of date, when a code of the library is missing from it, or when an error with a code is made anywhere else.',
    '',
    '| code | class | from | when | what to do |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    '## Renamed codes',
    '',
    'The library\'s own codes have one prefix, `ERR_VELO_`.',
    'These had another name before; an error carries the new code only.',
    '`ERROR_CODE_ALIASES`, exported by `velo-stream`, maps each old name to the new one (`ERROR_CODE_ALIASES[code] ?? code`) until the aliases are removed in the next minor release.',
    '',
    '| old code | new code |',
    '|---|---|',
    ...Object.entries(ERROR_CODE_ALIASES).map(([old, now]) => `| \`${old}\` | \`${now}\` |`),
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
