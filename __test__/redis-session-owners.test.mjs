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

/** Each mutable field of `Session`, and the one module of the engine that writes it. */
const OWNERS = {
  seq: 'session-writes.ts',
  failed: 'session-writes.ts',
  keep: 'session-writes.ts',
  keepVersion: 'session-writes.ts',
  takenPast: 'session-writes.ts',
  writtenBefore: 'session-writes.ts',
  stop: 'session-inputs.ts',
  endedBy: 'session-inputs.ts',
  waiting: 'session-inputs.ts',
  step: 'session-inputs.ts',
  ageTimer: 'owner-writes.ts',
  ageMarked: 'owner-writes.ts',
  wakeTimeouts: 'owner-writes.ts',
  wokenBefore: 'owner-writes.ts',
  wakeWrites: 'owner-writes.ts',
  forwardDone: 'session-forward.ts',
  slotFreed: 'session-forward.ts',
  yieldsQueued: 'session-forward.ts',
  ended: 'partition-run.ts',
  ackedEntries: 'session.ts',
  markers: 'session.ts',
};

/** The mutable fields declared in `class Session`'s body (those not `readonly`, not private). */
function mutableFields() {
  const source = readFileSync(join(ENGINE, 'session.ts'), 'utf8');
  const body = source.slice(source.search(/^export class Session<I, O>[^{]*\{/m));
  const end = body.indexOf('\n  constructor(');
  const fields = [];
  for (const line of body.slice(0, end).split('\n')) {
    const m = /^ {2}([a-zA-Z]\w*)\??(?::|\s=)/.exec(line);
    if (m !== null) fields.push(m[1]);
  }
  return fields;
}

/** The engine's modules that assign `<something>.<field>` (`=`, `+=`, `??=`, `++`, ...). */
function writers(field) {
  const assign = new RegExp(`\\b(?!this\\b)\\w+\\.${field}\\s*(?:=(?!=)|\\+=|-=|\\?\\?=|\\|\\|=|\\+\\+|--)`);
  return readdirSync(ENGINE)
    .filter((f) => f.endsWith('.ts'))
    .filter((f) => readFileSync(join(ENGINE, f), 'utf8').split('\n').some((line) => assign.test(line)));
}

test("every mutable field of Session has one owner named here, and the field list is the class's", () => {
  const fields = mutableFields();
  assert.ok(fields.length >= 10, `parsed ${fields.length} fields: the parser no longer reads session.ts`);
  assert.deepEqual(fields.toSorted(), Object.keys(OWNERS).toSorted());
});

test("no module of the engine but a field's owner writes a session's field (the constructor sets first values)", () => {
  const wrong = [];
  for (const [field, owner] of Object.entries(OWNERS)) {
    // (A class of the same module with a field of the same name, e.g. `this.step` of a permit: `this.` is not a session.)
    for (const file of writers(field)) if (file !== owner && file !== 'session.ts') wrong.push(`${field} written in ${file}`);
  }
  assert.deepEqual(wrong, []);
});
