// The JSON codec's text under a limit (`encodeChecked`, as outputs, events, wake-ups and journaled results are
// encoded): a value whose text would pass the limit is refused once that is known, before the text is made, however
// it holds its parts (one object in many places, past the scan's depth, in a class's instance, from a toJSON); and a
// value whose text fits is never refused, its text the one JSON.stringify makes (bytes tagged).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import vm from 'node:vm';
import { prng } from '../bench/prng.mjs';
import { encodeChecked, jsonCodec } from '../dist/durable/common/codec.js';

const LIMIT = 1 << 20;
const encode = (value, limit = LIMIT) => encodeChecked(jsonCodec, value, limit, 'output of session', 's');

/** One object in 2^levels places of its text (each level holds the one below twice). */
function doubling(levels, leaf = { v: 1 }) {
  let shared = leaf;
  for (let i = 0; i < levels; i++) shared = { a: shared, b: shared };
  return shared;
}

/** `value` nested `depth` levels deep in plain objects. */
function nested(value, depth) {
  let at = value;
  for (let i = 0; i < depth; i++) at = { in: at };
  return at;
}

class Holder {
  constructor(inside) {
    this.inside = inside;
  }
}

test('a text that would pass the limit is refused before it is made, however its value holds its parts', () => {
  const cases = {
    'shared in plain data': doubling(40),
    'shared past the scan depth': nested(doubling(40), 70),
    "shared in a class's instance": new Holder(doubling(40)),
    'shared beside a Date': { at: new Date(0), all: doubling(40) },
    'shared beside a Buffer': [Buffer.from([1]), doubling(40)],
    'shared from a toJSON': { toJSON: () => doubling(40) },
    'shared in an array': new Array(1000).fill(doubling(30)),
    // Leaves of numbers, booleans and nulls count too.
    'numbers shared': doubling(40, new Array(10_000).fill(0)),
    'numbers shared past the scan depth': nested(doubling(40, { n: 1, t: true, z: null }), 70),
    'numbers shared beside a Date': { at: new Date(0), all: doubling(40, [1, 2, 3]) },
    "numbers shared in a class's instance": new Holder(doubling(40, [false])),
    'an array of 2 million numbers': new Array(2e6).fill(1),
    'an array of 100 million holes': new Array(1e8),
    // A Buffer's text is known from its length: its toJSON (an array of every byte) is not made.
    'a Buffer of 64 MiB': { bytes: Buffer.alloc(64 << 20) },
  };
  for (const [name, value] of Object.entries(cases)) {
    assert.throws(
      () => encode(value),
      (error) => {
        assert.equal(error.code, 'ERR_VELO_EVENT_TOO_LARGE', name);
        assert.equal(error.limit, LIMIT, name);
        assert.ok(error.size > LIMIT, `${name}: at least ${error.size}`);
        assert.match(error.message, /is at least \d+ bytes encoded/, name);
        return true;
      },
      name,
    );
  }
});

test('a text under the limit is never refused: at a limit of exactly its bytes, the text JSON.stringify makes', () => {
  const next = prng(20261130);
  const pick = (xs) => xs[Math.floor(next() * xs.length)];
  const leaf = () =>
    pick([
      null,
      true,
      1.5,
      -0,
      NaN,
      '',
      'é😀"\\',
      'x'.repeat(Math.floor(next() * 40)),
      undefined,
      () => 1,
      new Date(0),
      Buffer.from([1, 2]),
    ]);
  function value(depth) {
    const r = next();
    if (depth > 4 || r < 0.4) return leaf();
    if (r < 0.7) return Array.from({ length: Math.floor(next() * 5) }, () => value(depth + 1));
    const out = next() < 0.2 ? new Holder(undefined) : {};
    for (let i = 0; i < Math.floor(next() * 5); i++) out[pick(['k', 'key', '', 'é', `k${i}`])] = value(depth + 1);
    return out;
  }
  for (let i = 0; i < 3000; i++) {
    const v = { top: value(0) };
    const text = jsonCodec.encode(v);
    assert.equal(encode(v, Buffer.byteLength(text)), text);
    if (Buffer.byteLength(text) > 2)
      assert.throws(() => encode(v, Buffer.byteLength(text) - 1), { code: 'ERR_VELO_EVENT_TOO_LARGE' });
  }
  // Keys whose values JSON leaves out take no place; nor does a prototype's key; a toJSON's answer, a Number object
  // or a String object takes what JSON writes of it.
  const inherits = Object.assign(Object.create({ note: 'n'.repeat(200) }), { id: 1 });
  const otherRealm = vm.runInNewContext('[new String("a".repeat(1000)), new Number(1), new Boolean(true)]');
  for (const v of [
    inherits,
    { toJSON: () => 5 },
    { a: { toJSON: () => undefined } },
    new Number(3),
    [new String('ab')],
    otherRealm,
    Buffer.from('abcde'),
    { b: new Uint8Array(7) },
  ]) {
    const text = jsonCodec.encode(v);
    assert.equal(encode(v, Buffer.byteLength(text)), text);
  }
  const sparse = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`key-${i}`.repeat(20), undefined]));
  assert.equal(encode(sparse, 2), '{}');
  // A cycle is still JSON's own error.
  const cycle = { a: 1 };
  cycle.self = cycle;
  assert.throws(() => encode(cycle), { code: 'ERR_VELO_ENCODE' });
});
