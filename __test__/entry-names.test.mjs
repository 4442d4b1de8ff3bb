// The package's public surface, counted from the built declarations of every entry point it packs (package.json's
// "types" and "typesVersions", as package.test.mjs reads them): the names a user can import that are not marked
// @deprecated. velo-stream/durable made the tier one API; the names of velo-stream/redis and velo-stream/postgres
// it replaces stay one release, deprecated. On main before it (commit 70fc684) the count was 300 (none
// deprecated); it must stay at least 26 below that. Read with the TypeScript compiler (declarations and their JSDoc
// tags, a re-export's own @deprecated included), not with patterns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const BEFORE = 300;
const FEWER_BY = 26;

/** The entry points' declaration files, as the package ships them. */
const entries = [pkg.types, ...Object.values(pkg.typesVersions['*']).flat()].map((p) => join(root, p));

/** Whether `symbol` (an export of an entry point) is deprecated: on its re-export, or on what it names. */
function deprecated(checker, symbol) {
  const tagged = (s) => (s.declarations ?? []).some((d) => ts.getJSDocDeprecatedTag(d) !== undefined);
  if (tagged(symbol)) return true;
  return (symbol.flags & ts.SymbolFlags.Alias) !== 0 && tagged(checker.getAliasedSymbol(symbol));
}

/** Per entry point: its exported names, split into current and deprecated. */
function surface() {
  const program = ts.createProgram(entries, {
    noEmit: true,
    strict: true,
    skipLibCheck: true,
    types: ['node'],
    module: ts.ModuleKind.CommonJS,
    target: ts.ScriptTarget.ES2022,
  });
  const checker = program.getTypeChecker();
  return entries.map((file) => {
    const source = program.getSourceFile(file);
    assert.ok(source, `${file} is built (npm run build:ts)`);
    const names = checker.getExportsOfModule(checker.getSymbolAtLocation(source));
    return {
      file: file.slice(root.length),
      current: names.filter((s) => !deprecated(checker, s)).map((s) => s.name),
      deprecated: names.filter((s) => deprecated(checker, s)).map((s) => s.name),
    };
  });
}

test(`the entry points export at most ${BEFORE - FEWER_BY} names not marked @deprecated (${BEFORE} before velo-stream/durable)`, () => {
  const all = surface();
  const count = all.reduce((n, e) => n + e.current.length, 0);
  const summary = all.map((e) => `${e.file}: ${e.current.length} (+${e.deprecated.length} deprecated)`).join('\n');
  assert.ok(count <= BEFORE - FEWER_BY, `${count} current names:\n${summary}`);
});

test('velo-stream/redis and velo-stream/postgres: every name deprecated but the backend-specific ones', () => {
  const all = surface();
  const current = (suffix) => all.find((e) => e.file.endsWith(suffix)).current.sort();
  assert.deepEqual(current('dist/redis/index.d.ts'), ['RedisClientLike', 'RedisClientTimeouts', 'RedisConnectionError', 'redisClientOptions']);
  assert.deepEqual(current('dist/postgres/index.d.ts'), ['PostgresClient', 'PostgresPool', 'PostgresPoolClient', 'PostgresResult']);
  const durable = all.find((e) => e.file.endsWith('dist/backends/index.d.ts'));
  assert.equal(durable.deprecated.length, 0);
  for (const name of ['sessionWorker', 'sessionProducer', 'sessionOutputs', 'keyOutputs', 'keyCursor', 'keySse', 'keyNdjson',
    'sessionVersions', 'fleetLimiter', 'exportRecording', 'keyState', 'materialize', 'functionName']) {
    assert.ok(durable.current.includes(name), name);
  }
});

test('each deprecated name of velo-stream/redis and velo-stream/postgres names its replacement', () => {
  for (const file of ['dist/redis/index.d.ts', 'dist/postgres/index.d.ts']) {
    const text = readFileSync(join(root, file), 'utf8');
    const notes = [...text.matchAll(/@deprecated (.*)\*\//g)].map((m) => m[1]);
    assert.ok(notes.length > 50, file);
    for (const note of notes) assert.match(note, /^Use \w+( and \w+)? from 'velo-stream(\/durable)?'\. $/, `${file}: ${note}`);
  }
});
