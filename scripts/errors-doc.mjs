// Writes docs/errors.md from the error registry (js/errors/, built to dist/errors/).
// `node scripts/errors-doc.mjs --check` exits 1 when docs/errors.md differs from what it would write.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { ERROR_CODES, ERROR_CODE_ALIASES, HTTP_ANSWERS } = require('../dist/errors/index.js');
const target = fileURLToPath(new URL('../docs/errors.md', import.meta.url));

const REPO = 'https://github.com/velo-stream/velo-stream/blob/main/';

/** A table cell for a reader of docs/: pipes escaped, the pages the table names as links. */
function cell(text) {
  return text
    .replace(/\|/g, '\\|')
    .replace(/\bdocs\/([\w/-]+\.md)/g, (_, page) => `[${page}](${page})`)
    .replace(/\b(CONTRIBUTING\.md)\b/g, (name) => `[${name}](${REPO}${name})`);
}

export function errorsDoc() {
  const rows = Object.entries(ERROR_CODES).map(
    ([code, e]) => `| \`${code}\`${e.class === '' ? '' : ` (\`${e.class}\`)`} | ${cell(e.when)} | ${cell(e.action)} |`,
  );
  return [
    '# Errors',
    '',
    '[← the README](../README.md)',
    '',
    'Every error velo-stream makes has a stable `code`: compare the code, not the class (under Jest, each copy of the module has classes of its own).',
    'The classes are exported where you may want `instanceof`: the core ones by `velo-stream`, the HTTP ones by `velo-stream/http`, those of Redis and Postgres by `velo-stream/durable` (`RedisConnectionError` by `velo-stream/redis`).',
    'Node\'s own argument codes (`ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE`, `ERR_OUT_OF_RANGE`, `ERR_INVALID_RETURN_VALUE`, `ERR_INVALID_STATE`) are used where Node uses them.',
    '',
    '| code (class) | when | what to do |',
    '|---|---|---|',
    ...rows,
    '',
    '## HTTP answers',
    '',
    'The errors of these codes carry `status` (and, for a refusal whose wait is known, `retryAfter` in ms and `headers` with `Retry-After`), so the own error handlers of Express and Fastify answer them with the status and `Retry-After` that `sendError` and the writers of `velo-stream/http` use (in their own body, not the JSON of `sendError`): the status and `Retry-After` (seconds, rounded up) before the first output; after it, the headers are gone, and a refusal\'s error line or event carries `status` and `retryAfter` (seconds).',
    '',
    'An error of another code is answered with its own `status` when it has one from 400 to 599 (an `http-errors` error, say); else 504 for a deadline that passed: a `DOMException` named `TimeoutError`, or an error whose `cause` is one (a call or a stream given `AbortSignal.timeout()` that fired); else 500. A refusal is the server declining the work (nothing of it ran): the client may try again later, smaller, or elsewhere.',
    '',
    '| code | status | `Retry-After` | refusal | when |',
    '|---|---|---|---|---|',
    ...Object.entries(HTTP_ANSWERS).map(
      ([code, a]) =>
        `| \`${code}\` | ${a.status} | ${a.retryAfter ? 'when the wait is known' : ''} | ${a.refusal ? 'yes' : ''} | ${cell(a.when)} |`,
    ),
    '',
    '## Renamed codes',
    '',
    'An error carries the new code only. `ERROR_CODE_ALIASES`, exported by `velo-stream`, maps each old name to the new one (`ERROR_CODE_ALIASES[code] ?? code`) for one release: it goes in the next.',
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
