// The resume cursor's text and the rule that says whether reading on from a position is exact (no Redis here):
// one spelling per cursor, a length bound checked first, ids compared exactly up to 2^64 - 1, and `judge` on every
// kind of position a stream can be asked about. A seeded fuzz of hostile texts: each is a cursor that prints back
// the same, or a ResumeCursorError with a reason; nothing else is ever thrown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { rng } from './helpers/resume.mjs';

const require = createRequire(import.meta.url);
const { compareIds, formatCursor, idBefore, isEntryId, maxCursorLength, parseCursor } = require('../dist/redis/clients/cursor.js');
const { judge } = require('../dist/redis/clients/key-outputs.js');

const MAX = 18446744073709551615n;

test("cursor text: one spelling, partitions ascending and exactly the keys', a length bound before anything else", () => {
  assert.deepEqual(parseCursor('3:1700000000000-0', [3], 'c'), ['1700000000000-0']);
  assert.deepEqual(parseCursor('1:5-1,7:0-0', [1, 7], 'c'), ['5-1', '0-0']);
  assert.equal(formatCursor([1, 7], ['5-1', '0-0']), '1:5-1,7:0-0');
  assert.deepEqual(parseCursor(`0:${MAX}-${MAX}`, [0], 'c'), [`${MAX}-${MAX}`]);
  const refused = [
    ['', 'syntax'],
    ['3:', 'syntax'],
    [':1-0', 'syntax'],
    ['3:1-0,', 'syntax'],
    ['3:1-0 ', 'syntax'],
    ['03:1-0', 'syntax'],
    ['3:01-0', 'syntax'],
    ['3:1-00', 'syntax'],
    ['3:1', 'syntax'],
    ['3:-1', 'syntax'],
    ['3:1--1', 'syntax'],
    ['3:1.5-0', 'syntax'],
    ['3:1e3-0', 'syntax'],
    ['3:0x1-0', 'syntax'],
    ['+3:1-0', 'syntax'],
    ['3:$', 'syntax'],
    ['3:*', 'syntax'],
    ['3:1-0\n', 'syntax'],
    [`3:${MAX + 1n}-0`, 'syntax'],
    [`3:0-${MAX + 1n}`, 'syntax'],
    ['4:1-0', 'partitions'],
    ['3:1-0,3:2-0', 'partitions'],
    ['x'.repeat(48), 'length'],
  ];
  for (const [text, reason] of refused) {
    assert.throws(
      () => parseCursor(text, [3], 'c'),
      (e) => e.code === 'ERR_VELO_BAD_CURSOR' && e.reason === reason && e.status === 400,
      JSON.stringify(text),
    );
  }
  // Two partitions: both, in order, and nothing else.
  for (const text of ['7:1-0,1:1-0', '1:1-0', '1:1-0,7:1-0,9:1-0', '1:1-0,1:1-0']) {
    assert.throws(
      () => parseCursor(text, [1, 7], 'c'),
      (e) => e.reason === 'partitions',
      text,
    );
  }
  assert.throws(
    () => parseCursor(42, [1], 'c'),
    (e) => e.reason === 'syntax',
  );
  // The longest legitimate cursor passes the bound; one more character does not.
  const longest = formatCursor([16383], [`${MAX}-${MAX}`]);
  assert.equal(longest.length, maxCursorLength(1));
  assert.throws(
    () => parseCursor(`${longest}0`, [16383], 'c'),
    (e) => e.reason === 'length',
  );
  // A huge text is refused by its length alone (no split, no regexp over it).
  const huge = '1:1-0,'.repeat(200_000);
  const started = performance.now();
  assert.throws(
    () => parseCursor(huge, [1, 2], 'c'),
    (e) => e.reason === 'length' && e.message.length < 200,
  );
  assert.ok(performance.now() - started < 50);
});

test('ids compare and step back exactly up to 2^64 - 1 (where doubles would not)', () => {
  const random = rng(99);
  const big = () => BigInt(Math.floor(random() * 2 ** 32)) * BigInt(Math.floor(random() * 2 ** 32));
  for (let i = 0; i < 2000; i++) {
    const a = [big(), big() % 3n];
    const b = random() < 0.3 ? [a[0], big() % 3n] : [a[0] + BigInt(Math.floor(random() * 3)) - 1n, big() % 3n];
    if (b[0] < 0n) b[0] = 0n;
    const expected = a[0] === b[0] ? Math.sign(Number(a[1] - b[1])) : a[0] < b[0] ? -1 : 1;
    assert.equal(Math.sign(compareIds(`${a[0]}-${a[1]}`, `${b[0]}-${b[1]}`)), expected, `${a} vs ${b}`);
  }
  assert.ok(compareIds(`${MAX}-0`, `${MAX - 1n}-${MAX}`) > 0);
  assert.ok(compareIds('9007199254740993-0', '9007199254740992-0') > 0, 'past 2^53');
  assert.equal(idBefore('5-3'), '5-2');
  assert.equal(idBefore('5-0'), `4-${MAX}`);
  assert.equal(idBefore(`${MAX}-0`), `${MAX - 1n}-${MAX}`);
  assert.equal(idBefore('9007199254740993-0'), `9007199254740992-${MAX}`);
  assert.ok(isEntryId('0-0') && isEntryId(`${MAX}-${MAX}`) && !isEntryId(`${MAX + 1n}-0`) && !isEntryId('1-'));
});

test('judge: exact where no output after the position can have been removed; trimmed where one was or may have been; future and unknown otherwise', () => {
  // (position, length, last-generated id, entries-added, first kept id or '')
  const cases = [
    ['after the last id', ['9-0', 3, '8-0', 3, '6-0'], 'future'],
    ['at the last id (not an entry: trimmed or deleted)', ['8-0', 0, '8-0', 5, ''], 'ok'],
    ['right before the first kept', ['5-9', 3, '8-0', 5, '5-10'], 'ok'],
    ['right before the first kept, across a ms', [`4-${MAX}`, 3, '8-0', 5, '5-0'], 'ok'],
    ['among the kept, not one of them', ['7-0', 3, '8-0', 3, '6-0'], 'unknown'],
    ['before every kept one, none ever removed', ['0-0', 3, '8-0', 3, '6-0'], 'ok'],
    ['before every kept one, none ever removed, any id', ['2-0', 3, '8-0', 3, '6-0'], 'ok'],
    ['before the kept ones, some removed', ['2-0', 3, '8-0', 5, '6-0'], 'trimmed'],
    ['the start of a trimmed stream', ['0-0', 3, '8-0', 5, '6-0'], 'trimmed'],
    ['an emptied stream, before its last id', ['2-0', 0, '8-0', 5, ''], 'trimmed'],
    ['a stream that never was', ['0-0', 0, '0-0', 0, ''], 'ok'],
    ['a stream that never was, a position after it', ['1-0', 0, '0-0', 0, ''], 'future'],
    ['a server that does not say entries-added', ['2-0', 3, '8-0', -1, '6-0'], 'trimmed'],
  ];
  for (const [what, args, verdict] of cases) assert.equal(judge(...args), verdict, what);
});

test('a seeded fuzz of hostile cursors (seed 4242): each parses and prints back the same, or is refused with a reason; nothing else is thrown', () => {
  const random = rng(4242);
  const alphabet = ['0', '1', '9', '-', ':', ',', ' ', 'x', '+', '\n', '18446744073709551615', '18446744073709551616', '00', '3'];
  let parsed = 0;
  let refused = 0;
  for (let i = 0; i < 20_000; i++) {
    let text = '';
    const parts = 1 + Math.floor(random() * 12);
    for (let j = 0; j < parts; j++) text += alphabet[Math.floor(random() * alphabet.length)];
    // Some near-misses of a real cursor.
    if (random() < 0.3)
      text = `3:${Math.floor(random() * 1e13)}-${Math.floor(random() * 4)}${text.slice(0, Math.floor(random() * 3))}`;
    for (const partitions of [[3], [1, 3]]) {
      try {
        const positions = parseCursor(text, partitions, 'c');
        assert.equal(formatCursor(partitions, positions), text, 'one spelling');
        parsed++;
      } catch (error) {
        assert.equal(error.code, 'ERR_VELO_BAD_CURSOR', `${JSON.stringify(text)}: ${error}`);
        assert.ok(['length', 'syntax', 'partitions'].includes(error.reason));
        refused++;
      }
    }
  }
  assert.ok(parsed > 100 && refused > 1000, `${parsed} parsed, ${refused} refused`);
});
