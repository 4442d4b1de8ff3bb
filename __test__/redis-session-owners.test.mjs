// One owner for each mutable field of the engine's `Session` (js/durable/engine/session.ts): after the opening sets
// its first value (the constructor), one module alone writes it; the others read it. Held against the sources: an
// assignment to a session's field from another module of the engine fails here, as does a new mutable field with
// no owner named below.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ENGINE = join(dirname(fileURLToPath(import.meta.url)), '..', 'js', 'durable', 'engine');

/**
 * Each mutable field of `Session` (those declared in `class Session`'s body, not `readonly`, not private) and the one
 * module of the engine that writes it, as the class says: the `// Written by <file>` heading above the field. One
 * source: the class's own headings are the list this test holds the engine to.
 */
export function ownersOf(source) {
  const body = source.slice(source.search(/^export class Session<I, O>[^{]*\{/m));
  const end = body.indexOf('\n  constructor(');
  const owners = {};
  let owner = null;
  for (const line of body.slice(0, end).split('\n')) {
    const heading = /^ {2}\/\/ Written by ([\w-]+\.ts)\b/.exec(line);
    if (heading !== null) owner = heading[1];
    const m = /^ {2}([a-zA-Z]\w*)\??(?::|\s=)/.exec(line);
    if (m !== null) owners[m[1]] = owner;
  }
  return owners;
}

const OWNERS = ownersOf(readFileSync(join(ENGINE, 'session.ts'), 'utf8'));

/** The engine's modules that assign `<something>.<field>` (`=`, `+=`, `??=`, `++`, ...). */
function writers(field) {
  const assign = new RegExp(`\\b(?!this\\b)\\w+\\.${field}\\s*(?:=(?!=)|\\+=|-=|\\?\\?=|\\|\\|=|\\+\\+|--)`);
  return readdirSync(ENGINE)
    .filter((f) => f.endsWith('.ts'))
    .filter((f) =>
      readFileSync(join(ENGINE, f), 'utf8')
        .split('\n')
        .some((line) => assign.test(line)),
    );
}

test('every mutable field of Session is under a heading that names its one owner, a module of the engine', () => {
  const fields = Object.keys(OWNERS);
  assert.ok(fields.length >= 10, `parsed ${fields.length} fields: the parser no longer reads session.ts`);
  const engine = new Set(readdirSync(ENGINE));
  for (const [field, owner] of Object.entries(OWNERS)) {
    assert.ok(owner !== null, `${field} is declared under no "// Written by <file>" heading`);
    assert.ok(engine.has(owner), `${field}'s owner ${owner} is not a module of the engine`);
  }
  // The check itself: a field above every heading has no owner; one under a heading has that heading's.
  const planted = ownersOf(
    'export class Session<I, O> {\n  loose = 0;\n  // Written by outbox.ts (x).\n  owned = 1;\n  constructor() {}\n}',
  );
  assert.deepEqual(planted, { loose: null, owned: 'outbox.ts' });
});

test("no module of the engine but a field's owner writes a session's field (the constructor sets first values)", () => {
  const wrong = [];
  for (const [field, owner] of Object.entries(OWNERS)) {
    // (A class of the same module with a field of the same name, e.g. `this.step` of a permit: `this.` is not a session.)
    for (const file of writers(field)) if (file !== owner && file !== 'session.ts') wrong.push(`${field} written in ${file}`);
  }
  assert.deepEqual(wrong, []);
});
