// A journaled call's result by the JSON codec reaches its first run as its record decodes: the worker copies plain
// data (`plainCopy`) instead of decoding the text it just made. The copy must be exactly what decoding gives (the
// same values, prototypes and key order), for every value it takes; what it does not take (a Date, a Buffer, a
// class's instance, a proxy's prototype that is another) goes the text's way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../bench/prng.mjs';
import { MIXED, NOT_PLAIN, TAGGED, TOO_LARGE, encodeCopy, jsonCodec, plainCopy } from '../dist/durable/common/codec.js';

const decoded = (value) => jsonCodec.decode(Buffer.from(jsonCodec.encode(value)));
const LIMIT = 1 << 20;

const STRINGS = ['', 'a', 'é', '😀', '\ud800', '"\\\n\u0000', '$velo:buffer', '__proto__', 'toJSON', '10', '-1', '1.5'];
const NUMBERS = [0, -0, 1, -1, 0.1, 1e21, -1e-7, 2 ** 53, Number.MAX_VALUE, Number.MIN_VALUE, NaN, Infinity, -Infinity];

/** A random value of plain data, with what JSON leaves out or turns to null mixed in. */
function randomValue(next, depth) {
  const pick = (xs) => xs[Math.floor(next() * xs.length)];
  const r = next();
  if (depth > 3 || r < 0.45) {
    return pick([null, true, false, pick(NUMBERS), pick(STRINGS), next() * 1e6, undefined, () => 1, Symbol('s')]);
  }
  if (r < 0.7) {
    const out = [];
    const n = Math.floor(next() * 5);
    for (let i = 0; i < n; i++) out.push(randomValue(next, depth + 1));
    if (next() < 0.2) out.length += 2; // holes
    return out;
  }
  const out = next() < 0.15 ? Object.create(null) : {};
  const n = Math.floor(next() * 5);
  for (let i = 0; i < n; i++) {
    const key = pick([...STRINGS.filter((s) => s !== '__proto__' && s !== 'toJSON'), `k${i}`, String(i * 3)]);
    out[key] = randomValue(next, depth + 1);
  }
  if (next() < 0.1) Object.defineProperty(out, 'hidden', { value: 1, enumerable: false });
  if (next() < 0.1) out[Symbol('s')] = 1;
  return out;
}

test('plainCopy: for random plain data, the same values, prototypes and key order as decoding its text', () => {
  const next = prng(20261129);
  let copied = 0;
  for (let i = 0; i < 5000; i++) {
    const value = randomValue(next, 0);
    const copy = plainCopy(value, LIMIT);
    const tagged = (plainCopy.kind & TAGGED) !== 0;
    assert.equal(plainCopy.kind & MIXED, 0, 'whole');
    if (copy === NOT_PLAIN) {
      assert.ok(value === undefined || typeof value === 'function' || typeof value === 'symbol', `refused ${String(value)}`);
      continue;
    }
    // The record's text is the one the codec makes of the value itself.
    const text = encodeCopy(copy, LIMIT, 'result');
    assert.equal(text, jsonCodec.encode(value));
    // Its bytes counted low: at a limit of exactly its text's bytes, never too large.
    assert.notEqual(plainCopy(value, Buffer.byteLength(text)), TOO_LARGE);
    // (A copy with the bytes' tag as a key is decoded instead: it may hold a Buffer. Only then.)
    assert.equal(tagged, /"\$velo:buffer":/.test(text), 'tagged');
    if (tagged) continue;
    copied++;
    const expected = decoded(value);
    assert.deepStrictEqual(copy, expected);
    assert.equal(JSON.stringify(copy), JSON.stringify(expected), 'key order');
    if (typeof value === 'object' && value !== null) assert.notEqual(copy, value, 'a copy, not the value');
  }
  assert.ok(copied > 3000, `copied ${copied} of 5000`);
  // A `toJSON` that is not a function is a key as any other.
  const own = { toJSON: 1, b: [undefined] };
  assert.deepStrictEqual(plainCopy(own, LIMIT), decoded(own));
  // An array's length is read once and taken only as an array's can be (a proxy's that lies goes the text way).
  let reads = 0;
  const lying = new Proxy([1, 2, 3], { get: (t, k) => (k === 'length' ? (reads++, 2.5) : t[k]) });
  assert.equal(plainCopy(lying, LIMIT), NOT_PLAIN);
  assert.equal(reads, 1);
  // A getter is read once, as encoding alone would read it.
  let got = 0;
  const counting = Object.defineProperty({}, 'n', { get: () => ++got, enumerable: true });
  assert.deepStrictEqual(plainCopy(counting, LIMIT), { n: 1 });
  assert.equal(got, 1);
});

test('plainCopy: what it does not copy goes the text way', () => {
  class Point {
    x = 1;
  }
  const deep = [];
  let at = deep;
  for (let i = 0; i < 70; i++) at = at[0] = [];
  const refused = {
    date: new Date(0),
    buffer: Buffer.from([1]),
    bytes: new Uint8Array([1]),
    instance: new Point(),
    map: new Map(),
    boxed: new Number(3),
    bigint: 1n,
    function: () => 1,
    ownToJSON: { toJSON: () => 'x' },
    arraySubclass: new (class extends Array {})(),
  };
  for (const [name, value] of Object.entries(refused)) assert.equal(plainCopy(value, LIMIT), NOT_PLAIN, name);
  // Inside plain data, such a value is kept as it is: the copy is not whole, and its text is the value's.
  const inside = {
    nested: { a: [{ when: new Date(0) }, 1, { b: Buffer.from([1]) }] },
    deep: [deep],
    instance: [new Point(), { x: -0 }],
    bytes: { bytes: new Uint8Array([1]), n: NaN, u: undefined },
  };
  for (const [name, value] of Object.entries(inside)) {
    const copy = plainCopy(value, LIMIT);
    assert.equal(plainCopy.kind & MIXED, MIXED, name);
    assert.notEqual(copy, value, name);
    assert.equal(jsonCodec.encode(copy), jsonCodec.encode(value), name);
  }
  assert.notEqual(plainCopy({ a: [1, { b: 'c' }] }, LIMIT), NOT_PLAIN);
  assert.equal(plainCopy.kind, 0);
  // What the copy read is not read again: a getter beside a Date is read once.
  let got = 0;
  const counting = Object.defineProperty({ at: new Date(0) }, 'n', { get: () => ++got, enumerable: true });
  const copy = plainCopy({ list: [counting] }, LIMIT);
  assert.equal(jsonCodec.encode(copy), '{"list":[{"at":"1970-01-01T00:00:00.000Z","n":1}]}');
  assert.equal(got, 1);
  // The codec's own reads: a class's getter beside a Date or a Buffer is read by JSON alone; bytes are tagged, a
  // look-alike of a Buffer's JSON is not.
  class Priced {
    constructor() {
      Object.defineProperty(this, 'cents', { get: () => ++got, enumerable: true });
    }
  }
  got = 0;
  const mixed = { at: new Date(0), priced: new Priced(), bytes: Buffer.from([1, 2]), view: new Uint8Array([3]) };
  assert.equal(
    jsonCodec.encode({ ...mixed, fake: { type: 'Buffer', data: [1] } }),
    '{"at":"1970-01-01T00:00:00.000Z","priced":{"cents":1},"bytes":{"$velo:buffer":"AQI="},"view":{"$velo:buffer":"Aw=="},"fake":{"type":"Buffer","data":[1]}}',
  );
  assert.equal(got, 1);
  // A key whose value it keeps takes no room: JSON may leave it out (a toJSON's undefined): `{}` fits in 2 bytes.
  assert.notEqual(plainCopy({ ['k'.repeat(300)]: { toJSON: () => undefined } }, 2), TOO_LARGE);
  // A BigInt inside: its text cannot be made, from the copy as from the value.
  assert.throws(() => jsonCodec.encode(plainCopy({ big: 1n }, LIMIT)), TypeError);
});

test('plainCopy: keys and items are made own as JSON makes them, whatever the prototypes hold', () => {
  // A method's name is a key as any other.
  const named = { constructor: 1, toString: 'x', hasOwnProperty: [1] };
  assert.deepStrictEqual(plainCopy(named, LIMIT), decoded(named));
  assert.ok(Object.hasOwn(plainCopy(named, LIMIT), 'constructor'));
  // An own `__proto__` (as JSON.parse makes one) is an own key of the copy, which keeps Object.prototype.
  const protoKey = JSON.parse('{"__proto__": {"a": 1}, "b": 2}');
  const copied = plainCopy(protoKey, LIMIT);
  assert.deepStrictEqual(copied, decoded(protoKey));
  assert.ok(Object.hasOwn(copied, '__proto__'));
  assert.equal(Object.getPrototypeOf(copied), Object.prototype);
  assert.equal(JSON.stringify(copied), JSON.stringify(decoded(protoKey)));
  // An accessor a prototype holds neither takes an object's key (it is made own, as JSON.parse makes it) nor runs;
  // an array's index it holds would take the item: such an array goes the text way.
  let set = 0;
  Object.defineProperty(Object.prototype, 'secret', { set: () => set++, get: () => 'inherited', configurable: true });
  Object.defineProperty(Array.prototype, 0, { set: () => set++, get: () => 'inherited', configurable: true });
  try {
    const secret = plainCopy({ secret: 42, a: 1 }, LIMIT);
    assert.ok(Object.hasOwn(secret, 'secret'));
    assert.equal(secret.secret, 42);
    assert.equal(JSON.stringify(secret), '{"secret":42,"a":1}');
    assert.equal(plainCopy([7, 8], LIMIT), NOT_PLAIN);
    assert.equal(set, 0, 'no setter ran');
  } finally {
    delete Object.prototype.secret;
    delete Array.prototype[0];
  }
});

test('plainCopy: a value whose text would pass the limit is found so before it is all copied', () => {
  // 27 objects, each shared twice: 2^26 places in its text.
  let shared = { v: 1 };
  for (let i = 0; i < 26; i++) shared = { a: shared, b: shared };
  for (const value of [shared, new Array(1e8)]) {
    assert.equal(plainCopy(value, LIMIT), TOO_LARGE);
    assert.ok(plainCopy.atLeast > LIMIT);
  }
  // The bytes it names are no more than its text's.
  for (const value of [['x'.repeat(LIMIT)], [['x'.repeat(LIMIT / 2)], 'x'.repeat(LIMIT / 2)], { [`k${'y'.repeat(LIMIT)}`]: 1 }]) {
    assert.equal(plainCopy(value, LIMIT), TOO_LARGE);
    assert.ok(plainCopy.atLeast > LIMIT && plainCopy.atLeast <= Buffer.byteLength(JSON.stringify(value)));
  }
  // At the limit exactly, copied.
  const fits = 'x'.repeat(LIMIT - 2);
  assert.equal(plainCopy(fits, LIMIT), fits);
});
