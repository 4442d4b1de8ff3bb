// The Postgres backend's SQL files (js/postgres/log/sql/*.sql), as the build ships them and sql-file.ts reads them:
// every statement of a file is sent, whole, with its placeholders filled, and nothing of the comments between them.
// (That the statements run is the migration's part: the postgres-* suites apply them on a server.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { sqlFile } = require('../dist/postgres/log/sql-file.js');
const { NOW } = require('../dist/postgres/log/sql.js');
const source = new URL('../js/postgres/log/sql/', import.meta.url);
const files = readdirSync(source).filter((f) => f.endsWith('.sql'));

test('the build ships every SQL file beside the compiled module', () => {
  assert.ok(files.includes('limiter-5.sql') && files.includes('commit-4.sql'), files.join(', '));
  const shipped = readdirSync(new URL('../dist/postgres/log/sql/', import.meta.url));
  for (const f of files) assert.ok(shipped.includes(f), `dist/postgres/log/sql/${f}`);
});

test('a file is split into its statements, each sent as written with the schema and the clock filled in', () => {
  for (const file of files) {
    const text = readFileSync(new URL(file, source), 'utf8');
    const statements = sqlFile(file)('"s_x"');
    // One statement per CREATE ... at the start of a line (the files make tables, sequences and functions only).
    assert.equal(statements.length, text.match(/^CREATE /gm).length, file);
    for (const statement of statements) {
      assert.match(statement, /^CREATE (TABLE|SEQUENCE|FUNCTION) "s_x"\./, `${file}: ${statement.slice(0, 60)}`);
      assert.doesNotMatch(statement, /:S\b|:NOW\b/, 'every placeholder is filled');
      assert.doesNotMatch(statement, /;\s*$/, 'without its terminating ";"');
      // A body's $f$ quotes are balanced: the split never cut one.
      assert.equal((statement.split('$f$').length - 1) % 2, 0, `${file}: ${statement.slice(0, 60)}`);
    }
    const all = statements.join('\n');
    const code = text
      .split('\n')
      .filter((l) => !/^--/.test(l))
      .join('\n');
    assert.equal(all.split(NOW).length - 1, code.split(':NOW').length - 1, `${file}: the clock`);
    // The comments between statements are the reader's; those inside a body are part of it.
    for (const line of text.split('\n').filter((l) => /^-- \S/.test(l)))
      assert.ok(!all.includes(line.slice(3)), `${file}: ${line}`);
  }
});

test('the schema is filled in at each call: two schemas, two sets of statements', () => {
  const limiter = sqlFile('limiter-5.sql');
  const [a, b] = [limiter('"s_a"'), limiter('"s_b"')];
  assert.equal(a.length, b.length);
  assert.ok(a.every((s, i) => s.replaceAll('"s_a"', '"s_b"') === b[i]));
  assert.ok(
    a.some((s) => s.includes(`nextval('"s_a".lim_tickets')`)),
    'inside a quoted name too',
  );
});
