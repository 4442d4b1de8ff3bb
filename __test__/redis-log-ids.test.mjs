// Entry ids' times (js/durable/common/log-ids.ts): `idTime` reads the digits itself, for speed; its answer must be the plain
// reading's, `Number(id.slice(0, id.indexOf('-')))`, for every string (ids of Redis, and anything else).
import { createRequire } from 'node:module';
import { test } from 'node:test';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url);
const { idTime } = require('../dist/durable/common/log-ids.js');
const plain = (id) => Number(id.slice(0, id.indexOf('-')));

test('idTime: the plain reading of the first part, for ids and for strings that are not ids', () => {
  const cases = [
    '1764000000000-0',
    '1764000000000-18446744073709551615',
    '0-0',
    '0-1',
    '7-3',
    '007-1',
    '999999999999999-0',
    '9999999999999999-0',
    '12345678901234567890-0',
    '1764000000000',
    '',
    '-',
    '-5',
    '12a-0',
    ' 12-0',
    '1.5-0',
    '1e3-0',
    '0x10-0',
    '12--0',
  ];
  for (const id of cases) assert.ok(Object.is(idTime(id), plain(id)), `${JSON.stringify(id)}: ${idTime(id)}, not ${plain(id)}`);
  // Seeded random ids and near-ids: digits of any length (0 to 20), a dash or another character, a sequence.
  let seed = 39;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const alphabet = '0123456789-x. ';
  for (let n = 0; n < 20_000; n++) {
    let id = '';
    const digits = Math.floor(next() * 21);
    for (let i = 0; i < digits; i++) id += String(Math.floor(next() * 10));
    const tail = Math.floor(next() * 4);
    for (let i = 0; i < tail; i++) id += alphabet[Math.floor(next() * alphabet.length)];
    if (next() < 0.8) id += `-${Math.floor(next() * 1000)}`;
    assert.ok(Object.is(idTime(id), plain(id)), `${JSON.stringify(id)}: ${idTime(id)}, not ${plain(id)}`);
  }
});

test("EntryIds: a session's entry ids kept as numbers give back the same text, whatever the ids", () => {
  const { EntryIds } = require('../dist/durable/engine/entry-ids.js');
  const cases = [
    '1764000000000-0',
    '1764000000000-18446744073709551615',
    '0-0',
    '0-1',
    '7-3',
    '007-1',
    '7-01',
    '999999999999999-0',
    '9999999999999999-0',
    '1764000000000-999999999999999',
    '1764000000000-1000000000000000',
    '-5',
    '5-',
    '',
    'abc',
    '1e3-0',
    '12-3-4',
  ];
  const ids = new EntryIds();
  for (const id of cases) ids.push(id);
  assert.equal(ids.length, cases.length);
  assert.deepEqual(ids.all(), cases);
  assert.deepEqual(cases.map((_, i) => ids.at(i)), cases);
  // Taken out from the front in turns: each gets its ids, the rest keep their text.
  assert.deepEqual(ids.shift(3), cases.slice(0, 3));
  assert.deepEqual(ids.shift(4), cases.slice(3, 7));
  assert.deepEqual(ids.all(), cases.slice(7));
  assert.deepEqual(ids.shift(100), cases.slice(7));
  assert.equal(ids.length, 0);
  assert.deepEqual(ids.shift(1), []);
});
