// One error registry (js/errors/): every error with a code is made there, its table (codes.ts) lists every code its
// makers make and nothing else, docs/errors.md is generated from the table, and the renamed codes keep their old names as
// documented aliases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorsDoc } from '../scripts/errors-doc.mjs';
import * as velo from 'velo-stream';

const require = createRequire(import.meta.url);
const { ERROR_CODES, ERROR_CODE_ALIASES, HTTP_ANSWERS } = require('../dist/errors/index.js');
const root = fileURLToPath(new URL('..', import.meta.url));
const REGISTRY = join(root, 'js', 'errors');
/** The registry's table of codes; its table of HTTP answers lists codes too, and makes none. */
const TABLES = [join(REGISTRY, 'codes.ts'), join(REGISTRY, 'answers.ts')];

/** The text of the registry's files that make errors (all but its tables). */
function makersText() {
  return readdirSync(REGISTRY)
    .filter((name) => name.endsWith('.ts'))
    .map((name) => join(REGISTRY, name))
    .filter((path) => !TABLES.includes(path))
    .map((path) => readFileSync(path, 'utf8'))
    .join('\n');
}

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
  const codes = readFileSync(TABLES[0], 'utf8');
  assert.ok(codes.includes('} as const satisfies Record<string, ErrorCodeInfo>;'));
  assert.ok(codes.includes('export const ERROR_CODE_ALIASES'));
  // The classes and factories of the other files: the codes they make.
  const made = new Set([...makersText().matchAll(/'(ERR_[A-Z_]+)'/g)].map(([, code]) => code));
  const table = new Set(Object.keys(ERROR_CODES));
  assert.deepEqual([...made].filter((c) => !table.has(c)).sort(), [], 'codes made in js/errors/ but missing from its table');
  assert.deepEqual([...table].filter((c) => !made.has(c)).sort(), [], 'codes in the table that nothing makes');
  for (const [code, e] of Object.entries(ERROR_CODES)) {
    for (const field of ['from', 'when', 'action']) assert.ok(e[field].length > 10, `${code}.${field}`);
  }
});

test('no file of js/ but the registry makes an error with a code: elsewhere a code is only compared', () => {
  const outside = [];
  for (const { path, text } of sources()) {
    if (path.startsWith(REGISTRY + sep)) continue;
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

/** What each exported factory and class of js/errors/ makes: its name -> the codes in its body. */
function codesByMaker() {
  const makers = new Map();
  const parts = makersText().split(/\n(?=export (?:function|class) )/);
  for (const part of parts) {
    const name = /^export (?:function|class) (\w+)/.exec(part)?.[1];
    if (name !== undefined) makers.set(name, new Set([...part.matchAll(/'(ERR_[A-Z_]+)'/g)].map(([, code]) => code)));
  }
  return makers;
}

/** The codes the files made by `paths` (under js/) can make: those of the makers they import from the registry. */
function codesMadeBy(paths) {
  const makers = codesByMaker();
  const codes = new Set();
  for (const path of paths) {
    const text = readFileSync(join(root, 'js', path), 'utf8');
    for (const [, names] of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*'\.\.\/errors'/g)) {
      for (const name of names.split(',').map(
        (n) =>
          n
            .trim()
            .replace(/^type\s+/, '')
            .split(/\s+as\s+/)[0],
      )) {
        for (const code of makers.get(name) ?? []) codes.add(code);
      }
    }
  }
  return codes;
}

/** Codes the limiters and admission make that are not refusals: the server's own faults (bad arguments, a key function that throws), answered 500. */
const SERVER_FAULTS = new Set([
  'ERR_INVALID_ARG_TYPE',
  'ERR_INVALID_ARG_VALUE',
  'ERR_OUT_OF_RANGE',
  'ERR_INVALID_RETURN_VALUE',
  'ERR_INVALID_STATE',
  'ERR_VELO_LIMIT_KEY',
  'ERR_VELO_LIMIT_TENANT',
  'ERR_VELO_LIMIT_PRIORITY',
  'ERR_VELO_PIPE_SESSION_CALL',
]);

test('every refusal the in-process limiters and admission make has its HTTP status in the one table, HTTP_ANSWERS', () => {
  const limits = readdirSync(join(root, 'js', 'limits')).map((name) => `limits/${name}`);
  const made = codesMadeBy([...limits, 'core/admit.ts', 'core/function.ts']);
  // (The scan finds the refusals: if it found none, it would prove nothing.)
  assert.ok(made.has('ERR_VELO_RATE_LIMITED') && made.has('ERR_VELO_STREAM_LIMIT'), [...made].join(', '));
  const refusals = [...made].filter((code) => !SERVER_FAULTS.has(code)).sort();
  const listed = Object.keys(HTTP_ANSWERS)
    .filter((code) => HTTP_ANSWERS[code].refusal)
    .sort();
  assert.deepEqual(refusals, listed, 'a code the limiters or admission make is neither in HTTP_ANSWERS nor a server fault');
  for (const [code, a] of Object.entries(HTTP_ANSWERS)) {
    assert.ok(code in ERROR_CODES, `${code} is not a code`);
    assert.ok(Number.isInteger(a.status) && a.status >= 400 && a.status <= 599, code);
    assert.ok(a.when.length > 10, `${code}.when`);
    if (a.refusal) assert.ok([413, 429, 503].includes(a.status), `${code}: a refusal is 429, 413 or 503`);
    if (a.retryAfter) assert.ok([429, 503].includes(a.status), `${code}: Retry-After goes with 429 or 503`);
  }
});

test("the limiters' and admission's refusals carry the table's status (Retry-After when the wait is known); the classes' statuses are the table's", async () => {
  const statusOf = (code) => HTTP_ANSWERS[code].status;
  const rate = velo.limiter({ name: 'r', rate: { limit: 1, period: 60_000 }, mode: 'reject' });
  await rate.acquire();
  const limited = await rate.acquire().catch((e) => e);
  assert.equal(limited.code, 'ERR_VELO_RATE_LIMITED');
  assert.equal(limited.status, statusOf('ERR_VELO_RATE_LIMITED'));
  assert.ok(limited.retryAfter > 59_000 && limited.retryAfter <= 60_000, String(limited.retryAfter));
  assert.deepEqual(limited.headers, { 'retry-after': '60' });
  // A full concurrency tells no wait (a release frees it).
  const conc = velo.limiter({ concurrency: 1, mode: 'reject' });
  await conc.acquire();
  const full = await conc.acquire().catch((e) => e);
  assert.equal(full.status, 429);
  assert.equal(full.retryAfter, undefined);
  assert.equal(full.headers, undefined);
  const line = velo.limiter({ concurrency: 1, maxWaiting: 1 });
  await line.acquire();
  const waiter = line.acquire();
  const queueFull = await line.acquire().catch((e) => e);
  assert.equal(queueFull.code, 'ERR_VELO_LIMIT_QUEUE_FULL');
  assert.equal(queueFull.status, statusOf('ERR_VELO_LIMIT_QUEUE_FULL'));
  await line.close();
  const closed = await waiter.catch((e) => e);
  assert.equal(closed.code, 'ERR_VELO_LIMITER_CLOSED');
  assert.equal(closed.status, statusOf('ERR_VELO_LIMITER_CLOSED'));
  const costly = velo.limiter({ rate: { limit: 5, period: 1000 }, cost: (n) => n });
  const over = await costly.acquire(6).catch((e) => e);
  assert.equal(over.code, 'ERR_VELO_LIMIT_COST');
  assert.equal(over.status, statusOf('ERR_VELO_LIMIT_COST'));
  // A cost function that gives no whole number is the server's own fault: no status (500).
  const broken = await costly.acquire(-1).catch((e) => e);
  assert.equal(broken.code, 'ERR_VELO_LIMIT_COST');
  assert.equal(broken.status, undefined);
  const fn = velo.streamFn(
    async function* (events) {
      for await (const e of events) yield e;
    },
    { maxConcurrent: 1 },
  );
  const s = fn.open();
  assert.throws(
    () => fn.open(),
    (e) => e.code === 'ERR_VELO_STREAM_LIMIT' && e.status === statusOf('ERR_VELO_STREAM_LIMIT'),
  );
  await s.cancel();
  const http = require('../dist/integrations/http.js');
  assert.equal(new http.RequestBodyError(1, new Error('x')).status, statusOf('ERR_VELO_BAD_NDJSON'));
  assert.equal(new http.RequestTooLargeError('ERR_VELO_BODY_TOO_LARGE', 1).status, statusOf('ERR_VELO_BODY_TOO_LARGE'));
  assert.equal(
    new http.RequestTooLargeError('ERR_VELO_NDJSON_LINE_TOO_LARGE', 1, 1).status,
    statusOf('ERR_VELO_NDJSON_LINE_TOO_LARGE'),
  );
  assert.equal(new http.RequestBodyTimeoutError(1, 1).status, statusOf('ERR_VELO_BODY_TIMEOUT'));
  const { ResumeCursorError, ResumeTrimmedError } = require('../dist/errors/index.js');
  assert.equal(new ResumeCursorError('syntax', 'x').status, statusOf('ERR_VELO_BAD_CURSOR'));
  assert.equal(new ResumeTrimmedError(0, 'x').status, statusOf('ERR_VELO_RESUME_TRIMMED'));
  await Promise.all([rate.close(), conc.close(), costly.close()]);
});
